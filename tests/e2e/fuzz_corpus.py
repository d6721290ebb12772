"""The fuzz corpus of tests/e2e/test_fuzz_inputs.py: the records it sends to every input topic.

Hypothesis strategies (random JSON, mutated documents, byte mutations) drawn derandomized, so every
run builds the same corpus: mutated ninjs from the sample articles, CAP from the sample alert and the
cap-library test data, channel commands, plus 2 MB bodies, invalid UTF-8 and national articles
near and over the bounds (``national_records``); articles whose texts carry bidi, zero-width and
other invisible controls (``bidi_article_records``: they must get through, with no such control
left in any command), and the NFD-keyed retractions of those articles (``nfd_retraction_records``:
they must retract them). Each record is a ``Sent`` that the test fills in with where it went and
what became of it.
"""

from __future__ import annotations

import copy
import json
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from helpers import SHARED, ce_headers, sample_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.topics import Channel

EXAMPLES = {"article": 120, "alert": 70, "command": 45}  # per topic; hypothesis, derandomized
TWO_MB = 2 * 1024 * 1024
BAD_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")


@dataclass
class Sent:
    """One fuzz record and what became of it."""

    topic: str
    kind: str  # article | alert | command:<channel>
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]
    hopeless: bool  # can never be valid: must be dead-lettered
    ce_id: str | None = None
    command_id: str | None = None
    partition: int | None = None
    offset: int | None = None
    refused: str | None = None
    outcome: str | None = None
    reason: str | None = None
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
weird_text = st.sampled_from(
    [
        "",
        " ",
        "\u0000",
        "\u202e",
        "a" * 5000,
        "urn:lantoa:x",
        "-1",
        "1e999",
        "🙂" * 50,
        "<script>alert(1)</script>",
        "Ủy ban nhân dân",
        "\u2066x\u2069\u200f",
        "\u200b\ufeff",
        "\U000e0041\U000e007f",
        "\x1b[2J\x9b31m",
        unicodedata.normalize("NFD", "Ủy ban nhân dân"),
    ]
)
# The invisible controls of schemas/text.py INVISIBLE, one class each: bidi embeddings, overrides,
# isolates and marks, zero-width and format characters, tags, C0/C1 controls.
INVISIBLE_SAMPLES = (
    "\u202a",
    "\u202b",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u200b",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u180e",
    "\U000e0041",
    "\x1b",
    "\x9b",
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with 1-4 edits: a key deleted, a value replaced by random or weird JSON, a type changed."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = draw(st.sampled_from(["delete", "random", "weird", "retype", "wrap"]))
        if op == "delete":
            del parent[last]
        elif op == "random":
            parent[last] = draw(json_value)
        elif op == "weird":
            parent[last] = draw(weird_text)
        elif op == "retype":
            old = parent[last]
            parent[last] = (
                str(old) if not isinstance(old, str) else draw(st.sampled_from([0, 1.5, None, [], {}, True]))
            )
        else:
            parent[last] = [parent[last]]
    return doc


@st.composite
def byte_mutation(draw: st.DrawFn, raw: bytes) -> bytes:
    """Truncate, splice random bytes in, or duplicate a slice of ``raw``."""
    op = draw(st.sampled_from(["truncate", "splice", "duplicate", "flip"]))
    i = draw(st.integers(0, max(0, len(raw) - 1)))
    if op == "truncate":
        return raw[:i]
    if op == "splice":
        return raw[:i] + draw(st.binary(min_size=1, max_size=30)) + raw[i + draw(st.integers(0, 30)) :]
    if op == "duplicate":
        j = draw(st.integers(i, min(len(raw), i + 200)))
        return raw[:j] + raw[i:j] + raw[j:]
    return raw[:i] + bytes([raw[i] ^ (1 << draw(st.integers(0, 7)))]) + raw[i + 1 :] if raw else raw


def dumps(value: Any) -> bytes:
    """JSON bytes of anything hypothesis drew (big integers and lone surrogates included, escaped)."""
    return json.dumps(value, ensure_ascii=True).encode()


def with_bad_utf8(raw: bytes, seq: bytes, at: int) -> bytes:
    """``raw`` with a byte sequence that is not UTF-8 inserted inside a string value if possible."""
    quote = raw.find(b'"', min(at, max(0, len(raw) - 1)))
    pos = quote + 1 if quote >= 0 else at
    return raw[:pos] + seq + raw[pos:]


# ------------------------------------------------------------------------------------------------
# The corpus
# ------------------------------------------------------------------------------------------------


def collect(strategy: st.SearchStrategy[Any], examples: int) -> list[Any]:
    """Draw ``examples`` values deterministically (derandomized: same corpus every run)."""
    out: list[Any] = []

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(value: Any) -> None:
        out.append(value)

    draw()
    return out


ONE_WARD = [{"name": "Phường Ba Đình", "uri": "urn:lantoa:place:ward:4"}]  # one zone: no 3,321-zone backlog


def sample_docs() -> list[dict[str, Any]]:
    return [dict(orjson.loads(p.read_bytes()), places=ONE_WARD) for p in sample_paths()]


def article_records(topic: str) -> list[Sent]:
    docs = sample_docs()
    out: list[Sent] = []

    def sent(
        value: bytes,
        key: bytes | None,
        headers: dict[str, str] | list[tuple[str, bytes]],
        hopeless: bool,
        label: str,
    ) -> Sent:
        hs = [(k, v.encode()) for k, v in headers.items()] if isinstance(headers, dict) else headers
        ce = next((v.decode() for k, v in hs if k == "ce_id"), None)
        return Sent(topic, "article", value, key, hs, hopeless, ce_id=ce, label=label)

    def fresh_headers() -> dict[str, str]:
        headers: dict[str, str] = ce_headers(ce_id=str(uuid.uuid4()))
        return headers

    picks = collect(
        st.one_of(
            st.tuples(st.just("doc"), st.sampled_from(range(len(docs))).flatmap(lambda i: mutated(docs[i]))),
            st.tuples(
                st.just("doc"),
                st.tuples(
                    st.sampled_from(range(len(docs))),
                    st.sampled_from(
                        [("headlines", 0, "value"), ("descriptions", 0, "value"), ("bodies", 0, "value")]
                    ),
                    st.one_of(weird_text, st.text(min_size=1, max_size=300)),
                ).map(lambda t: _with_text(docs[t[0]], t[1], t[2])),
            ),
            st.tuples(
                st.just("headers"),
                st.sampled_from(range(len(docs))),
                st.sampled_from(["drop", "schema", "type", "bad_utf8", "time"]),
                st.sampled_from(["ce_source", "ce_type", "ce_time", "ce_dataschema", "ce_specversion"]),
            ),
            st.tuples(
                st.just("bytes"),
                st.sampled_from(range(len(docs))).flatmap(lambda i: byte_mutation(orjson.dumps(docs[i]))),
            ),
            st.tuples(st.just("random"), json_value),
            st.tuples(st.just("binary"), st.binary(max_size=300)),
            st.tuples(
                st.just("key"),
                st.sampled_from(range(len(docs))),
                st.one_of(st.none(), st.binary(max_size=40)),
            ),
        ),
        EXAMPLES["article"],
    )
    for n, pick in enumerate(picks):
        kind = pick[0]
        uri_tag = f"urn:lantoa:fuzz:{uuid.uuid4().hex[:10]}"
        if kind == "doc":
            doc = pick[1]
            if (
                isinstance(doc, dict)
                and isinstance(doc.get("uri"), str)
                and doc["uri"].startswith("urn:lantoa:")
            ):
                doc["uri"] = f"{uri_tag}:{n}"  # a fresh article, not a version of a sample
            uri = doc.get("uri") if isinstance(doc, dict) else None
            key = uri.encode("utf-8", "surrogatepass") if isinstance(uri, str) else b"no-uri"
            out.append(sent(dumps(doc), key, fresh_headers(), False, "mutated ninjs"))
        elif kind == "headers":
            doc = dict(docs[pick[1]], uri=f"{uri_tag}:{n}")
            headers = fresh_headers()
            hs = [(k, v.encode()) for k, v in headers.items()]
            name = pick[3]
            if pick[2] == "drop":
                hs = [(k, v) for k, v in hs if k != name]
            elif pick[2] == "schema":
                hs = [(k, b"http://example.org/not-ninjs.json" if k == "ce_dataschema" else v) for k, v in hs]
            elif pick[2] == "type":
                hs = [(k, b"article.exploded" if k == "ce_type" else v) for k, v in hs]
            elif pick[2] == "bad_utf8":
                hs = [(k, v + b"\xff\xfe" if k == name else v) for k, v in hs]
            else:
                hs = [(k, b"yesterday" if k == "ce_time" else v) for k, v in hs]
            out.append(sent(orjson.dumps(doc), doc["uri"].encode(), hs, False, f"headers:{pick[2]}:{name}"))
        elif kind == "bytes":
            out.append(sent(pick[1], b"urn:lantoa:fuzz:bytes", fresh_headers(), False, "byte-mutated ninjs"))
        elif kind == "random":
            value = dumps(pick[1])
            out.append(
                sent(
                    value,
                    b"urn:lantoa:fuzz:random",
                    fresh_headers(),
                    not value.startswith(b"{"),
                    "random JSON",
                )
            )
        elif kind == "binary":
            out.append(sent(pick[1], None, fresh_headers(), _never_json(pick[1]), "random bytes"))
        else:
            doc = dict(docs[pick[1]], uri=f"{uri_tag}:{n}")
            out.append(
                sent(orjson.dumps(doc), pick[2], fresh_headers(), pick[2] != doc["uri"].encode(), "wrong key")
            )
    for i, seq in enumerate(BAD_UTF8):
        doc = dict(docs[i % len(docs)], uri=f"urn:lantoa:fuzz:utf8-{uuid.uuid4().hex[:8]}")
        raw = with_bad_utf8(orjson.dumps(doc), seq, 40 + 97 * i)
        out.append(sent(raw, doc["uri"].encode(), fresh_headers(), True, f"invalid UTF-8 {seq!r}"))
    big = dict(docs[0], uri=f"urn:lantoa:fuzz:big-{uuid.uuid4().hex[:8]}")
    big["bodies"] = [
        {"role": "main", "contentType": "text/plain", "value": "Nội dung rất dài. " * (TWO_MB // 19)}
    ]
    out.append(sent(orjson.dumps(big), big["uri"].encode(), fresh_headers(), True, "2 MB body"))
    near = dict(docs[1], uri=f"urn:lantoa:fuzz:near-limit-{uuid.uuid4().hex[:8]}")
    near["bodies"] = [
        {"role": "main", "contentType": "text/plain", "value": "Tin dài gần giới hạn. " * 40000}
    ]
    out.append(
        sent(
            orjson.dumps(near),
            near["uri"].encode(),
            fresh_headers(),
            True,
            "~0.9 MB body (under the record bound, over the body bound)",
        )
    )
    for doc, key, headers, hopeless, label in national_records(docs[0]):
        out.append(sent(orjson.dumps(doc), key, headers, hopeless, label))
    return out


_SENTENCE = (
    "Ủy ban nhân dân tỉnh thông báo lịch tiêm chủng mở rộng cho trẻ em dưới năm tuổi tại các trạm y tế xã. "
)


def _text(n: int, unit: str = _SENTENCE) -> str:
    """``n`` characters that stay ``n`` once blanks are squashed (no blank at either end)."""
    return (unit * (n // len(unit) + 1))[: n - 1] + "."


def national_records(base: dict[str, Any]) -> list[tuple[dict[str, Any], bytes, dict[str, str], bool, str]]:
    """National articles (no places: all 3,321 zones, every page and group) near and over the bounds
    of schemas/article.py and streams/articles/bounds.py: ``(doc, key, headers, hopeless, label)``.

    At the bounds it is accepted (its Zalo groups refused at fan-out, with receipts); one past a
    field bound, or with a ce_id past its bound, it is dead-lettered; its summary in characters
    that JSON inflates sixfold passes intake and is refused for the zones (12 KiB per command)."""
    from schemas.article import BODY_MAX_CHARS, HEADLINE_MAX_CHARS, SUMMARY_MAX_CHARS, URI_MAX_CHARS
    from streams.articles.intake import MAX_EVENT_ID_CHARS

    def national(
        tag: str,
        headline: int = HEADLINE_MAX_CHARS,
        summary: str | None = None,
        body: int = BODY_MAX_CHARS,
        uri_len: int | None = None,
    ) -> dict[str, Any]:
        uri = f"urn:lantoa:fuzz:national-{tag}-{uuid.uuid4().hex[:8]}"
        if uri_len is not None:
            uri = (uri + "-" + "u" * uri_len)[:uri_len]
        doc = {k: v for k, v in base.items() if k != "places"}
        doc.update(
            uri=uri,
            headlines=[{"role": "main", "value": _text(headline)}],
            descriptions=[
                {
                    "role": "summary",
                    "contentType": "text/plain",
                    "value": _text(SUMMARY_MAX_CHARS) if summary is None else summary,
                }
            ],
            bodies=[{"role": "main", "contentType": "text/plain", "value": _text(body)}],
        )
        return doc

    def headers(**extra: str) -> dict[str, str]:
        out: dict[str, str] = ce_headers(ce_id=str(uuid.uuid4()))
        out.update(extra)
        return out

    cases = [
        (national("at-bounds", uri_len=URI_MAX_CHARS), headers(), False, "national article at every bound"),
        (
            national("summary-over", summary=_text(SUMMARY_MAX_CHARS + 1)),
            headers(),
            True,
            "national summary 1 past its bound",
        ),
        (
            national("headline-over", headline=HEADLINE_MAX_CHARS + 1),
            headers(),
            True,
            "national headline 1 past its bound",
        ),
        (national("body-over", body=BODY_MAX_CHARS + 1), headers(), True, "national body 1 past its bound"),
        (national("uri-over", uri_len=URI_MAX_CHARS + 1), headers(), True, "national uri 1 past its bound"),
        (national("ce-id-over"), headers(ce_id="i" * 100_000), True, "national ce_id of 100 kB"),
        (national("ce-id-at"), headers(ce_id="i" * MAX_EVENT_ID_CHARS), False, "national ce_id at its bound"),
        # Quotes and backslashes, which JSON doubles (control characters, six bytes escaped, no
        # longer reach a payload: intake drops them, schemas/text.py).
        (
            national("inflated", summary=_text(SUMMARY_MAX_CHARS, '"\\')),
            headers(),
            False,
            "national summary JSON inflates past the loudspeaker payload bound",
        ),
    ]
    return [(doc, doc["uri"].encode(), h, hopeless, label) for doc, h, hopeless, label in cases]


def bidi_article_records(topic: str) -> list[Sent]:
    """Valid articles (Vietnamese uris, so their NFD form differs) whose headline, HTML summary (as a
    character reference too) and body carry one invisible control each: accepted, and cleaned."""
    docs = sample_docs()
    out = []
    for i, ch in enumerate(INVISIBLE_SAMPLES):
        doc = copy.deepcopy(docs[i % len(docs)])
        doc["uri"] = f"urn:lantoa:fuzz:tin-hà-nội-{i}-{uuid.uuid4().hex[:8]}"
        doc["headlines"] = [{"role": "main", "value": f"{ch}Tin{ch} khẩn{ch} cấp"}]
        doc["descriptions"] = [
            {"role": "summary", "contentType": "text/html", "value": f"<p>&#x{ord(ch):X};Tóm{ch} tắt</p>"}
        ]
        doc["bodies"] = [{"role": "main", "contentType": "text/plain", "value": f"Nội{ch} dung."}]
        ce = str(uuid.uuid4())
        out.append(
            Sent(
                topic,
                "article",
                orjson.dumps(doc),
                doc["uri"].encode(),
                [(k, v.encode()) for k, v in ce_headers(ce_id=ce).items()],
                False,
                ce_id=ce,
                label=f"invisible U+{ord(ch):04X} in texts",
                extra={"uri": doc["uri"], "bidi": True},
            )
        )
    return out


def nfd_retraction_records(topic: str, published: list[Sent]) -> list[Sent]:
    """For each published article: its retraction as an outside producer might write it, key, body and
    subject in NFD (and a reason with a bidi override). It must retract the NFC article."""
    out = []
    for r in published:
        nfd = unicodedata.normalize("NFD", r.extra["uri"])
        assert nfd != r.extra["uri"]
        ce = str(uuid.uuid4())
        headers = ce_headers(
            "article.retracted", ce_id=ce, ce_dataschema="urn:lantoa:schema:retraction:1", ce_subject=nfd
        )
        out.append(
            Sent(
                topic,
                "article",
                orjson.dumps({"uri": nfd, "reason": "gỡ\u202e bài"}),
                nfd.encode(),
                [(k, v.encode()) for k, v in headers.items()],
                False,
                ce_id=ce,
                label="NFD retraction",
                extra={"uri": r.extra["uri"]},
            )
        )
    return out


def _with_text(doc: dict[str, Any], path: tuple[Any, ...], text: str) -> dict[str, Any]:
    """A valid document whose headline, summary or body is odd text: it should get through."""
    out = copy.deepcopy(doc)
    out[path[0]][path[1]][path[2]] = text
    return out


def _never_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return True
    return not raw.strip().startswith(b"{")


def cap_sources() -> list[bytes]:
    paths = sorted((SHARED / "samples" / "alerts").glob("*.cap")) + sorted(
        (SHARED / "standards" / "cap" / "testdata").glob("*.cap")
    )
    assert paths, "no CAP samples"
    return [p.read_bytes() for p in paths]


def alert_records(topic: str) -> list[Sent]:
    sources = cap_sources()
    base = sources[0]  # the Vietnamese typhoon alert: valid, routes to real zones

    @st.composite
    def text_edit(draw: st.DrawFn) -> bytes:
        text = base.decode()
        starts = [i for i in range(len(text)) if text.startswith(">", i) and not text.startswith(">\n", i)]
        i = draw(st.sampled_from(starts))
        j = text.find("<", i)
        return (text[: i + 1] + draw(st.one_of(weird_text, st.text(max_size=30))) + text[j:]).encode(
            "utf-8", "surrogatepass"
        )

    picks = collect(
        st.one_of(
            st.sampled_from(range(len(sources)))
            .flatmap(lambda i: byte_mutation(sources[i]))
            .map(lambda b: ("bytes", b)),
            text_edit().map(lambda b: ("text", b)),
            st.binary(max_size=300).map(lambda b: ("binary", b)),
            st.sampled_from(range(len(sources))).map(lambda i: ("as-is", sources[i])),
        ),
        EXAMPLES["alert"],
    )
    out = []
    for label, raw in picks:
        hopeless = label == "binary" and not raw.lstrip().startswith(b"<")
        ce = str(uuid.uuid4())
        headers = [(k, v.encode()) for k, v in ce_headers("alert.received", ce_id=ce).items()]
        out.append(
            Sent(
                topic,
                "alert",
                raw,
                f"fuzz-{uuid.uuid4().hex[:8]}".encode(),
                headers,
                hopeless,
                ce_id=ce,
                label=f"CAP {label}",
            )
        )
    for seq in BAD_UTF8:
        raw = base.replace(b"<headline>", b"<headline>" + seq, 1)
        ce = str(uuid.uuid4())
        out.append(
            Sent(
                topic,
                "alert",
                raw,
                b"fuzz-utf8",
                [("ce_id", ce.encode())],
                True,
                ce_id=ce,
                label=f"CAP invalid UTF-8 {seq!r}",
            )
        )
    padding = b"<!-- " + b"x" * TWO_MB + b" -->"
    ce = str(uuid.uuid4())
    out.append(
        Sent(
            topic,
            "alert",
            base.replace(b"<alert ", padding + b"<alert ", 1),
            b"fuzz-big",
            [("ce_id", ce.encode())],
            True,
            ce_id=ce,
            label="CAP 2 MB",
        )
    )
    return out


def valid_command(channel: Channel, target: str, uri: str) -> dict[str, Any]:
    from schemas.article import article_from_ninjs
    from streams.articles.render import render

    doc = sample_docs()[1]
    doc["uri"] = uri
    payload = render(channel, article_from_ninjs(doc, "3.1"), "https://tin.lantoa.example.vn")
    return Command(
        IdempotencyKey(uri, 1, channel, target, Action.PUBLISH),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        payload,
        published_at="2026-11-26T01:00:00Z",
    ).to_dict()


def command_records(topic: str, channel: Channel, target: str) -> list[Sent]:
    base = valid_command(channel, target, "urn:lantoa:fuzz:command-base")
    picks = collect(
        st.one_of(
            mutated(base).map(lambda d: ("mutated", dumps(d))),
            byte_mutation(orjson.dumps(base)).map(lambda b: ("bytes", b)),
            json_value.map(lambda v: ("random", dumps(v))),
            st.binary(max_size=200).map(lambda b: ("binary", b)),
        ),
        EXAMPLES["command"],
    )
    out = []
    for label, raw in picks:
        uri = f"urn:lantoa:fuzz:cmd-{uuid.uuid4().hex[:10]}"
        raw = raw.replace(b"urn:lantoa:fuzz:command-base", uri.encode())
        try:
            d = orjson.loads(raw)
            cid = Command.from_dict(d).key.command_id() if isinstance(d, dict) else None
        except Exception:
            cid = None
        out.append(
            Sent(
                topic,
                f"command:{channel.value}",
                raw,
                target.encode(),
                [],
                _never_json(raw),
                command_id=cid,
                label=f"command {label}",
            )
        )
    for i, seq in enumerate(BAD_UTF8[:3]):
        raw = with_bad_utf8(orjson.dumps(base), seq, 30 + 50 * i)
        out.append(
            Sent(
                topic,
                f"command:{channel.value}",
                raw,
                target.encode(),
                [],
                True,
                label=f"command invalid UTF-8 {seq!r}",
            )
        )
    # Forged references to a shared payload (infra/kafka/payloads.py): a hash nothing stored has, at
    # an offset far past the end, and one naming a partition the payload topic does not have.
    for label, ref in (
        ("past the end", {"partition": 0, "offset": 10**12, "sha256": "ab" * 32, "bytes": 100}),
        ("no such partition", {"partition": 4096, "offset": 0, "sha256": "cd" * 32, "bytes": 100}),
    ):
        forged = valid_command(channel, target, f"urn:lantoa:fuzz:cmd-ref-{uuid.uuid4().hex[:8]}")
        del forged["payload"]
        forged["payload_ref"] = ref
        out.append(
            Sent(
                topic,
                f"command:{channel.value}",
                orjson.dumps(forged),
                target.encode(),
                [],
                True,
                command_id=forged["command_id"],
                label=f"command payload_ref {label}",
            )
        )
    big = valid_command(channel, target, f"urn:lantoa:fuzz:cmd-big-{uuid.uuid4().hex[:8]}")
    big["payload"]["padding"] = "x" * TWO_MB
    # The archive topic takes 4 MB records by design (big documents): there a 2 MB command may be
    # delivered; elsewhere the broker refuses it or the adapter must dead-letter it.
    out.append(
        Sent(
            topic,
            f"command:{channel.value}",
            orjson.dumps(big),
            target.encode(),
            [],
            channel is not Channel.ARCHIVE,
            command_id=big["command_id"],
            label="command 2 MB",
        )
    )
    return out


# ------------------------------------------------------------------------------------------------
# Hostile files: what the doors (lantoa validate, publish --dry-run, alert --dry-run, POST /cap)
# must refuse with one line, exit 1 or a 4xx, never a traceback, an exit 2 or a 5xx
# ------------------------------------------------------------------------------------------------

ESCAPES = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202e\u2066\u200f\u200b"  # ESC, OSC, CSI (C1), bidi, zero-width


@dataclass(frozen=True)
class Hostile:
    """One hostile input: ``content`` bytes (None: a directory, or nothing at all when ``missing``)."""

    name: str  # its file name; .cap/.xml files are CAP for lantoa validate
    content: bytes | None
    label: str
    missing: bool = False
    ninjs_valid: bool = False  # valid ninjs that Lantoa refuses: lantoa validate (ninjs only) passes it

    @property
    def cap(self) -> bool:
        return self.name.endswith((".cap", ".xml"))

    def write(self, where: Any) -> Any:
        path = where / self.name
        if self.content is not None:
            path.write_bytes(self.content)
        elif not self.missing:
            path.mkdir()
        return path


def _alert_with(element: str, value: str) -> bytes:
    text = cap_sources()[0].decode()
    start = text.index(f"<{element}>")
    end = text.index(f"</{element}>", start)
    return (text[: start + len(element) + 2] + value + text[end:]).encode()


def _article_with(**fields: Any) -> bytes:
    doc = sample_docs()[0]
    doc.update(fields)
    return orjson.dumps(doc)


def hostile_files() -> list[Hostile]:
    """Every class of hostile file, for ninjs (.json) and CAP (.cap); each must be refused."""
    typhoon = cap_sources()[0]
    cap_ns = b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
    out: list[Hostile] = []
    for ext in ("json", "cap"):
        out += [
            Hostile(f"empty.{ext}", b"", "empty file"),
            Hostile(f"blank.{ext}", b" \n\t\r\n", "only whitespace"),
            Hostile(f"binary.{ext}", bytes(range(256)) * 8, "binary"),
            Hostile(f"nul.{ext}", b"\x00" * 4096, "NUL bytes"),
            Hostile(
                f"latin1.{ext}",
                b'{"uri": "Th\xf4ng b\xe1o"}'
                if ext == "json"
                else typhoon.replace("Bão".encode(), "Bão".encode("latin-1"), 1),
                "not UTF-8 (Latin-1)",
            ),
            Hostile(
                f"utf16.{ext}",
                (typhoon if ext == "cap" else _article_with()).decode().encode("utf-16-le"),
                "UTF-16 without a BOM",
            ),
            Hostile(f"dir.{ext}", None, "a directory"),
            Hostile(f"missing.{ext}", None, "a missing path", missing=True),
            Hostile(
                f"huge.{ext}",
                b"{" + b" " * (8 * 1024 * 1024) + b"}"
                if ext == "json"
                else typhoon.replace(b"<alert ", b"<!-- " + b"x" * (8 * 1024 * 1024) + b" --><alert ", 1),
                "8 MB file",
            ),
            Hostile(
                f"escapes-{ext}-\x1b[31m\u202e.{ext}",
                b"\x1b[31mnope\x1b[0m",
                "terminal escapes in the name and body",
            ),
        ]
    out += [
        Hostile("html.json", b"<html><body>tin</body></html>", "not JSON"),
        Hostile("array.json", b"[1, 2, 3]", "JSON, not an object"),
        Hostile("deep-array.json", b"[" * 5000 + b"]" * 5000, "JSON 5,000 deep (past orjson's own limit)"),
        Hostile("deep-object.json", b'{"a":' * 900 + b"1" + b"}" * 900, "JSON 900 deep"),
        Hostile(
            "deep-associations.json",
            _article_with(associations={"a": {"associations": {}}}).replace(
                b'"associations":{}', b'"associations":{"a":' * 80 + b'{"uri":"x"}' + b"}" * 80
            ),
            "ninjs 80 associations deep",
        ),
        Hostile(
            "year-1.json",
            _article_with(versionCreated="0001-01-01T00:00:00-14:00"),
            "ninjs in year 1, offset -14:00",
        ),
        Hostile(
            "year-9999.json",
            _article_with(versionCreated="9999-12-31T23:59:59+14:00"),
            "ninjs in year 9999, +14:00",
        ),
        Hostile(
            "year-1969.json", _article_with(embargoed="1969-12-31T23:59:59Z"), "ninjs embargo before 1970"
        ),
        Hostile(
            "year-2200.json", _article_with(firstCreated="2200-01-01T00:00:00+07:00"), "ninjs created in 2200"
        ),
        Hostile(
            "escape-values.json",
            _article_with(pubStatus=ESCAPES, version=ESCAPES),
            "escapes in refused values",
        ),
        Hostile(
            "huge-number.json", _article_with(version="9" * 5000), "a 5,000-digit version", ninjs_valid=True
        ),
        Hostile("not-xml.cap", b'{"alert": "json"}', "not XML"),
        Hostile(
            "bomb.cap",
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
            b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
            + cap_ns
            + b"<identifier>&lol3;</identifier></alert>",
            "XML bomb (billion laughs)",
        ),
        Hostile(
            "quadratic.cap",
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "'
            + b"x" * 50000
            + b'">]>'
            + cap_ns
            + b"<identifier>"
            + b"&x;" * 10000
            + b"</identifier></alert>",
            "XML quadratic blow-up",
        ),
        Hostile(
            "external.cap",
            b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            + cap_ns
            + b"<identifier>&xxe;</identifier></alert>",
            "external entity (XXE)",
        ),
        Hostile(
            "dtd.cap",
            b'<?xml version="1.0"?><!DOCTYPE alert SYSTEM "http://127.0.0.1:9/cap.dtd">'
            + typhoon.split(b"?>", 1)[1],
            "external DTD",
        ),
        Hostile(
            "xee.cap",
            (SHARED / "standards" / "cap" / "testdata" / "xee.cap").read_bytes(),
            "cap-library's XXE test",
        ),
        Hostile(
            "deep.cap",
            cap_ns + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</alert>",
            "XML 100,000 elements deep",
        ),
        Hostile(
            "year-1.cap",
            _alert_with("expires", "0001-01-01T00:00:00-14:00"),
            "CAP expiring in year 1, -14:00",
        ),
        Hostile(
            "year-9999.cap", _alert_with("sent", "9999-12-31T23:59:59+14:00"), "CAP sent in year 9999, +14:00"
        ),
        Hostile("year-0.cap", _alert_with("effective", "0000-01-01T00:00:00+00:00"), "CAP in year 0"),
        Hostile("offset-15.cap", _alert_with("expires", "2026-09-18T05:30:00+15:00"), "CAP offset +15:00"),
        Hostile(
            "escape-values.cap",
            _alert_with("status", ESCAPES.replace("\x1b", "").replace("\x07", "")),
            "C1, bidi and zero-width in a refused value",
        ),
        Hostile(
            "cap10.cap",
            typhoon.replace(b"urn:oasis:names:tc:emergency:cap:1.2", b"http://www.incident.com/cap/1.0"),
            "CAP 1.0",
        ),
        Hostile("truncated.cap", typhoon[: len(typhoon) // 2], "truncated XML"),
    ]
    return out


def chunk_sizes(seed: int) -> list[int]:
    """Chunk sizes for a chunked CAP upload: tiny, odd and large ones mixed (derandomized)."""
    sizes = collect(
        st.lists(st.sampled_from([1, 7, 100, 1460, 4096, 16_384, 16_385, 65_536]), min_size=8, max_size=8),
        seed % 5 + 1,
    )
    return sizes[-1]


def hostile_records(article_topic: str, alert_topic: str) -> list[Sent]:
    """The hostile files as records on cms.articles (ninjs) and alerts.cap (CAP): the stream worker
    must dead-letter every one, as the CLI refuses every one. The 8 MB files stay off the topics
    (past their 4 MB max.message.bytes: the broker refuses them, and the 2 MB classes cover that)."""
    out = []
    for h in hostile_files():
        if h.content is None or len(h.content) > TWO_MB:
            continue
        ce = str(uuid.uuid4())
        if h.cap:
            headers = [(k, v.encode()) for k, v in ce_headers("alert.received", ce_id=ce).items()]
            out.append(
                Sent(
                    alert_topic,
                    "alert",
                    h.content,
                    b"fuzz-hostile",
                    headers,
                    True,
                    ce_id=ce,
                    label=f"hostile CAP: {h.label}",
                )
            )
        else:
            headers = [(k, v.encode()) for k, v in ce_headers(ce_id=ce).items()]
            out.append(
                Sent(
                    article_topic,
                    "article",
                    h.content,
                    b"urn:lantoa:fuzz:hostile",
                    headers,
                    True,
                    ce_id=ce,
                    label=f"hostile ninjs: {h.label}",
                )
            )
    return out
