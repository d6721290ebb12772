"""What every status page shares: the Vietnamese words for states, channels and events, the one
stylesheet and the Content-Security-Policy that allows it by its hash, links, names of zones and
provinces, times in local time, and the template environment the pages are rendered with.

The pages are Jinja2 templates in ``streams/status/templates`` (``base.html`` the page frame,
``macros.html`` times, badges and the view banner) with autoescape on: every value from the
outside is escaped by Jinja2, in text and in attributes alike, and the only markup that is not is
the constant stylesheet, allowed by its hash. StrictUndefined: a misspelt name is an error, not an
empty string on the page; a value that is None shows as nothing.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Final
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from schemas.registry import official_zones, province_names
from schemas.times import moment

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
# The two-person rule's states (producers/approvals.py), as the index page shows them.
APPROVAL_VI = {
    "pending": "Chờ người thứ hai duyệt",
    "approved": "Đã duyệt",
    "expired": "Hết hạn chờ duyệt",
    "rejected": "Đã rút (bị thay thế hoặc hủy)",
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


def status_path(uri: str, **query: str | None) -> str:
    q = {k: v for k, v in query.items() if v}
    return f"/status/{quote(uri, safe='')}" + (f"?{urlencode(q)}" if q else "")


def timeline_path(zone: str, day: date | None = None) -> str:
    return f"/timeline/{quote(zone, safe='')}" + (f"?date={day.isoformat()}" if day else "")


# -- names and times ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def zones() -> dict[str, tuple[str, int | None]]:
    """target id → (commune/ward name, province code); loaded on first use, never at import."""
    return {z.id: (z.name, z.province_code) for z in official_zones()}


@lru_cache(maxsize=1)
def provinces() -> dict[int, str]:
    return province_names()


def target_label(target: str) -> str:
    found = zones().get(target)
    return found[0] if found else target


def local_time(
    raw: Any, tz: ZoneInfo | None = None, seconds: bool = True, with_date: bool = True
) -> tuple[str, str] | None:
    """(machine value, what the page shows in local time) of a time; None when ``raw`` is not one
    (the ``time`` macro then shows it as it came, or '—' when there is none)."""
    found = raw if isinstance(raw, datetime) else moment(raw)
    if found is None:
        return None
    local = found.astimezone(tz or DISPLAY_TZ)
    shown = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    if with_date:
        shown = f"{shown} {local:%d/%m}"
    return found.isoformat(), shown


def ordered_states(states: Mapping[str, int]) -> list[tuple[str, int]]:
    """The states that have targets, trouble first (``STATE_ORDER``)."""
    return sorted(((s, n) for s, n in states.items() if n), key=lambda p: STATE_ORDER.get(p[0], 99))


# -- pages --------------------------------------------------------------------------------------


def _blank(value: Any) -> Any:
    """What ``{{ value }}`` prints: nothing for None (an absent field), the value otherwise."""
    return "" if value is None else value


TEMPLATES: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("streams.status", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    finalize=_blank,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.globals.update(
    local_time=local_time,
    ordered_states=ordered_states,
    STATE_VI=STATE_VI,
)


def render_page(template: str, title: str, *, refresh: int | None = None, **values: Any) -> str:
    """A page from ``templates/<template>`` in the frame of ``base.html`` (CSP, stylesheet, the
    top links); ``refresh`` seconds make the page reload itself."""
    return TEMPLATES.get_template(template).render(
        title=title, refresh=int(refresh) if refresh else None, csp=CSP, css=Markup(CSS), **values
    )


def render_message(title: str, message: str, *, refresh: int | None = None, detail: str | None = None) -> str:
    return render_page("message.html", title, refresh=refresh, message=message, detail=detail)
