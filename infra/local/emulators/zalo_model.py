"""The Zalo emulator's vocabulary: error codes and texts, the errors of the Open API and of the
OAuth server, the records it keeps (messages, token pairs) and the attachment check (see ``zalo``
for the API that uses them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "BAD_GATEWAY_HTML",
    "BUTTON_TYPES",
    "ERROR_MESSAGES",
    "GROUP_STATUSES",
    "OAUTH_REF_DOC",
    "AccessToken",
    "OAuthError",
    "RefreshToken",
    "ZaloError",
    "ZaloMessage",
    "check_attachment",
]

ERROR_MESSAGES = {
    -1: "Unknown error",  # [guess]
    -32: "The number of API calls exceeded the limit",  # [guess]
    -201: "Parameters invalid",
    -204: "Official Account has been disabled",  # [guess]
    -205: "Official Account does not exist",  # [guess]
    -210: "Parameter exceeds the allowed limit",  # [guess]
    -211: "Out of quota",
    -213: "User has not followed the Official Account",  # [guess]
    -216: "Access token is invalid",
    -220: "Access token has expired",  # [guess]
    -223: "Official Account is not authorised to use this feature",  # [guess]
    -224: "Official Account tier does not allow this feature",  # [guess]
    -230: "User has not interacted with the OA in the last 7 days",  # [guess]
    -232: "User has not interacted with the OA",  # [guess]
    -234: "Promotion messages cannot be sent from 22:00 to 06:00",  # [guess]
    -237: "Group has been disabled",  # [guess]
    -403: "Official Account is not a member of this group",  # [guess]
}
OAUTH_REF_DOC = (
    "https://developers.zalo.me/docs/official-account/bat-dau/xac-thuc-va-uy-quyen-cho-ung-dung-new"
)
GROUP_STATUSES = frozenset({"active", "disabled", "not_member"})
BUTTON_TYPES = frozenset({"oa.open.url", "oa.query.show", "oa.query.hide", "oa.open.sms", "oa.open.phone"})
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


class ZaloError(Exception):
    """A Zalo API error reply (negative code, HTTP status)."""

    def __init__(self, code: int, message: str | None = None, *, http_status: int = 200) -> None:
        self.code = code
        self.message = message if message is not None else ERROR_MESSAGES.get(code, "Error")
        super().__init__(self.message)
        self.http_status = http_status


class OAuthError(Exception):
    """An error of Zalo's OAuth v4 server."""

    def __init__(self, code: int, reason: str, description: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.description = description

    def body(self) -> dict[str, Any]:
        return {
            "error_name": "Invalid parameter",
            "error_reason": self.reason,
            "ref_doc": OAUTH_REF_DOC,
            "error_description": self.description,
            "error": self.code,
        }


@dataclass
class ZaloMessage:
    """One message the OA sent (``kind``: group | cs | transaction | promotion)."""

    seq: int
    time: float
    message_id: str
    kind: str
    recipient: str
    text: str | None
    attachment: dict[str, Any] | None
    access_token: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AccessToken:
    token: str
    issued_at: float
    expires_at: float
    invalid_after: float | None = None


@dataclass
class RefreshToken:
    token: str
    issued_at: float
    expires_at: float
    used_at: float | None = None


def check_attachment(attachment: Any) -> None:
    """The attachment shapes of the contract: a media template (one image/gif element with a
    ``url`` or ``attachment_id``) and buttons of the ``oa.*`` types."""
    if not isinstance(attachment, dict) or attachment.get("type") != "template":
        raise ZaloError(-201, "Parameters invalid: attachment.type must be template")
    payload = attachment.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("template_type"), str):
        raise ZaloError(-201, "Parameters invalid: attachment.payload.template_type is required")
    elements = payload.get("elements")
    if payload["template_type"] == "media":
        if not isinstance(elements, list) or len(elements) != 1:
            raise ZaloError(-201, "Parameters invalid: a media template has one element")
        element = elements[0]
        if (
            not isinstance(element, dict)
            or element.get("media_type") not in ("image", "gif")
            or not (isinstance(element.get("url"), str) or isinstance(element.get("attachment_id"), str))
        ):
            raise ZaloError(
                -201,
                "Parameters invalid: media element needs media_type image|gif and a url or attachment_id",
            )
    elif elements is not None and not isinstance(elements, list):
        raise ZaloError(-201, "Parameters invalid: elements must be a list")
    buttons = payload.get("buttons")
    if buttons is None:
        return
    if not isinstance(buttons, list):
        raise ZaloError(-201, "Parameters invalid: buttons must be a list")
    for button in buttons:
        if not isinstance(button, dict) or button.get("type") not in BUTTON_TYPES:
            raise ZaloError(-201, f"Parameters invalid: button type must be one of {sorted(BUTTON_TYPES)}")
        if button["type"] == "oa.open.url":
            target = button.get("payload")
            if not isinstance(target, dict) or not isinstance(target.get("url"), str):
                raise ZaloError(-201, "Parameters invalid: oa.open.url needs payload.url")
