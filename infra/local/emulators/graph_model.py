"""What the Graph emulator keeps and answers with: the error codes and messages of Graph, the
error envelope, the settings its parts share, the page tokens and posts it records, and the
parsing of Graph request parameters (which answers ``GraphError`` 100, as Graph does). See
``graph`` for the API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from infra.local.emulators.common import ControlError

__all__ = [
    "GraphError",
    "GraphPost",
    "GraphSettings",
    "PageToken",
    "appsecret_proof",
    "bearer",
    "check_page",
    "decode_cursor",
    "encode_cursor",
    "fb_time",
    "parse_bool",
    "parse_fields",
    "parse_int",
    "parse_timestamp",
    "read_params",
    "str_field",
    "unsupported",
]

SCHEDULE_MIN_S = 10 * 60
SCHEDULE_MAX_S = 183 * 86400  # "6 months" in the contract
DEFAULT_LIMIT, MAX_LIMIT = 25, 100
DEFAULT_POST_FIELDS = ("id", "message", "created_time")
POST_FIELDS = frozenset(
    {
        "id",
        "message",
        "created_time",
        "updated_time",
        "is_published",
        "link",
        "scheduled_publish_time",
        "permalink_url",
        "from",
    }
)
APP_LEVEL_CODES = frozenset({4, 17})
MESSAGES = {
    1: "An unknown error occurred",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached",
    10: "(#10) Application does not have permission for this action",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    100: "(#100) Invalid parameter",
    102: "Session key invalid or no longer valid",
    190: "Invalid OAuth access token - Cannot parse access token",
    200: "(#200) Permissions error",
    368: "(#368) The action attempted has been deemed abusive or is otherwise disallowed",
    506: "(#506) Duplicate status message",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80001: "(#80001) There have been too many calls to this Page account. Wait a bit and try "
    "again. For more info, please refer to "
    "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
}
TOKEN_SUBCODE_MESSAGES = {
    458: "Error validating access token: The user has not authorized application.",
    459: "Error validating access token: You cannot access the app till you log in to "
    "www.facebook.com and follow the instructions given.",
    460: "Error validating access token: The session has been invalidated because the user "
    "changed their password or Facebook has changed the session for security reasons.",
    463: "Error validating access token: Session has expired on {expired}. The current time is {now}.",
    467: "Error validating access token: The session is invalid because the user logged out.",
}


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """hex HMAC-SHA256(key = app secret, msg = access token), as Graph expects."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


