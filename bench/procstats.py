"""Process figures for the benchmarks: CPU seconds, RSS, the machine's load, the pid behind a
port, and py-spy profiles of running processes (``python -m bench --profile DIR ...``)."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float, float]:
    """(busy, steal, total) jiffies of all CPUs since boot (guest time is already in user time)."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    )
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return float(total - idle - iowait - steal), float(steal), float(total)


def pid_listening(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:``port`` (the broker of ``make bench``)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(cols[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(proc.name)
    return None


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc/<pid>/status."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


@contextlib.contextmanager
def profiled(procs: dict[str, Any], outdir: Path | None, seconds: float) -> Iterator[None]:
    """py-spy (non-blocking sampling, 100 Hz) on every process for ``seconds``, if ``outdir``."""
    if outdir is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    outdir.mkdir(parents=True, exist_ok=True)
    runs = [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(p.proc.pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "100",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(outdir / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for name, p in procs.items()
    ]
    try:
        yield
    finally:
        for r in runs:
            try:
                r.wait(timeout=seconds + 60)
            except subprocess.TimeoutExpired:
                r.kill()


def summarize_profile(path: Path, top: int = 12) -> str:
    """The hottest frames of a py-spy collapsed-stack file: self time, then inclusive time of our
    code per line (py-spy names a frame ``function (file:line)``, the line executing in it)."""
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    ours = tuple(f"({pkg}/" for pkg in ("streams", "consumers", "schemas", "infra", "producers", "bench"))
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_t[frames[-1]] += n
        for f in set(frames):
            if (
                any(o in f for o in ours)
                and "producers/cli/main.py" not in f
                and "consumers/bootstrap.py" not in f
            ):
                incl[f] += n
    if not total:
        return f"== {path.stem}: no samples"
    out = [f"== {path.stem}: {total} samples (CPU only: idle threads are not sampled)", "  self time:"]
    out += [f"    {n / total:6.1%}  {f}" for f, n in self_t.most_common(top)]
    out.append("  inclusive, Lantoa code (per executing line):")
    out += [f"    {n / total:6.1%}  {f}" for f, n in incl.most_common(top + 8)]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# The bench
# ------------------------------------------------------------------------------------------------
