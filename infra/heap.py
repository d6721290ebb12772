"""Handing freed heap memory back to the operating system (glibc ``malloc_trim``).

A long-running adapter frees memory in large waves: a day's ledger entries swept past their
horizon, a zone's expired bulletins dropped, a dict table left behind when a partition's map grew.
CPython returns its small-object arenas only when they are entirely empty, and glibc keeps freed
chunks of its heap mapped, so the resident size stays at the high-water mark while most of it is
free. ``trim()`` asks glibc to release the free pages (``malloc_trim(0)`` also advises away free
pages in the middle of the heap, since glibc 2.8). It does nothing where there is no glibc
(musl, macOS). Cost: a walk of the free lists, milliseconds for a few hundred MB; callers run it
after a sweep, at most once a minute.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger(__name__)

_libc: Any = None
_looked = False


def _malloc_trim() -> Any:
    global _libc, _looked
    if not _looked:
        _looked = True
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
            _libc = lib if lib is not None and hasattr(lib, "malloc_trim") else None
        except OSError:
            _libc = None
    return _libc


def trim() -> bool:
    """Release free heap pages to the system; True when glibc released some."""
    libc = _malloc_trim()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
