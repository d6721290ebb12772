"""Citizen engagement triage, the pure part: question detection, linking, the question record.

No I/O and no clock: the triage process (streams/engagement/store.py) feeds these functions the
inbound events (``engagement.inbound``), the ledger entries of the fanpage and Zalo adapters and
the time, and writes what they return to the compacted table ``engagement.questions``.

Question detection (``question_signal``): the text is normalised (Unicode NFC, case-folded,
whitespace collapsed, links removed: a ``?`` inside a URL asks nothing). A question is

- a ``?`` (or the full-width ``？``);
- a Vietnamese question word or phrase on word boundaries: bao giờ, khi nào, lúc nào, mấy giờ,
  ở đâu, chỗ nào, nơi nào, như thế nào, thế nào, ra sao, làm sao, tại sao, vì sao, có được,
  được không, có phải, phải không, đúng không, bao nhiêu, là gì, xin hỏi, cho (tôi) hỏi, ...;
- a clause ending in the yes/no particles ``không``/``chưa`` with ``có``/``đã``/``được``/... before
  them ("có tiêm ở phường không", "đã có lịch chưa"), or ending in hả, hở.

Negative forms that contain a question word are removed first: "không bao giờ"/"chưa bao giờ"
(never), "bao giờ cũng"/"lúc nào cũng" (always), "ở đâu cũng" (everywhere), "đã có được"
(obtained). Citizens often type without diacritics: a text with no Vietnamese diacritic at all is
matched against the same words stripped of them ("bao gio", "o dau", "co duoc khong"); a text
with diacritics never is, so "có đau" cannot read as "ở đâu".

Linking (``resolve``), through the delivery ledgers' live entries (consumers/delivery/ledger.py):

- fanpage: the live entry whose external id equals the comment's ``post_id`` ({page}_{post}) gives
  the article and the target; a comment on a page post Lantoa did not make is kept unlinked but
  still answerable through the page's target (found by page id in the targets registry);
- Zalo group: the live entry holding the quoted message id, when the platform says what was
  quoted ([guess] ``message.quote_msg_id``); otherwise the most recent article delivered to that
  group no later than the message and within ``horizon_s`` (default 7 days), else unlinked;
- Zalo 1:1 (``user_send_text``): no article; the answer goes back to the follower
  (target ``zalo-user:<user id>``).

Answers travel as channel commands with action ``reply`` (``reply_command``): uri
``urn:lantoa:question:<id>``, version = the answer's number, so the delivery runtime's ledger
makes a repeat harmless and its live entry for that uri tells the triage the answer is out.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.text import visible
from schemas.topics import Channel

QUESTION_URI_PREFIX = "urn:lantoa:question:"
ZALO_USER_TARGET_PREFIX = "zalo-user:"
STATES = ("open", "comment", "answered", "dismissed", "withdrawn")
DEFAULT_HORIZON_S = 7 * 86400.0
CLOCK_SLACK_S = 60.0
FANPAGE_REPLY_LIMIT = 8000  # Graph comment length limit
ZALO_TEXT_LIMIT = 2000
QUOTE_CHARS = 120

# -- question detection -------------------------------------------------------------------------

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_CLAUSES = re.compile(r"[.!;\n…]+")
_TRAILING = re.compile(r"[\s,.:;!…)\]\"'»”~\-–—]+$")

# Phrases that contain a question word but do not ask anything; removed before matching.
NEGATIVES = (
    "không bao giờ",
    "chưa bao giờ",
    "chẳng bao giờ",
    "chả bao giờ",
    "bao giờ cũng",
    "lúc nào cũng",
    "khi nào cũng",
    "ngày nào cũng",
    "hôm nào cũng",
    "ở đâu cũng",
    "đâu đâu cũng",
    "chỗ nào cũng",
    "thế nào cũng",
    "đã có được",
    "mới có được",
    "vừa có được",
    "sẽ có được",
)
QUESTION_WORDS = (
    "bao giờ",
    "khi nào",
    "lúc nào",
    "hôm nào",
    "ngày nào",
    "mấy giờ",
    "ở đâu",
    "chỗ nào",
    "nơi nào",
    "như thế nào",
    "thế nào",
    "ra sao",
    "làm sao",
    "làm thế nào",
    "tại sao",
    "vì sao",
    "sao lại",
    "có được",
    "được không",
    "có phải",
    "phải không",
    "đúng không",
    "có không",
    "hay không",
    "bao nhiêu",
    "là gì",
    "gì ạ",
    "gì vậy",
    "gì không",
    "xin hỏi",
    "cho hỏi",
    "muốn hỏi",
    "cần hỏi",
    "hỏi chút",
    "hỏi với",
)
# "cho tôi hỏi", "cho em hỏi", ...: one word between "cho" and "hỏi".
_ASK = re.compile(r"(?<!\w)cho\s+\w+\s+hỏi(?!\w)")
_ASK_PLAIN = re.compile(r"(?<!\w)cho\s+\w+\s+hoi(?!\w)")
# Yes/no questions: "... có/đã/được ... không|chưa" at the end of a clause.
_YES_NO = re.compile(
    r"(?<!\w)(có|đã|được|phải|còn|nên|cần|định|sẽ)(?!\w).*(?<!\w)(không|chưa|ko)"
    r"(?:\s+(?:ạ|à|vậy|nhỉ|hả|anh|chị|em|ad|admin))*$"
)
_YES_NO_PLAIN = re.compile(
    r"(?<!\w)(co|da|duoc|phai|con|nen|can|dinh|se)(?!\w).*(?<!\w)(khong|chua|ko)"
    r"(?:\s+(?:a|vay|nhi|ha|anh|chi|em|ad|admin))*$"
)
# "Vậy là phải đi lại hả": only particles that always ask (not "nhỉ", a tag; not "sao", a star).
_FINAL = re.compile(r"(?<!\w)(?:hả|hở)$")


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _words(phrases: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(set(phrases), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


_NEGATIVE_RE = _words(NEGATIVES)
_QUESTION_RE = _words(QUESTION_WORDS)
_NEGATIVE_PLAIN_RE = _words(_strip_marks(p) for p in NEGATIVES)
_QUESTION_PLAIN_RE = _words(_strip_marks(p) for p in QUESTION_WORDS)


def normalise(text: str) -> str:
    """NFC, case-folded, links removed, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text).casefold()
    text = _URL.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def has_diacritics(text: str) -> bool:
    """True when the text carries any Vietnamese diacritic (or other non-ASCII letter)."""
    return any(ch.isalpha() and not ch.isascii() for ch in text)


