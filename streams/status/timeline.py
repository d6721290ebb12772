"""The timeline page: one loudspeaker zone's day (windows, slots, emergencies, now) from a
``ZoneDay`` that a ``TimelineFetcher`` found (``streams.status.platform.PlatformTimeline``, or a fake in
tests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from streams.status.layout import (
    EMERGENCY_STATUS_VI,
    PRIORITY_VI,
    REASON_VI,
    TIMELINE_REFRESH_S,
    WEEKDAY_VI,
    _e,
    _moment,
    _page,
    _time,
    status_path,
    timeline_path,
)

__all__ = ["TimelineFetcher", "TimelineUnavailable", "UnknownZone", "ZoneDay", "render_timeline"]


class UnknownZone(LookupError):
    """No loudspeaker zone by that name: the page answers 404."""


class TimelineUnavailable(Exception):
    """The platform could not be asked (no token, down, refused): the page answers 502 with why."""


@dataclass(frozen=True)
class ZoneDay:
    """What the timeline page shows of one zone and one local day.

    ``schedule`` is the platform's schedule as ``consumers.loudspeaker.outputs.to_json`` shapes
    it (windows, slots, unplaced, totals), None when nothing was pushed for that day; then
    ``windows`` (the configured broadcast windows) still show. ``emergencies`` are the
    platform's emergency records (``GET /api/v1/emergencies/{id}``) that touch the zone that day.
    """

    zone: str
    day: date
    timezone: str
    name: str | None = None
    province: str | None = None
    target_id: str | None = None
    windows: tuple[tuple[datetime, datetime], ...] = ()
    schedule: Mapping[str, Any] | None = None
    platform: Mapping[str, Any] | None = None
    emergencies: tuple[Mapping[str, Any], ...] = ()


# zone as given in the URL (target id, ward code or platform code), day (None: today there).
# Raises UnknownZone or TimelineUnavailable.
TimelineFetcher = Callable[[str, date | None], Awaitable[ZoneDay]]


def _seconds(value: Any) -> str:
    try:
        return f"{float(value):.0f}"
    except (TypeError, ValueError):
        return "?"


def _minutes(seconds: Any) -> str:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return "?"
    return f"{value / 60:.0f}" if value >= 60 or value == 0 else f"{value / 60:.1f}"


def render_timeline(zd: ZoneDay, now: datetime, refresh: int | None = TIMELINE_REFRESH_S) -> str:
    """The zone's day as one vertical list in time order: windows, slots, emergencies, now."""
    tz = ZoneInfo(zd.timezone)
    day_start = datetime.combine(zd.day, datetime.min.time(), tzinfo=tz)
    day_end = day_start + timedelta(days=1)
    where = " — ".join(x for x in (zd.name, zd.province) if x) or zd.zone
    title = f"Lịch phát thanh {where}"
    head = [
        f'<h1 data-zone="{_e(zd.zone)}">{_e(title)}</h1>',
        f"<p>{_e(WEEKDAY_VI[zd.day.weekday()])}, ngày {zd.day:%d/%m/%Y} · mã vùng {_e(zd.zone)}"
        + (f" ({_e(zd.target_id)})" if zd.target_id and zd.target_id != zd.zone else "")
        + f" · giờ {_e(zd.timezone)}</p>",
        '<nav class="filters">'
        f'<a href="{_e(timeline_path(zd.target_id or zd.zone, zd.day - timedelta(days=1)))}">‹ Hôm trước</a>'
        f'<a href="{_e(timeline_path(zd.target_id or zd.zone))}">Hôm nay</a>'
        f'<a href="{_e(timeline_path(zd.target_id or zd.zone, zd.day + timedelta(days=1)))}">Hôm sau ›</a>'
        f'<form class="day" method="get"><input type="date" name="date" value="{zd.day.isoformat()}" '
        'aria-label="Chọn ngày"><button type="submit">Xem</button></form></nav>',
        f'<p class="muted">Cập nhật lúc {_time(now, tz)}</p>',
    ]
    emergencies = sorted(zd.emergencies, key=lambda e: str(e.get("created_at") or ""))
    if emergencies:
        boxes = "".join(_emergency_box(e, tz) for e in emergencies)
        head.append(f'<section class="card alerts"><h2>Tin khẩn cấp tại vùng này</h2>{boxes}</section>')
    schedule = zd.schedule
    items: list[tuple[datetime, int, str]] = []
    windows: list[Mapping[str, Any]]
    if schedule is None:
        head.append(
            '<section class="card"><p data-schedule="none">Nền tảng loa chưa có lịch cho ngày này '
            "(chưa có bản tin nào được xếp).</p></section>"
        )
        windows = [
            {"index": i, "start": s.isoformat(), "end": e.isoformat()} for i, (s, e) in enumerate(zd.windows)
        ]
    else:
        windows = list(schedule.get("windows") or [])
    for number, w in enumerate(windows, 1):
        start, end = _moment(w.get("start")), _moment(w.get("end"))
        if start is None or end is None:
            continue
        used = (
            f" · đã dùng {_minutes(w.get('used_s'))}/{_minutes(w.get('capacity_s'))} phút"
            if "used_s" in w
            else ""
        )
        items.append(
            (
                start,
                0,
                f'<li class="window" data-window="{_e(w.get("index"))}"><span class="when">'
                f"{_time(start, tz, seconds=False, with_date=False)}</span>Bắt đầu khung phát "
                f"{number} (đến {_time(end, tz, seconds=False, with_date=False)}){used}</li>",
            )
        )
        items.append(
            (
                end,
                4,
                f'<li class="window-end"><span class="when">{_time(end, tz, seconds=False, with_date=False)}'
                f"</span>Hết khung phát {number}</li>",
            )
        )
    for s in (schedule or {}).get("slots") or []:
        start, end = _moment(s.get("start")), _moment(s.get("end"))
        if start is None or end is None:
            continue
        clash = any(_overlaps_emergency(e, start, end) for e in emergencies)
        items.append((start, 2, _slot_item(s, start, end, now, tz, clash)))
    for e in emergencies:
        created = _moment(e.get("created_at"))
        if created is not None:
            items.append((max(created, day_start), 1, _emergency_item(e, created, tz, day_start)))
    if day_start <= now < day_end:
        items.append(
            (
                now,
                3,
                f'<li class="now" data-now="1"><span class="when">{_time(now, tz, seconds=False, with_date=False)}'
                "</span>Bây giờ</li>",
            )
        )
    items.sort(key=lambda i: (i[0], i[1]))
    if items:
        body = f'<section class="card"><h2>Dòng thời gian</h2><ol class="timeline">{"".join(i[2] for i in items)}</ol>'
    else:
        body = '<section class="card"><p>Không có khung phát nào trong ngày này.</p>'
    if schedule is not None:
        totals = schedule.get("totals") or {}
        body += (
            f'<p class="muted">{_e(totals.get("slots", 0))} lượt phát, tổng {_minutes(totals.get("seconds", 0))} phút'
            f", {_e(totals.get('corrections', 0))} đính chính.</p>"
        )
    body += "</section>" + _unplaced((schedule or {}).get("unplaced") or [])
    if zd.platform:
        p = zd.platform
        body += (
            f'<p class="muted">Lịch trên nền tảng: phiên bản {_e(p.get("version"))}, '
            f"cập nhật {_time(p.get('updated_at'), tz)}, etag {_e(p.get('etag'))}</p>"
        )
    return _page(title, "".join(head) + body, refresh=refresh)


