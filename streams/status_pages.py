"""Status pages for people: server-side HTML over the status view and the loudspeaker platform.

    GET /status/{uri}                      one article: per channel a summary and its targets
                                           (?channel=CH&state=S narrow the lists, as the JSON API)
    GET /status, /articles (Accept: html)  the articles updated most recently (?limit=N)
    GET /timeline/{zone}?date=YYYY-MM-DD   one loudspeaker zone's day (default: today there)

For editors and on-call engineers, in Vietnamese, readable on a phone. No JavaScript at all: the
pages refresh themselves with ``<meta http-equiv="refresh">``, expanders are ``<details>``, and
the Content-Security-Policy allows nothing but the one inline stylesheet (by its hash) and GET
forms to this server, so a hostile title or reason that slipped past ``html.escape`` still could
not run. Every value from the outside goes through ``_e`` (``html.escape``), in text and in
attributes alike; nothing here builds HTML from unescaped data.

State is never colour alone: every badge carries its word, and ``data-state``/``data-target``
attributes carry the machine names (the browser tests read them).

The timeline's data comes from an injected ``TimelineFetcher`` (a fake in tests).
``PlatformTimeline`` is the real one: the zone's day schedule as the loudspeaker platform holds
it (what ``lantoa schedule`` prints) and the platform's emergencies that touch the zone that day.
It imports the platform client lazily: the stream app itself never talks to a channel; only this
page, on request, reads the platform.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from schemas.settings import Settings
from streams.registry import Registry, official_zones, province_names
from streams.status import STATES

if TYPE_CHECKING:
    from consumers.loudspeaker.adapter import PlatformClient
    from streams.status_web import StatusView

log = logging.getLogger(__name__)

DISPLAY_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
STATUS_REFRESH_S = 10
TIMELINE_REFRESH_S = 30
GROUP_OVER = 25          # more targets than this in one channel: one expander per province
OPEN_TROUBLED_GROUPS = 3  # expanders opened by default when at most this many provinces have trouble
# Trouble first (what needs a person), then what is still on its way, then what is settled.
STATE_ORDER = {s: i for i, s in enumerate(("failed", "retrying", "unknown", "pending", "delivered", "retracted",
                                           "skipped"))}
TROUBLE = frozenset({"failed", "retrying", "unknown"})

STATE_VI = {"pending": "Chờ gửi", "retrying": "Đang thử lại", "unknown": "Chưa rõ kết quả", "failed": "Thất bại",
            "delivered": "Đã giao", "retracted": "Đã gỡ", "skipped": "Bỏ qua"}
CHANNEL_VI = {"fanpage": "Fanpage Facebook", "zalo": "Zalo", "loudspeaker": "Loa truyền thanh cơ sở",
              "emergency": "Loa: luồng khẩn cấp", "archive": "Lưu trữ S3"}
EVENT_VI = {"accepted": "Đã nhận", "dropped_duplicate": "Bỏ qua (trùng)", "dropped_stale": "Bỏ qua (bản cũ)",
            "retract_unknown": "Gỡ bài chưa từng đăng", "dead_lettered": "Lỗi: chuyển hàng đợi lỗi",
            "held": "Tạm giữ (chờ giờ đăng)", "released": "Đến giờ đăng", "embargo_cancelled": "Hủy hẹn giờ",
            "routed": "Đã phân phối", "retracted": "Đã gỡ"}
CHANNEL_ORDER = {c: i for i, c in enumerate(CHANNEL_VI)}  # the social channels first, the archive last
ACTION_VI = {"publish": "Đăng", "update": "Cập nhật", "retract": "Gỡ"}
PRIORITY_VI = {"normal": "Thường", "priority": "Ưu tiên", "emergency": "Khẩn cấp"}
REASON_VI = {"too_long": "Dài hơn mọi khung phát", "carried_over": "Chuyển sang khung sau",
             "expired": "Hết hạn trước khung kế tiếp", "superseded": "Đã có phiên bản mới hơn",
             "retracted": "Đã gỡ", "emergency": "Phát qua luồng khẩn cấp",
             "correction_not_needed": "Không cần đính chính (bản gốc chưa phát)"}
EMERGENCY_STATUS_VI = {"active": "Đang hiệu lực", "cancelled": "Đã hủy", "expired": "Hết hạn",
                       "replaced": "Đã được thay thế"}
WEEKDAY_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật")

CSS = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 "Noto Sans",system-ui,sans-serif;color:#1b1f24;background:#f4f5f7}
header.top{background:#123c69;color:#fff;padding:.6rem 1rem}
header.top a{color:#fff;margin-right:1rem}
main{max-width:72rem;margin:0 auto;padding:.75rem}
h1{font-size:1.35rem;margin:.4rem 0}
h2{font-size:1.15rem;margin:0 0 .4rem}
section.card{background:#fff;border:1px solid #d9dde3;border-radius:8px;padding:.75rem;margin:.75rem 0}
.muted,.uri{color:#5b6470;font-size:.85rem}
.uri{word-break:break-all}
.warn{background:#fff4ce;border:1px solid #e0c36b;padding:.5rem;border-radius:6px}
.error{background:#fde7e9;border:1px solid #d13438;padding:.5rem;border-radius:6px}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;
 border:1px solid transparent;white-space:nowrap;text-decoration:none;color:inherit}
.s-delivered{background:#dff6dd;color:#0e5c0e;border-color:#9fd89f}
.s-retracted{background:#e8eaf6;color:#303f9f;border-color:#b3bbe6}
.s-skipped{background:#eceff1;color:#455a64;border-color:#cfd8dc}
.s-pending{background:#e3f2fd;color:#0d47a1;border-color:#a9cff3}
.s-retrying{background:#fff4ce;color:#7a5a00;border-color:#e8c65a}
.s-unknown{background:#fce4ec;color:#880e4f;border-color:#f0a6c3}
.s-failed{background:#d13438;color:#fff;border-color:#a4262c}
.p-priority{background:#fff0e0;color:#8a3b00;border-color:#f3b27a}
.p-normal{background:#eceff1;color:#37474f}
.b-correction{background:#ede7f6;color:#4527a0;border-color:#c5b3ea}
.b-clash{background:#fff;color:#c50f1f;border-color:#c50f1f}
.b-emergency{background:#c50f1f;color:#fff;border-color:#8e0b16;letter-spacing:.03em}
.badges{display:flex;flex-wrap:wrap;gap:.3rem;margin:.3rem 0}
progress{width:100%;max-width:20rem;height:.7rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .4rem;border-bottom:1px solid #e6e8eb;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
tr.t-failed td{background:#fff5f5}
td.reason{color:#a4262c;max-width:24rem;overflow-wrap:anywhere}
td.ext{font-family:ui-monospace,monospace;font-size:.8rem;overflow-wrap:anywhere}
details.group{border:1px solid #e0e3e7;border-radius:6px;margin:.35rem 0;background:#fcfcfd}
details.group>summary{cursor:pointer;padding:.4rem .5rem;display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}
details.group[open]>summary{border-bottom:1px solid #e0e3e7}
details.group.troubled{border-color:#d13438}
nav.filters a{margin-right:.6rem}
ol.timeline{list-style:none;margin:0;padding:0 0 0 1.1rem;border-left:3px solid #c3cbd6}
ol.timeline>li{position:relative;margin:.45rem 0;padding:.45rem .6rem;background:#fff;border:1px solid #d9dde3;
 border-radius:6px}
ol.timeline>li:before{content:"";position:absolute;left:-1.62rem;top:.8rem;width:.8rem;height:.8rem;
 border-radius:50%;background:#8a96a3;border:2px solid #f4f5f7}
ol.timeline>li.window{background:#eef3fa;border-color:#b9cbe4;font-weight:600}
ol.timeline>li.window:before{background:#123c69}
ol.timeline>li.window-end{background:transparent;border-style:dashed;color:#5b6470;font-weight:400}
ol.timeline>li.slot.p-priority-slot{border-left:5px solid #e07a1f}
ol.timeline>li.slot.correction{border-left:5px solid #6a4bc4}
ol.timeline>li.past{opacity:.6}
ol.timeline>li.emergency{background:#fde7e9;border:2px solid #c50f1f;color:#5c0009}
ol.timeline>li.emergency:before{background:#c50f1f}
ol.timeline>li.emergency.ended{border-style:dashed;opacity:.8}
ol.timeline>li.now{background:#123c69;color:#fff;border-color:#123c69;padding:.2rem .6rem}
ol.timeline>li.now:before{background:#f2c811}
.when{font-variant-numeric:tabular-nums;font-weight:700;margin-right:.4rem}
.alerts .emergency{background:#c50f1f;color:#fff;border-radius:6px;padding:.6rem;margin:.4rem 0}
.alerts .emergency .b-emergency{background:#fff;color:#c50f1f}
.alerts .emergency.ended{background:#fde7e9;color:#5c0009}
.alerts .emergency .uri{color:#ffd7d9}
.alerts .emergency.ended .uri{color:#5b6470}
form.day{display:inline-flex;gap:.3rem;align-items:center}
@media (max-width:40rem){body{font-size:15px}th.opt,td.opt{display:none}main{padding:.4rem}}
"""
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
# In the page (meta) and as a header; frame-ancestors only works as a header.
CSP = (f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'none'; base-uri 'none'; "
       "form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP + "; frame-ancestors 'none'", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _e(value: Any) -> str:
    """Text or attribute value, escaped (quotes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def status_path(uri: str, **query: str | None) -> str:
    q = {k: v for k, v in query.items() if v}
    return f"/status/{quote(uri, safe='')}" + (f"?{urlencode(q)}" if q else "")


def timeline_path(zone: str, day: date | None = None) -> str:
    return f"/timeline/{quote(zone, safe='')}" + (f"?date={day.isoformat()}" if day else "")


# -- names and times ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _zones() -> dict[str, tuple[str, int | None]]:
    """target id → (commune/ward name, province code); loaded on first use, never at import."""
    return {z.id: (z.name, z.province_code) for z in official_zones()}


@lru_cache(maxsize=1)
def _provinces() -> dict[int, str]:
    return province_names()


def target_label(target: str) -> str:
    found = _zones().get(target)
    return found[0] if found else target


def _moment(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _time(raw: Any, tz: ZoneInfo = DISPLAY_TZ, *, seconds: bool = True, with_date: bool = True) -> str:
    """``<time>`` in local time (the machine value in ``datetime``); '—' when there is none."""
    moment = _moment(raw) if not isinstance(raw, datetime) else raw
    if moment is None:
        return '<span class="muted">—</span>' if raw is None else _e(raw)
    local = moment.astimezone(tz)
    shown = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    if with_date:
        shown = f"{shown} {local:%d/%m}"
    return f'<time datetime="{_e(moment.isoformat())}">{_e(shown)}</time>'


def _badge(state: str, count: int | None = None, href: str | None = None) -> str:
    text = STATE_VI.get(state, state) + (f" {count}" if count is not None else "")
    cls = f"badge s-{_e(state)}"
    if href:
        return f'<a class="{cls}" data-state="{_e(state)}" href="{_e(href)}">{_e(text)}</a>'
    return f'<span class="{cls}" data-state="{_e(state)}">{_e(text)}</span>'


def _badges(states: Mapping[str, int], href: Callable[[str], str] | None = None) -> str:
    ordered = sorted(((s, n) for s, n in states.items() if n), key=lambda p: STATE_ORDER.get(p[0], 99))
    inner = "".join(_badge(s, n, href(s) if href else None) for s, n in ordered)
    return f'<div class="badges">{inner}</div>'


def _target_key(target: Mapping[str, Any]) -> tuple[int, str, int, str]:
    tid = str(target.get("target", ""))
    prefix, _, rest = tid.partition(":")
    return (STATE_ORDER.get(str(target.get("state")), 99), prefix, int(rest) if rest.isdigit() else -1, tid)


def _page(title: str, body: str, *, refresh: int | None = None) -> str:
    meta_refresh = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (
        '<!DOCTYPE html>\n<html lang="vi"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"{meta_refresh}<title>{_e(title)} · Lantoa</title><style>{CSS}</style></head><body>"
        '<header class="top"><a href="/status">Bài viết gần đây</a><a href="/healthz">Tình trạng máy chủ</a></header>'
        f"<main>{body}</main></body></html>"
    )


def _view_banner(meta: Mapping[str, Any]) -> str:
    shown = f'<p class="muted">Cập nhật lúc {_time(meta.get("as_of"))}'
    if not meta.get("caught_up"):
        return (shown + '</p><p class="warn" data-caught-up="false">Máy chủ đang đọc lại dữ liệu từ Kafka: '
                "trạng thái dưới đây có thể chưa đầy đủ.</p>")
    return shown + "</p>"


# -- the article page ---------------------------------------------------------------------------


def render_article(article: Mapping[str, Any], meta: Mapping[str, Any], *, channel: str | None = None,
                   state: str | None = None, refresh: int | None = STATUS_REFRESH_S) -> str:
    """One article's page. ``article`` is ``StatusFold.article`` (targets possibly narrowed by
    ``state``); with ``channel`` only that channel lists its targets (all keep their summary)."""
    uri = str(article["uri"])
    title = str(article.get("title") or uri)
    parts = [f'<h1 data-uri="{_e(uri)}">{_e(title)}</h1>',
             f'<p class="uri">{_e(uri)} · <a href="/articles/{_e(quote(uri, safe=""))}/status">JSON</a></p>']
    state_word = EVENT_VI.get(str(article.get("state")), article.get("state") or "chưa rõ")
    parts.append(f'<p>Trạng thái bài: <strong data-article-state="{_e(article.get("state"))}">{_e(state_word)}</strong>'
                 f' · phiên bản {_e(article.get("version") or "—")} · cập nhật {_time(article.get("updated_at"))}</p>')
    parts.append(_view_banner(meta))
    parts.append(_badges(article.get("totals") or {}))
    if channel or state:
        filters = ", ".join(x for x in (CHANNEL_VI.get(channel or "", channel), STATE_VI.get(state or "", state)) if x)
        parts.append(f'<nav class="filters"><span>Đang lọc: {_e(filters)}</span> '
                     f'<a href="{_e(status_path(uri))}">Bỏ lọc</a></nav>')
    channels: Mapping[str, Any] = article.get("channels") or {}
    if not channels:
        parts.append('<section class="card"><p>Chưa có kênh nào nhận lệnh cho bài này.</p></section>')
    for name, entry in sorted(channels.items(), key=lambda c: (CHANNEL_ORDER.get(str(c[0]), 99), str(c[0]))):
        parts.append(_channel_section(uri, str(name), entry, listed=channel is None or channel == name, state=state))
    parts.append(_events(article.get("events") or []))
    return _page(title, "".join(parts), refresh=refresh)


def _channel_section(uri: str, channel: str, entry: Mapping[str, Any], *, listed: bool, state: str | None) -> str:
    states: Mapping[str, int] = entry.get("states") or {}
    total = sum(states.values())
    expected = entry.get("expected")
    settled = int(entry.get("settled") or 0)
    of = expected if isinstance(expected, int) and expected >= total else total
    head = (f'<section class="card channel" id="ch-{_e(channel)}" data-channel="{_e(channel)}">'
            f'<h2>{_e(CHANNEL_VI.get(channel, channel))}</h2>'
            f'<p>Đã xong <strong data-settled="{settled}" data-expected="{_e(of)}">{settled}/{_e(of)}</strong> đích'
            + (f' <span class="muted">(đã nhận lệnh {total}/{_e(expected)})</span>' if expected is not None
               and expected != total else "")
            + f'</p><progress value="{settled}" max="{max(int(of or 0), 1)}">{settled}/{_e(of)}</progress>'
            + _badges(states, lambda s: status_path(uri, channel=channel, state=s) + f"#ch-{channel}"))
    if not listed:
        return head + f'<p><a href="{_e(status_path(uri, channel=channel))}#ch-{_e(channel)}">Xem các đích</a></p></section>'
    targets = sorted(entry.get("targets") or [], key=_target_key)
    if not targets:
        return head + f'<p class="muted">Không có đích nào{" ở trạng thái này" if state else ""}.</p></section>'
    timeline = channel in ("loudspeaker", "emergency")
    if len(targets) <= GROUP_OVER:
        return head + _target_table(targets, timeline) + "</section>"
    return head + _province_groups(targets, timeline, open_all=len(targets) <= 200 and state is not None) + "</section>"


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
    out = [f'<p class="muted">{len(targets)} đích ở {len(groups)} tỉnh/thành, gộp theo tỉnh; '
           "tỉnh có lỗi được xếp trước.</p>"]
    for province in order:
        rows = groups[province]
        counts: dict[str, int] = {}
        for r in rows:
            counts[str(r.get("state"))] = counts.get(str(r.get("state")), 0) + 1
        name = names.get(province, f"Tỉnh {province}") if province is not None else "Khác (không thuộc tỉnh nào)"
        bad = trouble(rows)
        opened = open_all or (bad > 0 and troubled <= OPEN_TROUBLED_GROUPS)
        out.append(f'<details class="group{" troubled" if bad else ""}" data-province="{_e(province or "")}"'
                   f'{" open" if opened else ""}><summary><strong>{_e(name)}</strong>'
                   f'<span class="muted">{len(rows)} đích</span>{_badges(counts)}</summary>'
                   f"{_target_table(rows, timeline)}</details>")
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
            + (f'<br><span class="muted">đang hiện v{_e(live)}</span>' if live and live != t.get("version") else "")
            + f'</td><td class="opt">{_time(t.get("updated_at"))}</td><td>{_time(t.get("delivered_at"))}</td>'
            f'<td class="ext opt">{_e(t.get("external_id") or "")}</td><td class="reason">{_e(t.get("reason") or "")}</td></tr>')
    return ('<div class="scroll"><table><thead><tr><th>Đích</th><th>Trạng thái</th><th class="opt">Phiên bản</th>'
            '<th class="opt">Cập nhật</th><th>Giao lúc</th><th class="opt">Mã bên ngoài</th><th>Lý do</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _events(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return ""
    rows = []
    for ev in reversed(events):  # newest first
        counts = ", ".join(f"{CHANNEL_VI.get(str(k), k)}: {v}" for k, v in (ev.get("counts") or {}).items())
        outcome = str(ev.get("outcome"))
        rows.append(f'<tr data-outcome="{_e(outcome)}"><td>{_time(ev.get("at"))}</td>'
                    f'<td>{_e(EVENT_VI.get(outcome, outcome))}</td><td>{_e(ev.get("version") or "")}</td>'
                    f'<td>{_e(counts)}</td><td class="reason">{_e(ev.get("reason") or "")}</td></tr>')
    return ('<section class="card"><h2>Diễn biến</h2><div class="scroll"><table><thead><tr><th>Lúc</th><th>Sự kiện</th>'
            f'<th>Bản</th><th>Số đích</th><th>Lý do</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>')


def render_index(articles: Sequence[Mapping[str, Any]], meta: Mapping[str, Any],
                 refresh: int | None = STATUS_REFRESH_S) -> str:
    """The recent articles (``StatusFold.recent``), newest first, each linking to its page."""
    rows = []
    for a in articles:
        uri = str(a.get("uri"))
        channels = []
        for ch, entry in (a.get("channels") or {}).items():
            states: Mapping[str, int] = entry.get("states") or {}
            total = sum(states.values())
            worst = min(states, key=lambda s: STATE_ORDER.get(s, 99)) if states else "pending"
            channels.append(f'<span class="badge s-{_e(worst)}" data-channel="{_e(ch)}" data-state="{_e(worst)}">'
                            f'{_e(CHANNEL_VI.get(str(ch), ch))} {_e(entry.get("settled", 0))}/{_e(total)}</span>')
        state = str(a.get("state") or "")
        rows.append(f'<tr data-uri="{_e(uri)}"><td><a href="{_e(status_path(uri))}">{_e(a.get("title") or uri)}</a>'
                    f'<br><span class="uri">{_e(uri)}</span></td><td>{_e(EVENT_VI.get(state, state))}</td>'
                    f'<td class="opt">{_e(a.get("version") or "")}</td><td>{_time(a.get("updated_at"))}</td>'
                    f'<td><div class="badges">{"".join(channels)}</div></td></tr>')
    table = ('<div class="scroll"><table><thead><tr><th>Bài</th><th>Trạng thái</th><th class="opt">Bản</th>'
             f'<th>Cập nhật</th><th>Kênh (xong/tổng)</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
             if rows else "<p>Chưa có bài nào.</p>")
    body = f'<h1>Bài viết gần đây</h1>{_view_banner(meta)}<section class="card">{table}</section>'
    return _page("Bài viết gần đây", body, refresh=refresh)


def render_message(title: str, message: str, *, refresh: int | None = None, detail: str | None = None) -> str:
    extra = f'<p class="error">{_e(detail)}</p>' if detail else ""
    return _page(title, f'<h1>{_e(title)}</h1><section class="card"><p>{_e(message)}</p>{extra}</section>',
                 refresh=refresh)


# -- the timeline ------------------------------------------------------------------------------


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
    head = [f'<h1 data-zone="{_e(zd.zone)}">{_e(title)}</h1>',
            f'<p>{_e(WEEKDAY_VI[zd.day.weekday()])}, ngày {zd.day:%d/%m/%Y} · mã vùng {_e(zd.zone)}'
            + (f" ({_e(zd.target_id)})" if zd.target_id and zd.target_id != zd.zone else "")
            + f' · giờ {_e(zd.timezone)}</p>',
            '<nav class="filters">'
            f'<a href="{_e(timeline_path(zd.target_id or zd.zone, zd.day - timedelta(days=1)))}">‹ Hôm trước</a>'
            f'<a href="{_e(timeline_path(zd.target_id or zd.zone))}">Hôm nay</a>'
            f'<a href="{_e(timeline_path(zd.target_id or zd.zone, zd.day + timedelta(days=1)))}">Hôm sau ›</a>'
            f'<form class="day" method="get"><input type="date" name="date" value="{zd.day.isoformat()}" '
            'aria-label="Chọn ngày"><button type="submit">Xem</button></form></nav>',
            f'<p class="muted">Cập nhật lúc {_time(now, tz)}</p>']
    emergencies = sorted(zd.emergencies, key=lambda e: str(e.get("created_at") or ""))
    if emergencies:
        boxes = "".join(_emergency_box(e, tz) for e in emergencies)
        head.append(f'<section class="card alerts"><h2>Tin khẩn cấp tại vùng này</h2>{boxes}</section>')
    schedule = zd.schedule
    items: list[tuple[datetime, int, str]] = []
    windows: list[Mapping[str, Any]]
    if schedule is None:
        head.append('<section class="card"><p data-schedule="none">Nền tảng loa chưa có lịch cho ngày này '
                    "(chưa có bản tin nào được xếp).</p></section>")
        windows = [{"index": i, "start": s.isoformat(), "end": e.isoformat()} for i, (s, e) in enumerate(zd.windows)]
    else:
        windows = list(schedule.get("windows") or [])
    for number, w in enumerate(windows, 1):
        start, end = _moment(w.get("start")), _moment(w.get("end"))
        if start is None or end is None:
            continue
        used = (f' · đã dùng {_minutes(w.get("used_s"))}/{_minutes(w.get("capacity_s"))} phút'
                if "used_s" in w else "")
        items.append((start, 0, f'<li class="window" data-window="{_e(w.get("index"))}"><span class="when">'
                                f'{_time(start, tz, seconds=False, with_date=False)}</span>Bắt đầu khung phát '
                                f'{number} (đến {_time(end, tz, seconds=False, with_date=False)}){used}</li>'))
        items.append((end, 4, f'<li class="window-end"><span class="when">{_time(end, tz, seconds=False, with_date=False)}'
                              f'</span>Hết khung phát {number}</li>'))
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
        items.append((now, 3, f'<li class="now" data-now="1"><span class="when">{_time(now, tz, seconds=False, with_date=False)}'
                              "</span>Bây giờ</li>"))
    items.sort(key=lambda i: (i[0], i[1]))
    if items:
        body = f'<section class="card"><h2>Dòng thời gian</h2><ol class="timeline">{"".join(i[2] for i in items)}</ol>'
    else:
        body = '<section class="card"><p>Không có khung phát nào trong ngày này.</p>'
    if schedule is not None:
        totals = schedule.get("totals") or {}
        body += (f'<p class="muted">{_e(totals.get("slots", 0))} lượt phát, tổng {_minutes(totals.get("seconds", 0))} phút'
                 f', {_e(totals.get("corrections", 0))} đính chính.</p>')
    body += "</section>" + _unplaced((schedule or {}).get("unplaced") or [])
    if zd.platform:
        p = zd.platform
        body += (f'<p class="muted">Lịch trên nền tảng: phiên bản {_e(p.get("version"))}, '
                 f'cập nhật {_time(p.get("updated_at"), tz)}, etag {_e(p.get("etag"))}</p>')
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


def _slot_item(s: Mapping[str, Any], start: datetime, end: datetime, now: datetime, tz: ZoneInfo,
               clash: bool = False) -> str:
    priority = str(s.get("priority") or "normal")
    correction = bool(s.get("correction"))
    classes = (["slot", f"p-{priority}-slot"] + (["correction"] if correction else []) + (["past"] if end <= now else [])
               + (["clash"] if clash else []))
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
    return (f'<li class="{" ".join(classes)}" data-bulletin="{_e(s.get("bulletin_id"))}" data-priority="{_e(priority)}"'
            f'{marker}><span class="when">{_time(start, tz, with_date=False)}'
            f'–{_time(end, tz, with_date=False)}</span>{_e(title)} <div class="badges">{badges}'
            f'<span class="muted">v{_e(s.get("version"))} · {_e(_seconds(s.get("duration_s")))} giây</span></div>{link}</li>')


def _emergency_words(e: Mapping[str, Any], tz: ZoneInfo) -> tuple[str, str, bool]:
    status = str(e.get("status") or "")
    title = str(e.get("title") or (str(e.get("text") or "")[:160]) or e.get("emergency_id") or "")
    ended = status != "active"
    until = e.get("stopped_at") or e.get("expires_at")
    try:
        every = f"lặp lại mỗi {float(e.get('repeat_interval_s') or 0) / 60:g} phút"
    except (TypeError, ValueError):
        every = ""
    detail = (f"{EMERGENCY_STATUS_VI.get(status, status)} · phát lúc {_time(e.get('created_at'), tz)}, {every}"
              f" {'đến' if not ended else 'dừng lúc'} {_time(until, tz)} · đã phát {_e(e.get('plays_started', '?'))} lần"
              f" · {_e(e.get('zone_count', '?'))} vùng")
    return title, detail, ended


def _emergency_box(e: Mapping[str, Any], tz: ZoneInfo) -> str:
    title, detail, ended = _emergency_words(e, tz)
    return (f'<div class="emergency{" ended" if ended else ""}" data-emergency-id="{_e(e.get("emergency_id"))}" '
            f'data-status="{_e(e.get("status"))}"><span class="badge b-emergency">KHẨN CẤP</span> '
            f"<strong>{_e(title)}</strong><br>{detail}<br>"
            f'<span class="uri">{_e(e.get("emergency_id"))}</span></div>')


def _emergency_item(e: Mapping[str, Any], created: datetime, tz: ZoneInfo, day_start: datetime) -> str:
    title, detail, ended = _emergency_words(e, tz)
    since = "" if created >= day_start else '<span class="muted">(từ hôm trước)</span> '
    return (f'<li class="emergency{" ended" if ended else ""}" data-emergency-id="{_e(e.get("emergency_id"))}" '
            f'data-status="{_e(e.get("status"))}"><span class="when">{_time(max(created, day_start), tz, with_date=False)}'
            f'</span><span class="badge b-emergency">KHẨN CẤP</span> {since}<strong>{_e(title)}</strong>'
            f"<br>{detail}</li>")


def _unplaced(unplaced: Sequence[Mapping[str, Any]]) -> str:
    if not unplaced:
        return ""
    rows = "".join(
        f'<tr data-reason="{_e(u.get("reason"))}"><td><a href="{_e(status_path(str(u.get("uri") or "")))}">'
        f'{_e(u.get("uri"))}</a> <span class="muted">v{_e(u.get("version"))}</span></td>'
        f'<td>{_e(REASON_VI.get(str(u.get("reason")), u.get("reason")))}</td><td class="reason">{_e(u.get("detail") or "")}</td></tr>'
        for u in unplaced)
    return ('<section class="card"><h2>Chưa xếp được vào ngày này</h2><div class="scroll"><table><thead><tr>'
            f"<th>Bài</th><th>Vì sao</th><th>Chi tiết</th></tr></thead><tbody>{rows}</tbody></table></div></section>")


# -- HTTP ---------------------------------------------------------------------------------------


def html_response(body: str, status: int = 200) -> web.Response:
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)
    resp.enable_compression()  # a national article lists 3,321 zones; tables shrink ~10x
    return resp


def prefers_html(request: web.Request) -> bool:
    """A browser asking for a page: ``?format=html``, or ``text/html`` named in Accept with a
    quality above JSON's. API clients (no Accept, ``*/*``, JSON) keep getting JSON."""
    fmt = request.query.get("format")
    if fmt in ("html", "json"):
        return fmt == "html"
    quality: dict[str, float] = {}
    for part in request.headers.get("Accept", "").split(","):
        kind, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[kind.strip().lower()] = q
    html_q = quality.get("text/html", 0.0)
    json_q = quality.get("application/json", quality.get("application/*", quality.get("*/*", 0.0)))
    return html_q > 0 and html_q > json_q


