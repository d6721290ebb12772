"""What every status page shares: the Vietnamese words for states, channels and events, the one
stylesheet and the Content-Security-Policy that allows it by its hash, the page frame, links,
names of zones and provinces, times in local time, and the state badges.

Every value from the outside goes through ``_e`` (``html.escape``).
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from streams.registry import official_zones, province_names

DISPLAY_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
STATUS_REFRESH_S = 10
TIMELINE_REFRESH_S = 30
GROUP_OVER = 25  # more targets than this in one channel: one expander per province
OPEN_TROUBLED_GROUPS = 3  # expanders opened by default when at most this many provinces have trouble
# Trouble first (what needs a person), then what is still on its way, then what is settled.
STATE_ORDER = {
    s: i
    for i, s in enumerate(("failed", "retrying", "unknown", "pending", "delivered", "retracted", "skipped"))
}
TROUBLE = frozenset({"failed", "retrying", "unknown"})

STATE_VI = {
    "pending": "Chờ gửi",
    "retrying": "Đang thử lại",
    "unknown": "Chưa rõ kết quả",
    "failed": "Thất bại",
    "delivered": "Đã giao",
    "retracted": "Đã gỡ",
    "skipped": "Bỏ qua",
}
CHANNEL_VI = {
    "fanpage": "Fanpage Facebook",
    "zalo": "Zalo",
    "loudspeaker": "Loa truyền thanh cơ sở",
    "emergency": "Loa: luồng khẩn cấp",
    "archive": "Lưu trữ S3",
}
EVENT_VI = {
    "accepted": "Đã nhận",
    "dropped_duplicate": "Bỏ qua (trùng)",
    "dropped_stale": "Bỏ qua (bản cũ)",
    "retract_unknown": "Gỡ bài chưa từng đăng",
    "dead_lettered": "Lỗi: chuyển hàng đợi lỗi",
    "held": "Tạm giữ (chờ giờ đăng)",
    "released": "Đến giờ đăng",
    "embargo_cancelled": "Hủy hẹn giờ",
    "routed": "Đã phân phối",
    "retracted": "Đã gỡ",
}
CHANNEL_ORDER = {c: i for i, c in enumerate(CHANNEL_VI)}  # the social channels first, the archive last
ACTION_VI = {"publish": "Đăng", "update": "Cập nhật", "retract": "Gỡ"}
PRIORITY_VI = {"normal": "Thường", "priority": "Ưu tiên", "emergency": "Khẩn cấp"}
REASON_VI = {
    "too_long": "Dài hơn mọi khung phát",
    "carried_over": "Chuyển sang khung sau",
    "expired": "Hết hạn trước khung kế tiếp",
    "superseded": "Đã có phiên bản mới hơn",
    "retracted": "Đã gỡ",
    "emergency": "Phát qua luồng khẩn cấp",
    "correction_not_needed": "Không cần đính chính (bản gốc chưa phát)",
}
EMERGENCY_STATUS_VI = {
    "active": "Đang hiệu lực",
    "cancelled": "Đã hủy",
    "expired": "Hết hạn",
    "replaced": "Đã được thay thế",
}
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
CSP = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP + "; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


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
        return (
            shown + '</p><p class="warn" data-caught-up="false">Máy chủ đang đọc lại dữ liệu từ Kafka: '
            "trạng thái dưới đây có thể chưa đầy đủ.</p>"
        )
    return shown + "</p>"


def render_message(title: str, message: str, *, refresh: int | None = None, detail: str | None = None) -> str:
    extra = f'<p class="error">{_e(detail)}</p>' if detail else ""
    return _page(
        title,
        f'<h1>{_e(title)}</h1><section class="card"><p>{_e(message)}</p>{extra}</section>',
        refresh=refresh,
    )