def _overlaps_emergency(e: Mapping[str, Any], start: datetime, end: datetime) -> bool:
    """Whether a play of emergency ``e`` (one every ``repeat_interval_s`` from ``created_at``
    until it stops or expires, ``duration_s`` each) shares time with the slot: the platform
    then cuts the slot, or skips it if it would start during the play."""
    created = _moment(e.get("created_at"))
    stop = _moment(e.get("stopped_at")) or _moment(e.get("expires_at"))
    try:
        every, length = float(e.get("repeat_interval_s") or 0), float(e.get("duration_s") or 0)
    except (TypeError, ValueError):
        return False
    if created is None or stop is None or every <= 0 or length <= 0:
        return False
    a = (start - created).total_seconds()
    b = (min(end, stop) - created).total_seconds()
    if b <= 0:
        return False
    k = max(0, int((a - length) // every))  # the first play that could still be running at the slot's start
    while k * every < b:
        if k * every + length > a:
            return True
        k += 1
    return False


def _slot_item(
    s: Mapping[str, Any], start: datetime, end: datetime, now: datetime, tz: ZoneInfo, clash: bool = False
) -> str:
    priority = str(s.get("priority") or "normal")
    correction = bool(s.get("correction"))
    classes = (
        ["slot", f"p-{priority}-slot"]
        + (["correction"] if correction else [])
        + (["past"] if end <= now else [])
        + (["clash"] if clash else [])
    )
    badges = f'<span class="badge p-{_e(priority)}">{_e(PRIORITY_VI.get(priority, priority))}</span>'
    if correction:
        badges += '<span class="badge b-correction">ĐÍNH CHÍNH</span>'
    if clash:
        badges += '<span class="badge b-clash">Trùng giờ phát khẩn cấp</span>'
    elif start <= now < end:
        badges += '<span class="badge s-delivered">Đang phát</span>'
    title = ("Đính chính: " if correction else "") + str(s.get("title") or s.get("bulletin_id") or "")
    uri = str(s.get("uri") or "")
    link = f' <a class="muted" href="{_e(status_path(uri))}">trạng thái bài</a>' if uri else ""
    marker = ' data-correction="1"' if correction else ""
    return (
        f'<li class="{" ".join(classes)}" data-bulletin="{_e(s.get("bulletin_id"))}" data-priority="{_e(priority)}"'
        f'{marker}><span class="when">{_time(start, tz, with_date=False)}'
        f'–{_time(end, tz, with_date=False)}</span>{_e(title)} <div class="badges">{badges}'
        f'<span class="muted">v{_e(s.get("version"))} · {_e(_seconds(s.get("duration_s")))} giây</span></div>{link}</li>'
    )


def _emergency_words(e: Mapping[str, Any], tz: ZoneInfo) -> tuple[str, str, bool]:
    status = str(e.get("status") or "")
    title = str(e.get("title") or (str(e.get("text") or "")[:160]) or e.get("emergency_id") or "")
    ended = status != "active"
    until = e.get("stopped_at") or e.get("expires_at")
    try:
        every = f"lặp lại mỗi {float(e.get('repeat_interval_s') or 0) / 60:g} phút"
    except (TypeError, ValueError):
        every = ""
    detail = (
        f"{EMERGENCY_STATUS_VI.get(status, status)} · phát lúc {_time(e.get('created_at'), tz)}, {every}"
        f" {'đến' if not ended else 'dừng lúc'} {_time(until, tz)} · đã phát {_e(e.get('plays_started', '?'))} lần"
        f" · {_e(e.get('zone_count', '?'))} vùng"
    )
    return title, detail, ended


def _emergency_box(e: Mapping[str, Any], tz: ZoneInfo) -> str:
    title, detail, ended = _emergency_words(e, tz)
    return (
        f'<div class="emergency{" ended" if ended else ""}" data-emergency-id="{_e(e.get("emergency_id"))}" '
        f'data-status="{_e(e.get("status"))}"><span class="badge b-emergency">KHẨN CẤP</span> '
        f"<strong>{_e(title)}</strong><br>{detail}<br>"
        f'<span class="uri">{_e(e.get("emergency_id"))}</span></div>'
    )


def _emergency_item(e: Mapping[str, Any], created: datetime, tz: ZoneInfo, day_start: datetime) -> str:
    title, detail, ended = _emergency_words(e, tz)
    since = "" if created >= day_start else '<span class="muted">(từ hôm trước)</span> '
    return (
        f'<li class="emergency{" ended" if ended else ""}" data-emergency-id="{_e(e.get("emergency_id"))}" '
        f'data-status="{_e(e.get("status"))}"><span class="when">{_time(max(created, day_start), tz, with_date=False)}'
        f'</span><span class="badge b-emergency">KHẨN CẤP</span> {since}<strong>{_e(title)}</strong>'
        f"<br>{detail}</li>"
    )


def _unplaced(unplaced: Sequence[Mapping[str, Any]]) -> str:
    if not unplaced:
        return ""
    rows = "".join(
        f'<tr data-reason="{_e(u.get("reason"))}"><td><a href="{_e(status_path(str(u.get("uri") or "")))}">'
        f'{_e(u.get("uri"))}</a> <span class="muted">v{_e(u.get("version"))}</span></td>'
        f'<td>{_e(REASON_VI.get(str(u.get("reason")), u.get("reason")))}</td><td class="reason">{_e(u.get("detail") or "")}</td></tr>'
        for u in unplaced
    )
    return (
        '<section class="card"><h2>Chưa xếp được vào ngày này</h2><div class="scroll"><table><thead><tr>'
        f"<th>Bài</th><th>Vì sao</th><th>Chi tiết</th></tr></thead><tbody>{rows}</tbody></table></div></section>"
    )
