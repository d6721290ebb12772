"""Bounds: an absurd article is refused whole at intake (each field at its bound passes, one
character past it is refused with the field and the bound in the reason); a version one channel
cannot take is refused there alone at fan-out, with a receipt per target saying why, while the
other channels get their commands."""

from __future__ import annotations

from datetime import UTC, datetime, timezone
from typing import Any

import pytest
from helpers import article_doc, ce_headers, encode_doc

from schemas.article import BODY_MAX_CHARS, HEADLINE_MAX_CHARS, SUMMARY_MAX_CHARS, URI_MAX_CHARS
from schemas.codec import encode
from schemas.errors import InvalidContent
from schemas.models import Receipt, Target
from schemas.registry import Registry
from schemas.settings import Settings
from schemas.topics import Channel
from streams.articles.bounds import (
    FACEBOOK_MESSAGE_MAX_CHARS,
    LOUDSPEAKER_PAYLOAD_MAX_BYTES,
    ZALO_TEXT_MAX_CHARS,
    fanpage_refusal,
    refusals,
    spoken_s,
    window_cache,
    zalo_refusal,
)
from streams.articles.fanout import plan
from streams.articles.intake import MAX_EVENT_ID_CHARS, ArticleEvent, parse_article_event
from streams.articles.policy import decide
from streams.status.model import fold

URI = "urn:lantoa:article:bounds"
NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
SETTINGS = Settings.from_env({"LANTOA_TOPIC_PREFIX": "b."})
SENTENCE = "Ủy ban nhân dân xã thông báo lịch tiêm chủng cho trẻ em tại trạm y tế. "


