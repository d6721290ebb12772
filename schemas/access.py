"""Who is calling: named identities with tokens and roles, for the CAP endpoint and the status web.

The identities file (``LANTOA_ACCESS_FILE``, a secret file: mode 0600, refused otherwise) is JSON::

    {"identities": [
      {"name": "ha-tinh-pctt", "roles": ["sender"], "token_sha256": "<64 hex>",
       "cap_senders": ["pctt@hatinh.gov.vn"]},
      {"name": "duty-officer", "roles": ["approver", "ops"], "token_sha256": "<64 hex>"},
      {"name": "editor-lan", "roles": ["editor"], "token_sha256": "<64 hex>"}
    ]}

Only the SHA-256 of each token is kept, so the file cannot be used to call Lantoa; the tokens are
made by ``lantoa access add NAME --role R`` (32 random bytes, shown once). A token is accepted
as ``Authorization: Bearer <token>`` or as HTTP Basic with the identity's name and the token as the
password (what a browser asks for). Every comparison is constant-time and runs over every entry.

Roles: ``viewer`` < ``editor`` < ``ops`` for the status web (each includes the ones before it);
``sender`` may submit CAP alerts (limited to ``cap_senders`` when given: the CAP ``<sender>``
values this identity may use); ``approver`` may approve another identity's pending alert.

An empty or short token is refused when the file is read and when it is offered.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import re
import secrets
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from schemas.secrets import SecretFileError, read_secret_json, read_secret_text, write_secret

MIN_TOKEN_CHARS: Final = 20
MAX_TOKEN_CHARS: Final = 512  # an offered token past it is refused unhashed
NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9._@:-]{0,63}")
MAX_ACTOR_CHARS: Final = 200
_ACTOR_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+/-]{0,199}")


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    OPS = "ops"
    SENDER = "sender"
    APPROVER = "approver"


# The status web's ladder: a role includes every role before it.
_LADDER: Final = (Role.VIEWER, Role.EDITOR, Role.OPS)


class AccessError(SecretFileError):
    """An identities file or a token that cannot be used; the message never holds a token."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_token(token: str, where: str) -> str:
    """The token without surrounding white space, or AccessError when it is empty or too short."""
    token = token.strip()
    if not token:
        raise AccessError(f"{where}: the token is empty")
    if len(token) < MIN_TOKEN_CHARS:
        raise AccessError(f"{where}: the token is shorter than {MIN_TOKEN_CHARS} characters")
    if len(token) > MAX_TOKEN_CHARS:  # it could never be offered: authenticate refuses it unhashed
        raise AccessError(f"{where}: the token is longer than {MAX_TOKEN_CHARS} characters")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise AccessError(f"{where}: the token holds white space or control characters")
    return token


def check_actor(value: str) -> str:
    """An actor name fit for headers and the audit trail, or ValueError saying why not."""
    if not _ACTOR_RE.fullmatch(value):
        raise ValueError(
            "actor names are 1-200 characters of letters, digits and . _ @ : + / -, starting with a letter or digit"
        )
    return value


def cli_actor(configured: str = "") -> str:
    """Who a CLI user is in the audit trail: LANTOA_ACTOR, or cli:<login>@<host>."""
    if configured:
        return check_actor(configured)
    user = re.sub(r"[^A-Za-z0-9._-]", "_", getpass.getuser() or "unknown")[:60]
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname() or "localhost")[:60]
    return check_actor(f"cli:{user}@{host}")


@dataclass(frozen=True)
class Identity:
    name: str
    roles: frozenset[Role]
    token_sha256: str = field(repr=False)
    cap_senders: frozenset[str] | None = None  # None: any CAP sender

    def has(self, role: Role) -> bool:
        if role in _LADDER:
            return any(r in self.roles for r in _LADDER[_LADDER.index(role) :])
        return role in self.roles

    def may_send_as(self, cap_sender: str) -> bool:
        return self.cap_senders is None or cap_sender in self.cap_senders

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "roles": sorted(self.roles),
            "token_sha256": self.token_sha256,
        }
        if self.cap_senders is not None:
            out["cap_senders"] = sorted(self.cap_senders)
        return out