class GraphError(Exception):
    """A Graph API error reply (code, subcode, HTTP status)."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        subcode: int | None = None,
        user_title: str | None = None,
        user_msg: str | None = None,
        type_: str = "OAuthException",
        http_status: int | None = None,
    ) -> None:
        self.code = code
        self.message = message if message is not None else MESSAGES.get(code, f"(#{code}) Error")
        super().__init__(self.message)
        self.subcode = subcode
        self.user_title = user_title
        self.user_msg = user_msg
        self.type = type_
        self.http_status = http_status if http_status is not None else (500 if code in (1, 2) else 400)

    def envelope(self, fbtrace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.user_title is not None:
            error["error_user_title"] = self.user_title
        if self.user_msg is not None:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = fbtrace_id
        return {"error": error}


def unsupported(method: str, obj: str) -> GraphError:
    return GraphError(
        100,
        f"Unsupported {method.lower()} request. Object with ID '{obj}' does "
        "not exist, cannot be loaded due to missing permissions, or does not "
        "support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api",
        subcode=33,
        type_="GraphMethodException",
    )


def fb_time(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(epoch_s))


@dataclass
class GraphSettings:
    """The emulator's settings, one object shared by its parts: what ``POST /_control/config``
    (and ``reset()``) sets through the emulator is what its state, usage meter and webhooks read.

    With ``app_secret`` an ``appsecret_proof`` sent by the client is checked and webhooks are
    signed; with ``require_proof`` as well, a call without a proof is refused. Limits:
    ``page_call_limit`` calls per page and ``app_call_limit`` calls in all per ``usage_window_s``
    (sliding). The same message (and link) on one page within ``duplicate_window_s`` is refused
    with 506.
    """

    app_secret: str | None = None
    require_proof: bool = False
    page_call_limit: int = 4800
    app_call_limit: int = 20000
    usage_window_s: float = 3600.0
    page_throttle_code: int = 80001
    duplicate_window_s: float = 3600.0


@dataclass
class PageToken:
    token: str
    page_id: str
    expires_at: float | None = None
    revoked_subcode: int | None = None


def check_page(token: PageToken, page_id: str, method: str, obj: str) -> None:
    """A page token acts on its own page only: another page's object is unknown to a GET (as
    Graph answers) and a permissions error (200) to a write."""
    if token.page_id == page_id:
        return
    if method == "GET":
        raise unsupported(method, obj)
    raise GraphError(200)


@dataclass
class GraphPost:
    """A post as the emulator keeps it; ``deleted`` posts stay listed for the control API."""

    seq: int
    id: str
    page_id: str
    kind: str  # "feed" | "photo"
    message: str | None
    link: str | None
    published: bool
    scheduled_publish_time: int | None
    created_at: float
    updated_at: float
    photo_id: str | None = None
    photo_url: str | None = None
    photo_bytes: int | None = None
    deleted: bool = False
    deleted_at: float | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)

    def is_published(self, now: float) -> bool:
        return self.published or (
            self.scheduled_publish_time is not None and now >= self.scheduled_publish_time
        )

    @property
    def created_time(self) -> float:
        """What Graph shows: the publish time of a scheduled post, else the creation time."""
        if self.scheduled_publish_time is not None:
            return float(self.scheduled_publish_time)
        return self.created_at

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.id,
            "page_id": self.page_id,
            "kind": self.kind,
            "message": self.message,
            "link": self.link,
            "is_published": self.is_published(now),
            "published": self.published,
            "scheduled_publish_time": self.scheduled_publish_time,
            "created_at": self.created_at,
            "created_time": fb_time(self.created_time),
            "updated_at": self.updated_at,
            "photo_id": self.photo_id,
            "photo_url": self.photo_url,
            "photo_bytes": self.photo_bytes,
            "deleted": self.deleted,
            "deleted_at": self.deleted_at,
            "edits": self.edits,
        }


# ----- parsing helpers ---------------------------------------------------------------------------


def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() or None if scheme.lower() in ("bearer", "oauth") else None


async def read_params(request: web.Request) -> tuple[dict[str, str], dict[str, bytes]]:
    """Query string and body (form, multipart or JSON) merged; file parts apart."""
    params: dict[str, str] = dict(request.query)
    files: dict[str, bytes] = {}
    if not request.can_read_body:
        return params, files
    ctype = request.content_type
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
            else:
                params[key] = str(value)
    elif ctype == "application/json":
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise GraphError(100, f"(#100) The request body is not valid JSON: {exc}") from exc
        if isinstance(body, dict):
            for key, value in body.items():
                params[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
    else:
        await request.read()
    return params, files


def parse_bool(raw: str | None, name: str, *, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise GraphError(100, f"(#100) Param {name} must be a boolean")


def parse_int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise GraphError(100, f"(#100) Param {name} must be an integer") from None


def parse_timestamp(raw: str) -> int:
    """A UNIX timestamp or an ISO 8601 date-time (Graph takes both)."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(100, "(#100) The specified scheduled publish time is invalid.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def parse_fields(raw: str | None) -> list[str]:
    if not raw:
        return list(DEFAULT_POST_FIELDS)
    return [f.strip() for f in raw.split(",") if f.strip()]


def encode_cursor(post: GraphPost) -> str:
    return base64.urlsafe_b64encode(f"{post.created_time!r}:{post.seq}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        created, _, seq = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        return float(created), int(seq)
    except ValueError:
        raise GraphError(100, "(#100) Invalid cursor") from None


def str_field(body: Any, name: str) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise ControlError(f"{name} (a non-empty string) is required")
    return value