def question_signal(text: str) -> str | None:
    """What makes ``text`` a question ("?", the question word, "có … không"), or None."""
    norm = normalise(text)
    if "?" in norm or "？" in norm:
        return "?"
    marked = has_diacritics(norm)
    negatives, words = (_NEGATIVE_RE, _QUESTION_RE) if marked else (_NEGATIVE_PLAIN_RE, _QUESTION_PLAIN_RE)
    cleaned = negatives.sub(" ", norm)
    found = words.search(cleaned)
    if found:
        return found.group(0)
    ask = (_ASK if marked else _ASK_PLAIN).search(cleaned)
    if ask:
        return ask.group(0)
    yes_no = _YES_NO if marked else _YES_NO_PLAIN
    for clause in _CLAUSES.split(cleaned):
        clause = _TRAILING.sub("", clause).strip()
        if not clause:
            continue
        pair = yes_no.search(clause)
        if pair:
            return f"{pair.group(1)} … {pair.group(2)}"
        tail = _FINAL.search(clause) if marked else None
        if tail and len(clause.split()) > 1:
            return tail.group(0)
    return None


def is_question(text: str) -> bool:
    return question_signal(text) is not None


# -- identities ---------------------------------------------------------------------------------


def question_id(platform: str, comment_id: str) -> str:
    """``q-`` and 10 hex of SHA-256 over the platform and its comment/message id: short enough to
    type, stable across replays and restarts (the same comment is always the same question)."""
    return "q-" + hashlib.sha256(f"{platform}:{comment_id}".encode()).hexdigest()[:10]


def question_uri(qid: str) -> str:
    return QUESTION_URI_PREFIX + qid


def qid_of_uri(uri: str) -> str | None:
    return uri[len(QUESTION_URI_PREFIX) :] if uri.startswith(QUESTION_URI_PREFIX) else None