def text_of(length: int) -> str:
    return (SENTENCE * (length // len(SENTENCE) + 1))[: length - 1] + "."


def doc_with(
    uri: str = URI, headline: str = "Tin", summary: str = "Tóm tắt.", body: str = "Nội dung."
) -> dict[str, Any]:
    return article_doc(
        uri,
        headlines=[{"role": "main", "value": headline}],
        descriptions=[{"role": "summary", "contentType": "text/plain", "value": summary}],
        bodies=[{"role": "main", "contentType": "text/plain", "value": body}],
    )


def event(doc: dict[str, Any], **headers: str) -> ArticleEvent:
    return parse_article_event(str(doc["uri"]).encode(), encode_doc(doc), ce_headers(**headers))


# -- intake -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "bound"),
    [("headline", HEADLINE_MAX_CHARS), ("summary", SUMMARY_MAX_CHARS), ("body", BODY_MAX_CHARS)],
)
def test_each_field_at_its_bound_passes_and_one_past_it_is_refused(field: str, bound: int) -> None:
    ev = event(doc_with(**{field: text_of(bound)}))
    assert ev.article is not None and len(getattr(ev.article, field)) == bound
    with pytest.raises(InvalidContent) as caught:
        event(doc_with(**{field: text_of(bound + 1)}))
    assert caught.value.reason == f"{field} of {bound + 1:,} characters exceeds the {bound:,}-character limit"


def test_a_withdrawal_is_not_refused_for_its_text() -> None:
    ev = event(dict(doc_with(summary=text_of(SUMMARY_MAX_CHARS + 1)), pubStatus="withheld"))
    assert ev.retract


def test_the_bound_counts_the_text_the_channels_get_not_the_markup() -> None:
    html = "<p>" + "<b></b>" * 2000 + text_of(SUMMARY_MAX_CHARS) + "</p>"
    doc = article_doc(URI, descriptions=[{"role": "summary", "contentType": "text/html", "value": html}])
    assert event(doc).article is not None


def test_uri_and_event_id_bounds() -> None:
    at = "urn:lantoa:article:" + "x" * (URI_MAX_CHARS - 19)
    assert event(doc_with(uri=at)).uri == at
    with pytest.raises(InvalidContent, match=f"uri of {URI_MAX_CHARS + 1} characters exceeds"):
        event(doc_with(uri=at + "x"))
    retraction = encode({"uri": at + "x", "reason": "sai"})
    with pytest.raises(InvalidContent, match="uri of"):
        parse_article_event(
            (at + "x").encode(),
            retraction,
            ce_headers("article.retracted", ce_dataschema="urn:lantoa:schema:retraction:1"),
        )
    assert event(doc_with(), ce_id="i" * MAX_EVENT_ID_CHARS).ce.id == "i" * MAX_EVENT_ID_CHARS
    with pytest.raises(InvalidContent, match=f"ce_id of {MAX_EVENT_ID_CHARS + 1} characters exceeds"):
        event(doc_with(), ce_id="i" * (MAX_EVENT_ID_CHARS + 1))


# -- per channel, pure ----------------------------------------------------------------------------


def test_facebook_and_zalo_limits_at_and_past_the_bound() -> None:
    assert fanpage_refusal({"message": "x" * FACEBOOK_MESSAGE_MAX_CHARS}) is None
    assert "63,207 characters exceeds Facebook's 63,206" in str(
        fanpage_refusal({"message": "x" * (FACEBOOK_MESSAGE_MAX_CHARS + 1)})
    )
    room = ZALO_TEXT_MAX_CHARS - len("[Cập nhật] ")
    assert zalo_refusal({"text": "x" * room}) is None
    assert "exceeds the 8,000-character limit" in str(zalo_refusal({"text": "x" * (room + 1)}))


def test_the_intake_bounds_keep_fanpage_messages_under_facebooks_limit() -> None:
    # headline + blank line + summary: Facebook's limit cannot be reached by an accepted article.
    assert HEADLINE_MAX_CHARS + 2 + SUMMARY_MAX_CHARS < FACEBOOK_MESSAGE_MAX_CHARS


def zone(n: int, windows: list[str] | None = None) -> Target:
    config: dict[str, Any] = {"windows": windows} if windows is not None else {}
    return Target(f"zone:{n}", Channel.LOUDSPEAKER, f"Xã {n}", province_code=1, ward_code=n, config=config)


def test_a_bulletin_longer_than_a_zones_longest_window_is_refused_there_only() -> None:
    text = text_of(3200)  # about 4 minutes of speech
    spoken = spoken_s({"text": text}, 150)
    assert 180 < spoken < 300 and spoken % 60
    short, default = zone(1, ["05:30-05:34", "17:00-17:33"]), zone(2)
    just = zone(3, [f"05:00-05:{int(spoken // 60) + 1:02d}"])
    just_short = zone(4, [f"05:00-05:{int(spoken // 60):02d}"])
    why = refusals(
        Channel.LOUDSPEAKER,
        {"text": text},
        [short, default, just, just_short],
        speed_wpm=150,
        longest_window=window_cache(),
    )
    assert set(why) == {"zone:4"}, why
    assert why["zone:4"].startswith("bulletin of about ") and "refused, not cut" in why["zone:4"]
    # Spoken more slowly, the same text no longer fits the window it just fitted.
    slower = refusals(
        Channel.LOUDSPEAKER, {"text": text}, [just], speed_wpm=120, longest_window=window_cache()
    )
    assert set(slower) == {"zone:3"}


def test_a_loudspeaker_payload_past_its_byte_bound_is_refused_for_every_zone() -> None:
    # 2,100 control characters are 2,100 characters but 12,600 bytes of JSON in each command.
    payload = {"text": "\u0001" * 2100, "title": "Tin"}
    assert len(encode(payload)) > LOUDSPEAKER_PAYLOAD_MAX_BYTES
    why = refusals(
        Channel.LOUDSPEAKER, payload, [zone(1), zone(2)], speed_wpm=150, longest_window=window_cache()
    )
    assert set(why) == {"zone:1", "zone:2"} and "bytes exceeds the 12,288-byte limit" in why["zone:1"]
    fits = {"text": text_of(SUMMARY_MAX_CHARS + HEADLINE_MAX_CHARS + 2), "title": text_of(HEADLINE_MAX_CHARS)}
    assert len(encode(fits)) <= LOUDSPEAKER_PAYLOAD_MAX_BYTES  # a Vietnamese summary at its bound fits


def test_a_zone_with_bad_windows_is_left_to_the_adapter() -> None:
    assert window_cache()(zone(1, ["25:00-26:00"])) is None
    assert (
        refusals(
            Channel.LOUDSPEAKER,
            {"text": text_of(3000)},
            [zone(1, ["25:00-26:00"])],
            speed_wpm=150,
            longest_window=window_cache(),
        )
        == {}
    )


# -- fan-out --------------------------------------------------------------------------------------


def registry() -> Registry:
    return Registry.of(
        [
            zone(1, ["05:30-05:33"]),
            zone(2),
            zone(3),
            Target("fanpage:p", Channel.FANPAGE, "Trang"),
            Target("zalo:g", Channel.ZALO, "Nhóm"),
            Target("archive:main", Channel.ARCHIVE, "Lưu trữ"),
        ]
    )


def test_fan_out_refuses_per_channel_and_target_and_delivers_the_rest() -> None:
    summary = text_of(SUMMARY_MAX_CHARS)  # at the bound: too long for Zalo and for zone 1's 3-minute window
    ev = event(doc_with(summary=summary))
    decision = decide(None, ev, NOW)
    commands, receipt, refused = plan(decision, ev, registry(), SETTINGS, "2026-11-26T01:00:00.000Z")
    assert sorted((c.channel.value, c.target) for c in commands) == [
        ("archive", "archive:main"),
        ("fanpage", "fanpage:p"),
        ("loudspeaker", "zone:2"),
        ("loudspeaker", "zone:3"),
    ]
    assert receipt.outcome == "routed" and receipt.counts == {
        "loudspeaker": 3,
        "fanpage": 1,
        "zalo": 1,
        "archive": 1,
    }
    by_target = {r.target: r for r in refused}
    assert set(by_target) == {"zalo:g", "zone:1"}
    for r in refused:
        assert (r.stage, r.outcome, r.version, r.event_id) == ("fanout", "failed", 1, ev.ce.id)
    assert "zalo text of" in str(by_target["zalo:g"].reason)
    assert "longest window (3 min)" in str(by_target["zone:1"].reason)

    # The status view shows each refused target failed with why; the others pending their delivery.
    view = fold(
        [c.to_dict() for c in commands], [receipt.to_dict(), *(r.to_dict() for r in refused)]
    ).article(URI)
    assert view is not None
    zalo = view["channels"]["zalo"]
    assert zalo["expected"] == 1 and zalo["states"] == {"failed": 1}
    assert "zalo text of" in zalo["targets"][0]["reason"]
    assert view["channels"]["loudspeaker"]["states"] == {"failed": 1, "pending": 2}
    assert view["state"] == "routed"


def test_fan_out_of_a_short_article_refuses_nothing() -> None:
    ev = event(doc_with())
    commands, receipt, refused = plan(
        decide(None, ev, NOW), ev, registry(), SETTINGS, "2026-11-26T01:00:00.000Z"
    )
    assert refused == [] and len(commands) == 6


def test_refusal_receipts_are_valid_receipts() -> None:
    from schemas import contracts

    ev = event(doc_with(summary=text_of(SUMMARY_MAX_CHARS)))
    _, _, refused = plan(decide(None, ev, NOW), ev, registry(), SETTINGS, "2026-11-26T01:00:00.000Z")
    for r in refused:
        assert isinstance(r, Receipt)
        contracts.check("receipt", r.to_dict())
