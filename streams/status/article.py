"""The article pages: one article (per channel a summary and its targets, grouped by province
when there are many) and the list of recent articles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from streams.status.layout import (
    ACTION_VI,
    CHANNEL_ORDER,
    CHANNEL_VI,
    EVENT_VI,
    GROUP_OVER,
    OPEN_TROUBLED_GROUPS,
    STATE_ORDER,
    STATE_VI,
    STATUS_REFRESH_S,
    TROUBLE,
    _badge,
    _badges,
    _e,
    _page,
    _provinces,
    _target_key,
    _time,
    _view_banner,
    _zones,
    status_path,
    target_label,
    timeline_path,
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
    parts = [
        f'<h1 data-uri="{_e(uri)}">{_e(title)}</h1>',
        f'<p class="uri">{_e(uri)} · <a href="/articles/{_e(quote(uri, safe=""))}/status">JSON</a></p>',
    ]
    state_word = EVENT_VI.get(str(article.get("state")), article.get("state") or "chưa rõ")
    parts.append(
        f'<p>Trạng thái bài: <strong data-article-state="{_e(article.get("state"))}">{_e(state_word)}</strong>'
        f" · phiên bản {_e(article.get('version') or '—')} · cập nhật {_time(article.get('updated_at'))}</p>"
    )
    parts.append(_view_banner(meta))
    parts.append(_badges(article.get("totals") or {}))
    if channel or state:
        filters = ", ".join(
            x for x in (CHANNEL_VI.get(channel or "", channel), STATE_VI.get(state or "", state)) if x
        )
        parts.append(
            f'<nav class="filters"><span>Đang lọc: {_e(filters)}</span> '
            f'<a href="{_e(status_path(uri))}">Bỏ lọc</a></nav>'
        )
    channels: Mapping[str, Any] = article.get("channels") or {}
    if not channels:
        parts.append('<section class="card"><p>Chưa có kênh nào nhận lệnh cho bài này.</p></section>')
    for name, entry in sorted(channels.items(), key=lambda c: (CHANNEL_ORDER.get(str(c[0]), 99), str(c[0]))):
        parts.append(
            _channel_section(uri, str(name), entry, listed=channel is None or channel == name, state=state)
        )
    parts.append(_events(article.get("events") or []))
    return _page(title, "".join(parts), refresh=refresh)


def _channel_section(
    uri: str, channel: str, entry: Mapping[str, Any], *, listed: bool, state: str | None
) -> str:
    states: Mapping[str, int] = entry.get("states") or {}
    total = sum(states.values())
    expected = entry.get("expected")
    settled = int(entry.get("settled") or 0)
    of = expected if isinstance(expected, int) and expected >= total else total
    head = (
        f'<section class="card channel" id="ch-{_e(channel)}" data-channel="{_e(channel)}">'
        f"<h2>{_e(CHANNEL_VI.get(channel, channel))}</h2>"
        f'<p>Đã xong <strong data-settled="{settled}" data-expected="{_e(of)}">{settled}/{_e(of)}</strong> đích'
        + (
            f' <span class="muted">(đã nhận lệnh {total}/{_e(expected)})</span>'
            if expected is not None and expected != total
            else ""
        )
        + f'</p><progress value="{settled}" max="{max(int(of or 0), 1)}">{settled}/{_e(of)}</progress>'
        + _badges(states, lambda s: status_path(uri, channel=channel, state=s) + f"#ch-{channel}")
    )
    if not listed:
        return (
            head
            + f'<p><a href="{_e(status_path(uri, channel=channel))}#ch-{_e(channel)}">Xem các đích</a></p></section>'
        )
    targets = sorted(entry.get("targets") or [], key=_target_key)
    if not targets:
        return (
            head + f'<p class="muted">Không có đích nào{" ở trạng thái này" if state else ""}.</p></section>'
        )
    timeline = channel in ("loudspeaker", "emergency")
    if len(targets) <= GROUP_OVER:
        return head + _target_table(targets, timeline) + "</section>"
    return (
        head
        + _province_groups(targets, timeline, open_all=len(targets) <= 200 and state is not None)
        + "</section>"
    )


def _province_groups(targets: Sequence[Mapping[str, Any]], timeline: bool, *, open_all: bool) -> str:
    zones, names = _zones(), _provinces()
    groups: dict[int | None, list[Mapping[str, Any]]] = {}
    for t in targets:
        found = zones.get(str(t.get("target")))
        groups.setdefault(found[1] if found else None, []).append(t)

    def trouble(rows: Sequence[Mapping[str, Any]]) -> int:
        return sum(1 for r in rows if r.get("state") in TROUBLE)

    order = sorted(groups, key=lambda p: (-trouble(groups[p]), p is None, p or 0))
    troubled = sum(1 for p in order if trouble(groups[p]))
    out = [
        f'<p class="muted">{len(targets)} đích ở {len(groups)} tỉnh/thành, gộp theo tỉnh; '
        "tỉnh có lỗi được xếp trước.</p>"
    ]
    for province in order:
        rows = groups[province]
        counts: dict[str, int] = {}
        for r in rows:
            counts[str(r.get("state"))] = counts.get(str(r.get("state")), 0) + 1
        name = (
            names.get(province, f"Tỉnh {province}") if province is not None else "Khác (không thuộc tỉnh nào)"
        )
        bad = trouble(rows)
        opened = open_all or (bad > 0 and troubled <= OPEN_TROUBLED_GROUPS)
        out.append(
            f'<details class="group{" troubled" if bad else ""}" data-province="{_e(province or "")}"'
            f"{' open' if opened else ''}><summary><strong>{_e(name)}</strong>"
            f'<span class="muted">{len(rows)} đích</span>{_badges(counts)}</summary>'
            f"{_target_table(rows, timeline)}</details>"
        )
    return "".join(out)


def _target_table(targets: Iterable[Mapping[str, Any]], timeline: bool) -> str:
    rows = []
    for t in targets:
        tid, st = str(t.get("target")), str(t.get("state"))
        label = target_label(tid)
        name = _e(label) + (f' <span class="muted">{_e(tid)}</span>' if label != tid else "")
        if timeline:
            name = f'<a href="{_e(timeline_path(tid))}">{name}</a>'
        action = ACTION_VI.get(str(t.get("action")), t.get("action") or "")
        live = t.get("live_version")
        rows.append(
            f'<tr class="t-{_e(st)}" data-target="{_e(tid)}" data-state="{_e(st)}">'
            f"<td>{name}</td><td>{_badge(st)}</td>"
            f'<td class="opt">v{_e(t.get("version"))} {_e(action)}'
            + (
                f'<br><span class="muted">đang hiện v{_e(live)}</span>'
                if live and live != t.get("version")
                else ""
            )
            + f'</td><td class="opt">{_time(t.get("updated_at"))}</td><td>{_time(t.get("delivered_at"))}</td>'
            f'<td class="ext opt">{_e(t.get("external_id") or "")}</td><td class="reason">{_e(t.get("reason") or "")}</td></tr>'
        )
    return (
        '<div class="scroll"><table><thead><tr><th>Đích</th><th>Trạng thái</th><th class="opt">Phiên bản</th>'
        '<th class="opt">Cập nhật</th><th>Giao lúc</th><th class="opt">Mã bên ngoài</th><th>Lý do</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _events(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return ""
    rows = []
    for ev in reversed(events):  # newest first
        counts = ", ".join(f"{CHANNEL_VI.get(str(k), k)}: {v}" for k, v in (ev.get("counts") or {}).items())
        outcome = str(ev.get("outcome"))
        rows.append(
            f'<tr data-outcome="{_e(outcome)}"><td>{_time(ev.get("at"))}</td>'
            f"<td>{_e(EVENT_VI.get(outcome, outcome))}</td><td>{_e(ev.get('version') or '')}</td>"
            f'<td>{_e(counts)}</td><td class="reason">{_e(ev.get("reason") or "")}</td></tr>'
        )
    return (
        '<section class="card"><h2>Diễn biến</h2><div class="scroll"><table><thead><tr><th>Lúc</th><th>Sự kiện</th>'
        f"<th>Bản</th><th>Số đích</th><th>Lý do</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def render_index(
    articles: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], refresh: int | None = STATUS_REFRESH_S
) -> str:
    """The recent articles (``StatusFold.recent``), newest first, each linking to its page."""
    rows = []
    for a in articles:
        uri = str(a.get("uri"))
        channels = []
        for ch, entry in (a.get("channels") or {}).items():
            states: Mapping[str, int] = entry.get("states") or {}
            total = sum(states.values())
            worst = min(states, key=lambda s: STATE_ORDER.get(s, 99)) if states else "pending"
            channels.append(
                f'<span class="badge s-{_e(worst)}" data-channel="{_e(ch)}" data-state="{_e(worst)}">'
                f"{_e(CHANNEL_VI.get(str(ch), ch))} {_e(entry.get('settled', 0))}/{_e(total)}</span>"
            )
        state = str(a.get("state") or "")
        rows.append(
            f'<tr data-uri="{_e(uri)}"><td><a href="{_e(status_path(uri))}">{_e(a.get("title") or uri)}</a>'
            f'<br><span class="uri">{_e(uri)}</span></td><td>{_e(EVENT_VI.get(state, state))}</td>'
            f'<td class="opt">{_e(a.get("version") or "")}</td><td>{_time(a.get("updated_at"))}</td>'
            f'<td><div class="badges">{"".join(channels)}</div></td></tr>'
        )
    table = (
        '<div class="scroll"><table><thead><tr><th>Bài</th><th>Trạng thái</th><th class="opt">Bản</th>'
        f"<th>Cập nhật</th><th>Kênh (xong/tổng)</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        if rows
        else "<p>Chưa có bài nào.</p>"
    )
    body = f'<h1>Bài viết gần đây</h1>{_view_banner(meta)}<section class="card">{table}</section>'
    return _page("Bài viết gần đây", body, refresh=refresh)
