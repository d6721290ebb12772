"""The article pages: one article (per channel a summary and its targets, grouped by province
when there are many) and the list of recent articles, from ``templates/article.html`` and
``templates/index.html``. What a page shows is worked out here (order, groups, words); the
templates only lay it out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from schemas.emergency import alert_uri
from streams.status.layout import (
    ACTION_VI,
    APPROVAL_VI,
    CHANNEL_ORDER,
    CHANNEL_VI,
    EVENT_VI,
    GROUP_OVER,
    OPEN_TROUBLED_GROUPS,
    STATE_ORDER,
    STATE_VI,
    STATUS_REFRESH_S,
    TROUBLE,
    provinces,
    render_page,
    status_path,
    target_label,
    timeline_path,
    zones,
)

__all__ = ["render_article", "render_index"]


def render_article(
    article: Mapping[str, Any],
    meta: Mapping[str, Any],
    *,
    channel: str | None = None,
    state: str | None = None,
    refresh: int | None = STATUS_REFRESH_S,
) -> str:
    """One article's page. ``article`` is ``StatusFold.article`` (targets possibly narrowed by
    ``state``); with ``channel`` only that channel lists its targets (all keep their summary)."""
    uri = str(article["uri"])
    title = str(article.get("title") or uri)
    filters = None
    if channel or state:
        filters = ", ".join(
            x for x in (CHANNEL_VI.get(channel or "", channel), STATE_VI.get(state or "", state)) if x
        )
    channels: Mapping[str, Any] = article.get("channels") or {}
    ordered = sorted(channels.items(), key=lambda c: (CHANNEL_ORDER.get(str(c[0]), 99), str(c[0])))
    return render_page(
        "article.html",
        title,
        refresh=refresh,
        uri=uri,
        json_path=f"/articles/{quote(uri, safe='')}/status",
        state=article.get("state"),
        state_word=EVENT_VI.get(str(article.get("state")), article.get("state") or "chưa rõ"),
        version=article.get("version") or "—",
        updated_at=article.get("updated_at"),
        meta=meta,
        totals=article.get("totals") or {},
        filters=filters,
        all_path=status_path(uri),
        channels=[
            _channel(uri, str(name), entry, listed=channel is None or channel == name, state=state)
            for name, entry in ordered
        ],
        events=[_event(ev) for ev in reversed(article.get("events") or [])],  # newest first
    )


def _channel(
    uri: str, channel: str, entry: Mapping[str, Any], *, listed: bool, state: str | None
) -> dict[str, Any]:
    states: Mapping[str, int] = entry.get("states") or {}
    total = sum(states.values())
    expected = entry.get("expected")
    settled = int(entry.get("settled") or 0)
    of = expected if isinstance(expected, int) and expected >= total else total
    targets = sorted(entry.get("targets") or [], key=_target_key) if listed else []
    timeline = channel in ("loudspeaker", "emergency")
    groups = None
    if len(targets) > GROUP_OVER:
        groups = _province_groups(targets, timeline, open_all=len(targets) <= 200 and state is not None)
    return {
        "name": channel,
        "label": CHANNEL_VI.get(channel, channel),
        "states": states,
        "total": total,
        "expected": expected,
        "settled": settled,
        "of": of,
        "progress_max": max(int(of or 0), 1),
        "badge_href": lambda s: status_path(uri, channel=channel, state=s) + f"#ch-{channel}",
        "listed": listed,
        "targets_path": status_path(uri, channel=channel) + f"#ch-{channel}",
        "filtered": bool(state),
        "rows": [_row(t, timeline) for t in targets] if groups is None else [],
        "groups": groups,
        "target_count": len(targets),
    }


def _target_key(target: Mapping[str, Any]) -> tuple[int, str, int, str]:
    tid = str(target.get("target", ""))
    prefix, _, rest = tid.partition(":")
    return (STATE_ORDER.get(str(target.get("state")), 99), prefix, int(rest) if rest.isdigit() else -1, tid)


def _province_groups(
    targets: Sequence[Mapping[str, Any]], timeline: bool, *, open_all: bool
) -> list[dict[str, Any]]:
    found_zones, names = zones(), provinces()
    groups: dict[int | None, list[Mapping[str, Any]]] = {}
    for t in targets:
        found = found_zones.get(str(t.get("target")))
        groups.setdefault(found[1] if found else None, []).append(t)

    def trouble(rows: Sequence[Mapping[str, Any]]) -> int:
        return sum(1 for r in rows if r.get("state") in TROUBLE)

    order = sorted(groups, key=lambda p: (-trouble(groups[p]), p is None, p or 0))
    troubled = sum(1 for p in order if trouble(groups[p]))
    out = []
    for province in order:
        rows = groups[province]
        counts: dict[str, int] = {}
        for r in rows:
            counts[str(r.get("state"))] = counts.get(str(r.get("state")), 0) + 1
        bad = trouble(rows)
        out.append(
            {
                "province": province or "",
                "name": names.get(province, f"Tỉnh {province}")
                if province is not None
                else "Khác (không thuộc tỉnh nào)",
                "troubled": bad > 0,
                "opened": open_all or (bad > 0 and troubled <= OPEN_TROUBLED_GROUPS),
                "counts": counts,
                "rows": [_row(t, timeline) for t in rows],
            }
        )
    return out


def _row(t: Mapping[str, Any], timeline: bool) -> dict[str, Any]:
    tid, st = str(t.get("target")), str(t.get("state"))
    label = target_label(tid)
    live = t.get("live_version")
    return {
        "target": tid,
        "state": st,
        "label": label,
        "timeline_path": timeline_path(tid) if timeline else None,
        "version": t.get("version"),
        "action": ACTION_VI.get(str(t.get("action")), t.get("action") or ""),
        "live_version": live if live and live != t.get("version") else None,
        "updated_at": t.get("updated_at"),
        "delivered_at": t.get("delivered_at"),
        "external_id": t.get("external_id") or "",
        "reason": t.get("reason") or "",
    }


def _event(ev: Mapping[str, Any]) -> dict[str, Any]:
    outcome = str(ev.get("outcome"))
    return {
        "at": ev.get("at"),
        "outcome": outcome,
        "word": EVENT_VI.get(outcome, outcome),
        "version": ev.get("version") or "",
        "counts": ", ".join(f"{CHANNEL_VI.get(str(k), k)}: {v}" for k, v in (ev.get("counts") or {}).items()),
        "reason": ev.get("reason") or "",
        "actor": ev.get("actor") or "",
    }


def render_index(
    articles: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    refresh: int | None = STATUS_REFRESH_S,
    approvals: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The recent articles (``StatusFold.recent``), newest first, each linking to its page; above
    them the alerts of the two-person rule (``StatusView.approval_list``), when there are any."""
    rows = []
    for a in articles:
        uri = str(a.get("uri"))
        channels = []
        for ch, entry in (a.get("channels") or {}).items():
            states: Mapping[str, int] = entry.get("states") or {}
            channels.append(
                {
                    "name": ch,
                    "label": CHANNEL_VI.get(str(ch), ch),
                    "worst": min(states, key=lambda s: STATE_ORDER.get(s, 99)) if states else "pending",
                    "settled": entry.get("settled", 0),
                    "total": sum(states.values()),
                }
            )
        state = str(a.get("state") or "")
        rows.append(
            {
                "uri": uri,
                "path": status_path(uri),
                "title": a.get("title") or uri,
                "word": EVENT_VI.get(state, state),
                "version": a.get("version") or "",
                "updated_at": a.get("updated_at"),
                "channels": channels,
            }
        )
    waiting = [
        {
            "identifier": a.get("identifier"),
            "path": status_path(alert_uri(str(a.get("identifier")))),
            "state": a.get("state"),
            "word": APPROVAL_VI.get(str(a.get("state")), str(a.get("state"))),
            "headline": a.get("headline") or "",
            "zones": a.get("zones"),
            "reason": a.get("reason") or "",
            "submitted_by": a.get("submitted_by") or "",
            "submitted_at": a.get("submitted_at"),
            "approved_by": a.get("approved_by") or "",
            "expires_at": a.get("expires_at"),
        }
        for a in approvals
    ]
    return render_page(
        "index.html", "Bài viết gần đây", refresh=refresh, meta=meta, articles=rows, approvals=waiting
    )