class StatusPages:
    """The aiohttp handlers of the pages over a status view and (optionally) a timeline fetcher."""

    def __init__(self, view: StatusView, timeline: TimelineFetcher | None = None) -> None:
        self.view, self.timeline = view, timeline

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/status", self.index)
        router.add_get("/status/{uri:.+}", self.article)
        router.add_get("/timeline/{zone}", self.zone_day)

    async def index(self, request: web.Request) -> web.Response:
        try:
            limit = max(1, min(500, int(request.query.get("limit", "50"))))
        except ValueError:
            return html_response(render_message("Yêu cầu không hợp lệ", "limit phải là số nguyên."), 400)
        with self.view.lock:
            recent = self.view.fold.recent(limit)
        resp = html_response(await asyncio.to_thread(render_index, recent, self.view.meta()))
        resp.headers["Vary"] = "Accept"  # /articles answers JSON or this page
        return resp

    async def article(self, request: web.Request) -> web.Response:
        uri = unquote(request.match_info["uri"])
        channel = request.query.get("channel") or None
        state = request.query.get("state") or None
        if state is not None and state not in STATES:
            return html_response(render_message("Yêu cầu không hợp lệ", f"state phải là một trong: {', '.join(STATES)}"),
                                 400)
        with self.view.lock:
            found = self.view.fold.article(uri, state=state)
        if found is None:
            # Refreshing: an editor may open the page right after publishing, before routing.
            why = ("Chưa có thông tin nào về bài này." if self.view.caught_up else
                   "Chưa có thông tin về bài này: máy chủ vẫn đang đọc lại dữ liệu, xin chờ.")
            return html_response(render_message("Không tìm thấy bài", why, refresh=STATUS_REFRESH_S, detail=uri), 404)
        # A national article renders 3,321 rows (~0.15 s): off the loop that also follows Kafka.
        page = await asyncio.to_thread(render_article, found, self.view.meta(), channel=channel, state=state)
        return html_response(page)

    async def zone_day(self, request: web.Request) -> web.Response:
        zone = unquote(request.match_info["zone"])
        raw = request.query.get("date")
        try:
            day = date.fromisoformat(raw) if raw else None
        except ValueError:
            return html_response(render_message("Yêu cầu không hợp lệ", "Ngày phải có dạng YYYY-MM-DD.", detail=raw), 400)
        if self.timeline is None:
            return html_response(render_message("Chưa cấu hình", "Máy chủ này không đọc được nền tảng loa."), 503)
        try:
            found = await self.timeline(zone, day)
        except UnknownZone as exc:
            return html_response(render_message("Không có vùng loa này", str(exc), detail=zone), 404)
        except TimelineUnavailable as exc:
            log.warning("timeline of %s: %s", zone, exc)
            return html_response(render_message("Không lấy được lịch phát", "Nền tảng loa không trả lời được lúc này.",
                                                refresh=TIMELINE_REFRESH_S, detail=str(exc)), 502)
        now = datetime.fromtimestamp(self.view.clock(), timezone.utc)
        return html_response(render_timeline(found, now))