def _identity(raw: Any, where: str) -> Identity:
    if not isinstance(raw, Mapping):
        raise AccessError(f"{where}: each identity is an object")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise AccessError(f"{where}: name must be 1-64 of a-z 0-9 . _ @ : - (got {str(name)[:70]!r})")
    roles_raw = raw.get("roles")
    if not isinstance(roles_raw, list) or not roles_raw:
        raise AccessError(f"{where} {name}: roles must be a non-empty list")
    try:
        roles = frozenset(Role(r) for r in roles_raw)
    except ValueError:
        raise AccessError(
            f"{where} {name}: unknown role in {roles_raw!r} (roles: {', '.join(r.value for r in Role)})"
        ) from None
    digest = raw.get("token_sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise AccessError(f"{where} {name}: token_sha256 must be 64 lower-case hex digits")
    senders = raw.get("cap_senders")
    if senders is not None and (
        not isinstance(senders, list) or not all(isinstance(s, str) and s for s in senders)
    ):
        raise AccessError(f"{where} {name}: cap_senders must be a list of CAP sender strings")
    return Identity(name, roles, digest, frozenset(senders) if senders is not None else None)


class AccessList:
    """The identities Lantoa knows; ``authenticate`` turns an Authorization header into one."""

    def __init__(self, identities: Iterable[Identity], source: str = "") -> None:
        self.identities = tuple(identities)
        self.source = source
        names = [i.name for i in self.identities]
        if len(set(names)) != len(names):
            raise AccessError(f"{source}: an identity name appears twice")
        digests = [i.token_sha256 for i in self.identities]
        if len(set(digests)) != len(digests):
            raise AccessError(f"{source}: two identities share a token")

    @classmethod
    def load(cls, path: Path) -> AccessList:
        data = read_secret_json(path)
        items = data.get("identities")
        if not isinstance(items, list):
            raise AccessError(f'identities file {path}: expected {{"identities": [...]}}')
        return cls((_identity(item, f"identities file {path}") for item in items), str(path))

    @classmethod
    def single_token(cls, token: str, name: str, roles: Iterable[Role], where: str) -> AccessList:
        """One identity for one token (a token file or variable given alone)."""
        token = check_token(token, where)
        return cls([Identity(name, frozenset(roles), token_digest(token))], where)

    @classmethod
    def from_token_file(cls, path: Path, name: str, roles: Iterable[Role]) -> AccessList:
        return cls.single_token(read_secret_text(path), name, roles, f"token file {path}")

    def merged(self, other: AccessList) -> AccessList:
        return AccessList(self.identities + other.identities, f"{self.source}+{other.source}")

    def with_role(self, role: Role) -> tuple[Identity, ...]:
        return tuple(i for i in self.identities if i.has(role))

    def authenticate(self, authorization: str | None) -> Identity | None:
        """The identity an Authorization header proves, or None (missing, malformed, unknown)."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        name: str | None = None
        if scheme.lower() == "bearer":
            token = value
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            name, sep, token = decoded.partition(":")
            if not sep:
                return None
        else:
            return None
        if len(token) < MIN_TOKEN_CHARS or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = token_digest(token).encode()
        found: Identity | None = None
        for ident in self.identities:  # every entry, constant time each: no early exit
            if hmac.compare_digest(digest, ident.token_sha256.encode()):
                found = ident
        if found is not None and name is not None and not hmac.compare_digest(name, found.name):
            return None
        return found


def new_token() -> str:
    return secrets.token_urlsafe(32)


def add_identity(
    path: Path, name: str, roles: Iterable[Role], cap_senders: Iterable[str] | None = None
) -> str:
    """Add (or replace the token of) ``name`` in the identities file, creating it 0600; the new
    token is returned, to be shown once. Raises AccessError for a bad name or file."""
    if not NAME_RE.fullmatch(name):
        raise AccessError(f"name must be 1-64 of a-z 0-9 . _ @ : - (got {name[:70]!r})")
    items: list[dict[str, Any]] = []
    if path.exists():
        items = [i.as_dict() for i in AccessList.load(path).identities if i.name != name]
    token = new_token()
    senders = sorted(set(cap_senders)) if cap_senders else None
    ident = Identity(name, frozenset(roles), token_digest(token), frozenset(senders) if senders else None)
    items.append(ident.as_dict())
    write_secret(path, {"identities": items})
    return token
