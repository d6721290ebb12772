"""Issue 12: values every schema accepts but that overflowed or recursed downstream are refused where
they enter (InvalidContent → dead letter with the reason), and the readers that must never die don't."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from helpers import SHARED, article_doc, ce_headers

from consumers.archive.render import article_view
from consumers.loudspeaker.emergency import EmergencyPlan
from consumers.loudspeaker.platform import aware_time
from schemas.cap import parse_cap
from schemas.codec import MAX_DEPTH, decode
from schemas.deadletter import dead_letter_headers
from schemas.errors import InvalidContent
from schemas.models import MAX_VERSION, Action, Command, IdempotencyKey, Priority
from schemas.settings import Settings
from schemas.times import checked_instant
from schemas.topics import Channel, Topic
from streams.articles.intake import parse_article_event
from streams.engagement.store import Triage
from streams.status.model import StatusFold
from streams.status.view import StatusView
from streams.status.web import StatusFollower

LATE = "9999-12-31T23:00:00-14:00"  # year 10000 in UTC
EARLY = "0001-01-01T00:00:00+14:00"  # year 0 in UTC
POISON_TIMES = [LATE, EARLY, "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"]
CAP_SAMPLE = (SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap").read_bytes()


def nested(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep, written as text (orjson.dumps stops at 254 levels)."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def event(doc: dict[str, Any], **headers: str) -> Any:
    return parse_article_event(doc["uri"].encode(), orjson.dumps(doc), ce_headers(**headers))


# -- the window of schemas/times.py: at the bound and past it -----------------------------------------


@pytest.mark.parametrize("text", ["1970-01-01T00:00:00+14:00", "2199-12-31T23:00:00-14:00"])
def test_instants_at_the_bounds_are_accepted_and_convert_to_utc(text: str) -> None:
    moment = checked_instant(datetime.fromisoformat(text))
    assert moment.astimezone(UTC) + timedelta(days=400) > moment  # the arithmetic that overflowed


@pytest.mark.parametrize("text", ["1969-12-31T23:59:59-14:00", "2200-01-01T00:00:00+14:00", LATE, EARLY])
def test_instants_past_the_bounds_are_refused(text: str) -> None:
    with pytest.raises(InvalidContent, match="outside the years 1970..2199"):
        checked_instant(datetime.fromisoformat(text), "expires")


# -- cms.articles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", POISON_TIMES)
def test_ce_time_outside_the_window_is_invalid(value: str) -> None:
    with pytest.raises(InvalidContent, match="ce_time"):
        event(article_doc("urn:lantoa:poison:ce"), ce_time=value)


@pytest.mark.parametrize("field", ["versionCreated", "firstCreated", "embargoedUntil"])
@pytest.mark.parametrize("value", [LATE, EARLY])
def test_ninjs_times_outside_the_window_are_invalid(field: str, value: str) -> None:
    with pytest.raises(InvalidContent, match=field):
        event(article_doc("urn:lantoa:poison:t", **{field: value}))


def test_ninjs_2_times_outside_the_window_are_invalid() -> None:
    doc = {
        "uri": "urn:lantoa:poison:v2",
        "version": "1",
        "type": "text",
        "pubstatus": "usable",
        "versioncreated": LATE,
        "headlines": [{"role": "main", "value": "Tin"}],
    }
    with pytest.raises(InvalidContent, match="versioncreated"):
        parse_article_event(doc["uri"].encode(), orjson.dumps(doc), ce_headers(version="2.0"))


def test_a_ninjs_2_document_nested_deep_in_its_associations_is_invalid() -> None:
    # Each association is a ninjs object, so the schema takes any depth; 200 levels passed orjson
    # and jsonschema, then the commands could not be serialised (orjson stops at 254): a crash loop.
    inner = b'{"uri":"urn:lantoa:poison:deep:x","type":"text"}'
    for _ in range(200):
        inner = b'{"uri":"urn:lantoa:poison:deep:x","type":"text","associations":{"a":' + inner + b"}}"
    doc = orjson.loads(inner)  # 401 levels: orjson reads it
    raw = inner[:-1] + b',"version":"1","pubstatus":"usable","headlines":[{"role":"main","value":"Tin"}]}'
    raw = raw.replace(b"urn:lantoa:poison:deep:x", b"urn:lantoa:poison:deep", 1)
    assert isinstance(doc, dict)
    with pytest.raises(InvalidContent, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_article_event(b"urn:lantoa:poison:deep", raw, ce_headers(version="2.0"))


# -- the one decoder: depth and numbers ------------------------------------------------------------------


def test_decode_takes_the_deepest_allowed_nesting() -> None:
    assert isinstance(decode(nested(MAX_DEPTH)), dict)
    assert isinstance(decode(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH), list)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 1100])
def test_decode_refuses_deeper_nesting_cleanly(depth: int) -> None:
    with pytest.raises(InvalidContent, match="nested deeper|depth limit"):
        decode(nested(depth))


@pytest.mark.parametrize("raw", [b'{"a": 1e309}', b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -1e400}'])
def test_numbers_json_cannot_hold_are_invalid(raw: bytes) -> None:
    with pytest.raises(InvalidContent, match="not JSON"):
        decode(raw)


def test_integers_beyond_64_bits_decode_as_numbers() -> None:
    value = decode(b'{"a": 123456789012345678901234567890}')
    assert value["a"] == pytest.approx(1.2345678901234568e29)


# -- alerts.cap ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("element", ["sent", "effective", "onset", "expires"])
@pytest.mark.parametrize("value", [LATE, EARLY, "9999-12-31T24:00:00-14:00"])
def test_cap_times_outside_the_window_are_invalid(element: str, value: str) -> None:
    text = CAP_SAMPLE.decode()
    if element == "onset":  # the sample has none: it goes between <effective> and <expires>
        text = text.replace("</effective>", "</effective><onset>2026-09-17T06:00:00+07:00</onset>", 1)
    start = text.index(f"<{element}>")
    end = text.index(f"</{element}>", start)
    raw = (text[:start] + f"<{element}>{value}" + text[end:]).encode()
    with pytest.raises(InvalidContent, match=f"<{element}>.*outside the years|not a valid date-time"):
        parse_cap(raw)


# -- channel and emergency commands --------------------------------------------------------------------


def command(**changes: Any) -> dict[str, Any]:
    raw = Command(
        IdempotencyKey("urn:lantoa:poison:c", 1, Channel.LOUDSPEAKER, "zone:4", Action.PUBLISH),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        {"text": "Bản tin", "expires_at": "2026-11-27T01:00:00Z"},
        published_at="2026-11-26T01:00:00Z",
    ).to_dict()
    for name, value in changes.items():
        if name == "expires_at":
            raw["payload"]["expires_at"] = value
        else:
            raw[name] = value
    return raw


def test_a_command_with_sane_times_decodes() -> None:
    assert Command.from_dict(command()).published_at == "2026-11-26T01:00:00Z"


@pytest.mark.parametrize("field", ["issued_at", "published_at", "expires_at"])
@pytest.mark.parametrize("value", [LATE, EARLY])
def test_command_times_outside_the_window_are_invalid(field: str, value: str) -> None:
    with pytest.raises(InvalidContent, match=field):
        Command.from_dict(command(**{field: value}))


@pytest.mark.parametrize("field", ["expires_at", "published_at"])
def test_emergency_times_outside_the_window_are_invalid(field: str) -> None:
    value = {
        "schema_version": 1,
        "emergency_id": "VN-POISON",
        "action": "start",
        "zones": ["zone:4"],
        "text": "Bão",
        "expires_at": "2026-11-27T01:00:00+07:00",
        "repeat_interval_s": 60,
        "published_at": None,
        field: LATE,
    }
    with pytest.raises(InvalidContent, match=field):
        EmergencyPlan.from_record(value)


def test_loudspeaker_times_outside_the_window_read_as_none() -> None:
    assert aware_time("2199-12-31T23:00:00-14:00") is not None
    assert aware_time(LATE) is None and aware_time(EARLY) is None


def test_the_archive_page_shows_an_absurd_version_time_as_written() -> None:
    view = article_view(dict(article_doc("urn:lantoa:poison:a"), versionCreated=LATE))
    assert view.version_created == LATE


# -- the status view of every stream worker ---------------------------------------------------------


@pytest.mark.parametrize("value", POISON_TIMES)
def test_the_status_fold_keeps_an_unconvertible_time_as_text(value: str) -> None:
    fold = StatusFold()
    fold.add_receipt(
        {"uri": "urn:lantoa:poison:s", "stage": "fanout", "outcome": "routed", "at": value, "version": 1}
    )
    assert "urn:lantoa:poison:s" in fold


def test_the_status_view_skips_any_record_it_cannot_fold_and_folds_the_rest() -> None:
    settings = Settings(topic_prefix="p.")
    view = StatusView()
    follower = StatusFollower(settings, view)
    receipts = settings.topic(Topic.RECEIPTS)
    good = {
        "uri": "urn:lantoa:poison:good",
        "stage": "fanout",
        "outcome": "routed",
        "at": "2026-11-26T01:00:00Z",
        "version": 1,
    }
    bad = [
        nested(300),
        orjson.dumps(
            dict(good, uri="urn:lantoa:poison:b1", counts=[1, 2, 3])
        ),  # a list where a mapping belongs
        orjson.dumps(dict(good, uri="urn:lantoa:poison:b2", counts={"fanpage": "x"}, stage="delivery")),
        orjson.dumps(
            dict(
                good,
                uri="urn:lantoa:poison:b3",
                stage="delivery",
                channel="fanpage",
                target="t",
                version="abc",
            )
        ),
        b'{"a": 1e309}',
        b"\xff",
        b"[]",
    ]
    records = [SimpleNamespace(value=v, offset=i) for i, v in enumerate([*bad, orjson.dumps(good)])]
    follower._apply({TopicPartition(receipts, 0): records})
    assert "urn:lantoa:poison:good" in view.fold
    assert view.skipped >= 5


# -- engagement.inbound (triage) ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["received_at", "created_at"])
@pytest.mark.parametrize("value", [LATE, EARLY])
async def test_triage_dead_letters_an_engagement_time_outside_the_window(field: str, value: str) -> None:
    triage = Triage(Settings(topic_prefix="p."), clock=lambda: 1_790_000_000.0)
    event = {
        "platform": "fanpage",
        "message_id": "c1",
        "text": "Khi nào có điện?",
        "received_at": "2026-11-26T01:00:00Z",
        "created_at": None,
        "post_id": "1_2",
        field: value,
    }
    out = triage.take(TopicPartition("p.engagement.inbound", 0), 7, b"fb:c1", orjson.dumps(event), [])
    assert [r.topic for r in out] == ["p.distribution.deadletter"]
    assert field in dict(out[0].headers)["dlq_reason"].decode()


async def test_triage_takes_an_engagement_time_at_the_bound() -> None:
    triage = Triage(Settings(topic_prefix="p."), clock=lambda: 1_790_000_000.0)
    event = {
        "platform": "fanpage",
        "message_id": "c2",
        "text": "Khi nào có điện?",
        "post_id": "1_2",
        "received_at": "2199-12-31T23:00:00-14:00",
    }
    out = triage.take(TopicPartition("p.engagement.inbound", 0), 8, b"fb:c2", orjson.dumps(event), [])
    assert [r.topic for r in out] == ["p.engagement.questions"]


# -- headers any client can forge --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forged", "attempts"), [("abc", "1"), ("-1", "1"), ("99999999999", "10000"), ("2", "3")]
)
def test_a_forged_dead_letter_count_never_raises(forged: str, attempts: str) -> None:
    """Not a number: the count restarts at 1; past the cap (schemas/headers.py MAX_ATTEMPTS): clamped."""
    headers = dead_letter_headers(
        [("dlq_attempts", forged.encode())],
        topic="t",
        partition=0,
        offset=1,
        reason="r",
        stage="decode",
        now_iso="2026-11-26T01:00:00.000Z",
    )
    assert dict(headers)["dlq_attempts"] == attempts.encode()


@pytest.mark.parametrize("version", [1, MAX_VERSION, 2.0])
def test_a_command_version_up_to_the_bound_decodes(version: float) -> None:
    raw = command(version=version)
    raw["idempotency_key"]["version"] = version
    assert Command.from_dict(raw).key.version == int(version)


@pytest.mark.parametrize("version", [MAX_VERSION + 1, 2**64, 1e300, 0])
def test_a_command_version_past_the_bound_is_invalid(version: float) -> None:
    raw = command(version=version)
    raw["idempotency_key"]["version"] = version
    with pytest.raises(InvalidContent, match="version"):
        Command.from_dict(raw)