# -- the real fetcher ---------------------------------------------------------------------------


class PlatformTimeline:
    """A ``TimelineFetcher`` reading the loudspeaker platform (``settings.loudspeaker_api_url``,
    token from ``settings.loudspeaker_token_file``), like ``lantoa schedule`` does.

    The zone (a target id, a ward code or a test zone's id) is resolved against the targets
    registry as configured (``LANTOA_TARGETS_FILE``; re-read when the file changes), which also
    gives its windows and time zone. The platform's emergency list carries no zones, so each
    emergency that overlaps the day is read on its own (at most ``max_emergencies``, the most
    recent first). Raises ``UnknownZone`` or ``TimelineUnavailable``.
    """

    def __init__(self, settings: Settings, *, max_emergencies: int = 50, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.max_emergencies, self.clock = settings, max_emergencies, clock
        self._registry: tuple[float, Registry] | None = None

    def _load_registry(self) -> Registry:
        from producers.targets import load_config, targets_file  # lazily: the worker needs it only here
        from streams.registry import build_targets

        path = targets_file(self.settings)
        mtime = path.stat().st_mtime
        if self._registry is None or self._registry[0] != mtime:
            self._registry = (mtime, Registry.of(build_targets(load_config(path))))
        return self._registry[1]

    async def __call__(self, zone: str, day: date | None) -> ZoneDay:
        from consumers.errors import OutcomeUnknown, PermanentDeliveryError, TargetPaused, TransientDeliveryError
        from consumers.fanpage import SecretFile
        from consumers.loudspeaker.adapter import PlatformClient, day_from_json, platform_zone
        from consumers.loudspeaker.outputs import to_json
        from consumers.loudspeaker.windows import ZoneWindows
        from schemas.topics import Channel

        try:
            registry = await asyncio.to_thread(self._load_registry)
        except (OSError, ValueError) as exc:
            raise TimelineUnavailable(f"targets registry: {exc}") from exc
        target = None
        for candidate in (zone, f"zone:{zone}"):
            found = registry.targets.get(candidate)
            if found is not None and found.channel is Channel.LOUDSPEAKER:
                target = found
                break
        if target is None and zone.isascii() and zone.isdigit():
            target = registry.zone_of_ward(int(zone))
        if target is None:
            raise UnknownZone(f"không có vùng loa {zone!r} trong danh sách đích (thử zone:<mã xã/phường>)")
        code = platform_zone(target.id, target)
        windows = ZoneWindows.from_config(code, target.config)
        tz = windows.tz
        wanted = day or datetime.fromtimestamp(self.clock(), tz).date()
        if self.settings.loudspeaker_token_file is None:
            raise TimelineUnavailable("LANTOA_LOUDSPEAKER_TOKEN_FILE chưa được đặt: không có token của nền tảng loa")
        token = SecretFile(self.settings.loudspeaker_token_file)
        client = PlatformClient(self.settings.loudspeaker_api_url, lambda: token.get("token"),
                                timeout_s=self.settings.http_timeout_s)
        await client.start()
        try:
            found_schedule = await client.get_schedule(code, wanted)
            emergencies = await self._emergencies(client, code, wanted, tz)
        except (PermanentDeliveryError, TransientDeliveryError, TargetPaused, OutcomeUnknown) as exc:
            raise TimelineUnavailable(str(exc)) from exc
        finally:
            await client.close()
        schedule: dict[str, Any] | None = None
        platform: dict[str, Any] | None = None
        if found_schedule is not None:
            try:
                schedule = to_json(day_from_json(found_schedule.body))
            except (KeyError, ValueError, TypeError) as exc:
                raise TimelineUnavailable(f"lịch trên nền tảng không đọc được: {exc!r}") from exc
            platform = {"version": found_schedule.version, "etag": found_schedule.etag,
                        "updated_at": found_schedule.updated_at}
        province = _provinces().get(target.province_code) if target.province_code is not None else None
        return ZoneDay(code, wanted, windows.timezone, target.name, province, target.id,
                       tuple(windows.windows_on(wanted)), schedule, platform, tuple(emergencies))

    async def _emergencies(self, client: PlatformClient, code: str, day: date, tz: ZoneInfo) -> list[dict[str, Any]]:
        start = datetime.combine(day, datetime.min.time(), tzinfo=tz)
        end = start + timedelta(days=1)
        # PlatformClient has no emergency reads (the adapters only write them): its authenticated
        # request and error mapping serve here. The list carries no zones, hence one GET each.
        listed = await client._call("GET", "/emergencies")
        client.raise_for(listed)
        records = listed.body.get("emergencies") if isinstance(listed.body, dict) else None
        candidates = []
        for e in records or []:
            if not isinstance(e, dict):
                continue
            created = _moment(e.get("created_at"))
            until = _moment(e.get("stopped_at")) or _moment(e.get("expires_at"))
            if created is not None and created < end and (until is None or until > start):
                candidates.append(e)
        candidates.sort(key=lambda e: str(e.get("created_at")), reverse=True)
        if len(candidates) > self.max_emergencies:
            log.warning("timeline of %s on %s: %d emergencies overlap the day, reading the %d most recent",
                        code, day, len(candidates), self.max_emergencies)
        gate = asyncio.Semaphore(8)

        async def one(eid: str) -> dict[str, Any] | None:
            async with gate:
                reply = await client._call("GET", f"/emergencies/{quote(eid, safe='')}")
            if reply.status == 404:
                return None
            client.raise_for(reply)
            return dict(reply.body) if isinstance(reply.body, dict) else None

        full = await asyncio.gather(*(one(str(e.get("emergency_id"))) for e in candidates[:self.max_emergencies]))
        return [e for e in full if e is not None and code in (e.get("zones") or ())]
