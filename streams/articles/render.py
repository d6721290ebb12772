"""Render: one article version → a minimal payload per channel. Pure.

The channel adapters refine these (speech normalisation, message splitting, HTML pages); the
spine only carries what each needs to act.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

from schemas.article import Article
from schemas.models import Priority
from schemas.text import visible, visible_json
from schemas.topics import Channel


def public_url(base_url: str, uri: str) -> str:
    return f"{base_url.rstrip('/')}/a/{quote(uri, safe='')}"


def priority_of(article: Article) -> Priority:
    # ninjs urgency: 1 is the most urgent. Editorial urgency 1-3 becomes an "ưu tiên" bulletin;
    # the emergency lane is reserved for CAP alerts.
    if article.urgency is not None and article.urgency <= 3:
        return Priority.PRIORITY
    return Priority.NORMAL


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


def render(channel: Channel, article: Article, base_url: str) -> dict[str, Any]:
    """The payload of a publish/update command for ``channel``."""
    url = public_url(base_url, article.uri)
    if channel is Channel.LOUDSPEAKER:
        text = _join(article.headline, article.summary)
        return {
            "bulletin_id": hashlib.sha256(
                f"{article.uri}\x00{article.version}\x00{text}".encode()
            ).hexdigest()[:32],
            "title": article.headline,
            "text": text,
            "language": article.language or "vi",
        }
    if channel is Channel.FANPAGE:
        return {"message": _join(article.headline, article.summary), "link": url}
    if channel is Channel.ZALO:
        return {"text": _join(article.headline, article.summary, url)}
    return {"document": article.document, "public_url": url, "ninjs_version": article.ninjs_version}


def render_all(article: Article, base_url: str, channels: list[Channel]) -> dict[Channel, dict[str, Any]]:
    """Render once per channel (never once per target: thousands of zones share one payload)."""
    return {c: shown(c, render(c, article, base_url)) for c in channels}


def shown(channel: Channel, payload: dict[str, Any]) -> dict[str, Any]:
    """The last guard before a payload leaves for a reader: no bidi or zero-width control in any
    of its strings, whatever a renderer added (schemas/text.py ``visible``; intake cleaned the
    article's texts already). The archive's document is the record as published, kept whole: its
    page is cleaned by consumers/archive/render.py with the same function."""
    return payload if channel is Channel.ARCHIVE else dict(visible_json(payload))


def retract_payload(reason: str | None) -> dict[str, Any]:
    return {"reason": visible(reason) if reason else "retracted by the newsroom"}