def inbound_key(platform: str, message_id: str) -> str:
    """The Kafka key of every event about one comment or message: ``fb:<id>`` / ``zalo:<id>``."""
    return f"{'fb' if platform == Channel.FANPAGE.value else platform}:{message_id}"


# -- the ledger, as triage sees it ----------------------------------------------------------------


@dataclass(frozen=True)
class LiveEffect:
    """An article's effect out at a fanpage or Zalo target (a ``live|<uri>|<target>`` entry)."""

    channel: Channel
    uri: str
    target: str
    version: int | None
    external_id: str | None
    retracted: bool
    at: datetime
    message_ids: tuple[str, ...] = ()
    title: str | None = None


@dataclass(frozen=True)
class AnswerOutcome:
    """What the ledger says about an answer: delivered (``answer_id``) or failed (``reason``)."""

    question_id: str
    version: int
    at: str
    answer_id: str | None = None
    text: str | None = None
    reason: str | None = None


def parse_iso(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class LiveIndex:
    """Live entries of the fanpage and Zalo ledgers, indexed for linking.

    ``apply`` takes one ledger record (key, decoded value or None for a tombstone) and returns an
    AnswerOutcome when the record is about an answer (uri ``urn:lantoa:question:…``).
    """

    by_post: dict[str, LiveEffect] = field(default_factory=dict)
    by_message: dict[str, LiveEffect] = field(default_factory=dict)
    by_target: dict[str, dict[str, LiveEffect]] = field(default_factory=dict)

    def apply(self, channel: Channel, key: str, value: Mapping[str, Any] | None) -> AnswerOutcome | None:
        if value is None:
            if key.startswith("live|"):
                uri, _, target = key[len("live|") :].rpartition("|")
                self._remove(uri, target)
            return None
        uri = str(value.get("uri") or "")
        qid = qid_of_uri(uri)
        kind = value.get("kind")
        if qid is not None:
            version = int(value.get("version") or 0)
            at = str(value.get("at") or "")
            if kind == "live" and not value.get("retracted"):
                detail = value.get("detail") or {}
                return AnswerOutcome(
                    qid, version, at, answer_id=value.get("external_id"), text=detail.get("text")
                )
            if kind == "command" and value.get("state") == "failed":
                return AnswerOutcome(qid, version, at, reason=str(value.get("reason") or "delivery failed"))
            return None
        if kind != "live":
            return None
        detail = value.get("detail") or {}
        effect = LiveEffect(
            channel=channel,
            uri=uri,
            target=str(value.get("target") or ""),
            version=value.get("version"),
            external_id=value.get("external_id"),
            retracted=bool(value.get("retracted")),
            at=parse_iso(str(value["at"])),
            message_ids=tuple(str(m) for m in detail.get("message_ids") or () if m),
            title=detail.get("title"),
        )
        self._remove(effect.uri, effect.target)
        self.by_target.setdefault(effect.target, {})[effect.uri] = effect
        if effect.external_id and channel is Channel.FANPAGE:
            self.by_post[effect.external_id] = effect
        for mid in effect.message_ids:
            self.by_message[mid] = effect
        return None

    def _remove(self, uri: str, target: str) -> None:
        old = self.by_target.get(target, {}).pop(uri, None)
        if old is None:
            return
        if old.external_id and self.by_post.get(old.external_id) is old:
            del self.by_post[old.external_id]
        for mid in old.message_ids:
            if self.by_message.get(mid) is old:
                del self.by_message[mid]

    def latest(self, targets: Iterable[str], before: datetime, horizon_s: float) -> LiveEffect | None:
        """The article most recently sent to any of ``targets``, not after ``before`` (give or take
        CLOCK_SLACK_S: the ledger's time is ours, the message's is the platform's) and not older
        than ``horizon_s`` before it."""
        since = before - timedelta(seconds=horizon_s)
        until = before + timedelta(seconds=CLOCK_SLACK_S)
        best: LiveEffect | None = None
        for target in targets:
            for effect in self.by_target.get(target, {}).values():
                if since <= effect.at <= until and (best is None or effect.at > best.at):
                    best = effect
        return best


# -- resolving an inbound event ---------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """Where an inbound comment belongs: its article (if found) and the target an answer uses."""

    target: str | None
    article: LiveEffect | None = None
    link: str | None = None  # post | quote | recent


TargetsOf = Callable[[str], list[str]]  # page id or group id → target ids from the registry


def resolve(
    event: Mapping[str, Any],
    index: LiveIndex,
    *,
    pages: TargetsOf,
    groups: TargetsOf,
    horizon_s: float = DEFAULT_HORIZON_S,
) -> Resolution:
    """Link one inbound event (engagement.v1) to an article and a target (see the module doc)."""
    platform = event["platform"]
    if platform == Channel.FANPAGE.value:
        post_id = event.get("post_id") or ""
        found = index.by_post.get(post_id)
        if found is not None:
            return Resolution(found.target, found, "post")
        page_id = event.get("page_id") or (post_id.split("_", 1)[0] if "_" in post_id else "")
        candidates = pages(page_id) if page_id else []
        return Resolution(candidates[0] if candidates else None)
    group_id = event.get("group_id")
    if not group_id:
        sender = event.get("sender_id")
        return Resolution(f"{ZALO_USER_TARGET_PREFIX}{sender}" if sender else None)
    targets = groups(group_id)
    target = targets[0] if targets else None
    quoted = event.get("quote_msg_id")
    if quoted and quoted in index.by_message:
        effect = index.by_message[quoted]
        return Resolution(effect.target, effect, "quote")
    when = parse_iso(event.get("created_at") or event["received_at"])
    recent = index.latest(targets, when, horizon_s)
    if recent is not None:
        return Resolution(recent.target, recent, "recent")
    return Resolution(target)


# -- the question record -------------------------------------------------------------------------


def new_record(event: Mapping[str, Any], resolution: Resolution, now_iso: str) -> dict[str, Any]:
    """The engagement-table record (question.v1) of a new comment or message."""
    text = visible(
        str(event.get("text") or "")
    )  # NFC, no invisible controls: it is quoted to groups and shown to editors
    signal = question_signal(text)
    article = resolution.article
    platform = event["platform"]
    group_id = event.get("group_id")
    return {
        "schema_version": 1,
        "id": question_id(platform, event["message_id"]),
        "platform": platform,
        "comment_id": event["message_id"],
        "state": "open" if signal else "comment",
        "question": signal is not None,
        "signal": signal,
        "text": text,
        "asked_at": event.get("created_at") or event["received_at"],
        "updated_at": now_iso,
        "article_uri": article.uri if article else None,
        "article_version": article.version if article else None,
        "article_title": article.title if article else None,
        "link": resolution.link,
        "target": resolution.target,
        "post_id": event.get("post_id"),
        "page_id": event.get("page_id"),
        "parent_id": event.get("parent_id"),
        "group_id": group_id,
        "user_id": event.get("sender_id") if platform == Channel.ZALO.value and not group_id else None,
        "sender_id": event.get("sender_id"),
        "sender_name": event.get("sender_name"),
        "answer_id": None,
        "answer_text": None,
        "answer_version": None,
        "answered_at": None,
        "answer_error": None,
    }


def on_inbound(
    existing: Mapping[str, Any] | None, event: Mapping[str, Any], resolution: Resolution | None, now_iso: str
) -> dict[str, Any] | None:
    """The record after ``event``, or None when nothing changes (a replay, an unknown edit)."""
    kind = event.get("kind") or "message"
    if kind == "message":
        if existing is not None:
            return None  # replayed or re-delivered: the first one stands
        assert resolution is not None, "a new message needs its resolution"
        return new_record(event, resolution, now_iso)
    if existing is None:
        return None  # an edit, deletion or dismissal of something never seen
    record = dict(existing)
    if kind == "edited":
        text = visible(
            str(event.get("text") or "")
        )  # NFC, no invisible controls: it is quoted to groups and shown to editors
        if text == record["text"]:
            return None
        record["text"] = text
        if record["state"] in ("open", "comment"):
            signal = question_signal(text)
            record.update(question=signal is not None, signal=signal, state="open" if signal else "comment")
    elif kind == "removed":
        if record["state"] not in ("open", "comment"):
            return None
        record["state"] = "withdrawn"
    elif kind == "dismissed":
        if record["state"] not in ("open", "comment"):
            return None
        record.update(
            state="dismissed",
            dismissed_reason=str(event.get("text") or "") or None,
            dismissed_by=event.get("by"),
        )
    else:
        return None
    record["updated_at"] = now_iso
    return record


def on_answer(
    existing: Mapping[str, Any] | None, outcome: AnswerOutcome, now_iso: str
) -> dict[str, Any] | None:
    """The record after the ledger reported an answer delivered or failed; None if no change."""
    if existing is None:
        return None
    current = int(existing.get("answer_version") or 0)
    record = dict(existing)
    if outcome.answer_id is not None:
        if existing["state"] == "answered" and current >= outcome.version:
            return None
        record.update(
            state="answered",
            answer_id=outcome.answer_id,
            answer_text=outcome.text,
            answer_version=outcome.version,
            answered_at=outcome.at,
            answer_error=None,
        )
    else:
        if outcome.version < current or (existing["state"] == "answered" and outcome.version <= current):
            return None
        if record.get("answer_error") == outcome.reason and current == outcome.version:
            return None
        record.update(answer_error=outcome.reason, answer_version=outcome.version)
    record["updated_at"] = now_iso
    return record


# -- answering ------------------------------------------------------------------------------------


class NotAnswerable(ValueError):
    """The record cannot be answered through Lantoa (the reason says why)."""


def next_answer_version(record: Mapping[str, Any], follow_up: bool) -> int:
    """1 for a first answer; the next number for a follow-up or after a failed answer.

    A repeated first answer (same question, version 1) is the same command to the adapter's
    ledger, so it never posts twice; a follow-up is a new reply on purpose.
    """
    current = int(record.get("answer_version") or 0)
    if record["state"] == "answered":
        if not follow_up:
            raise NotAnswerable(
                f"{record['id']} is already answered (reply {record.get('answer_id')}); "
                "use --follow-up to send another reply"
            )
        return current + 1
    if follow_up:
        raise NotAnswerable(f"{record['id']} has no answer yet: answer it without --follow-up")
    return current + 1 if record.get("answer_error") else 1


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    flat = _SPACE.sub(" ", visible(text)).strip()  # a citizen's text, quoted to the whole group
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def reply_payload(record: Mapping[str, Any], text: str) -> dict[str, Any]:
    """What the adapter sends: Graph comment reply, or a Zalo message quoting the question."""
    answer = visible(text).strip()  # NFC, and no bidi or zero-width control reaches the citizens
    if not answer:
        raise NotAnswerable("the answer is empty")
    base = {"question_id": record["id"], "answer": answer}
    if record["platform"] == Channel.FANPAGE.value:
        if len(answer) > FANPAGE_REPLY_LIMIT:
            raise NotAnswerable(
                f"answer is {len(answer)} characters; a Facebook comment takes {FANPAGE_REPLY_LIMIT}"
            )
        return {**base, "comment_id": record["comment_id"], "text": answer}
    head = "Trả lời câu hỏi «{}»:\n"
    room = ZALO_TEXT_LIMIT - len(answer) - len(head.format(""))
    if room < 20:
        raise NotAnswerable(
            f"answer is {len(answer)} characters; a Zalo message takes about "
            f"{ZALO_TEXT_LIMIT - len(head.format('')) - 20} with the quoted question"
        )
    message = head.format(quote(record["text"], min(QUOTE_CHARS, room))) + answer
    recipient = (
        {"group_id": record["group_id"]} if record.get("group_id") else {"user_id": record.get("user_id")}
    )
    if not any(recipient.values()):
        raise NotAnswerable(f"{record['id']} has neither a group nor a user to answer")
    return {**base, **recipient, "reply_to": record["comment_id"], "text": message}


def reply_command(record: Mapping[str, Any], text: str, version: int, now_iso: str) -> Command:
    """The channel command that delivers answer number ``version`` to question ``record``."""
    if record["state"] == "withdrawn":
        raise NotAnswerable(f"{record['id']} was deleted by its author")
    target = record.get("target")
    if not target:
        where = record.get("page_id") or record.get("group_id") or "its page"
        raise NotAnswerable(
            f"{record['id']}: no target in the registry for {where}; add it to the targets file"
        )
    channel = Channel(record["platform"])
    key = IdempotencyKey(question_uri(record["id"]), version, channel, target, Action.REPLY)
    return Command(key=key, priority=Priority.NORMAL, issued_at=now_iso, payload=reply_payload(record, text))
