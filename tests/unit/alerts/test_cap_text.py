"""CAP texts and identifiers at the door: identifiers and references NFC, shown texts without
bidi or zero-width controls, and the alert lane's payloads clean whatever the model holds."""

from __future__ import annotations

import dataclasses
import unicodedata

import pytest

from schemas.cap import parse_cap
from schemas.errors import InvalidContent
from schemas.text import INVISIBLE
from streams.alerts.lane import spoken_text

SPOOF = "\u202eBão\u202c số\u200b 5\ufeff \u2066đổ bộ\u2069\u200f"


def alert(
    identifier: str,
    *,
    references: str = "",
    msg_type: str = "Alert",
    headline: str = "H",
    area: str = "Phường Ba Đình",
) -> bytes:
    refs = f"<references>{references}</references>" if references else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        f"<identifier>{identifier}</identifier><sender>s@example.vn</sender><sent>2026-09-17T05:30:00+07:00</sent>"
        f"<status>Actual</status><msgType>{msg_type}</msgType><scope>Public</scope>{refs}"
        "<info><language>vi-VN</language><category>Met</category><event>Bão\u200b</event><urgency>Immediate</urgency>"
        "<severity>Extreme</severity><certainty>Observed</certainty>"
        f"<headline>{headline}</headline><description>Gió\u202e mạnh</description>"
        f"<instruction>Sơ tán&#x2067; ngay&#x2069;</instruction><area><areaDesc>{area}</areaDesc></area></info></alert>"
    ).encode()


def test_identifiers_and_references_are_nfc() -> None:
    nfd_id = unicodedata.normalize("NFD", "VN-Hà-Nội-01")
    a = parse_cap(alert(nfd_id))
    assert a.identifier == "VN-Hà-Nội-01"
    update = parse_cap(
        alert("VN-2", msg_type="Update", references=f"s@example.vn,{nfd_id},2026-09-17T05:30:00+07:00")
    )
    assert update.references[0].identifier == a.identifier


def test_shown_texts_have_no_invisible_controls() -> None:
    a = parse_cap(alert("VN-3", headline=SPOOF, area="Phường\u202e Ba Đình\u200b"))
    info = a.infos[0]
    assert info.headline == "Bão số 5 đổ bộ"
    assert (info.event, info.description, info.instruction) == ("Bão", "Gió mạnh", "Sơ tán ngay")
    assert info.areas[0].area_desc == "Phường Ba Đình"
    headline, text = spoken_text(info)
    assert not INVISIBLE.search(headline + text)


def test_the_alert_lane_guards_what_it_reads_out() -> None:
    info = parse_cap(alert("VN-4")).infos[0]
    forged = dataclasses.replace(
        info, headline=SPOOF, description="Mưa\u200b to\u202e", instruction="\u2066Ở nhà\u2069"
    )
    headline, text = spoken_text(forged)
    assert headline == "Bão số 5 đổ bộ"
    assert text == "Bão số 5 đổ bộ\n\nMưa to\n\nỞ nhà"


def test_an_identifier_with_an_invisible_character_is_refused_but_not_a_reference() -> None:
    with pytest.raises(InvalidContent, match="<identifier> contains the invisible character U\\+202E"):
        parse_cap(alert("VN-\u202e5"))
    cancel = parse_cap(
        alert("VN-6", msg_type="Cancel", references="s@example.vn,VN\u200b-5,2026-09-17T05:30:00+07:00")
    )
    assert (
        cancel.references[0].identifier == "VN\u200b-5"
    )  # a Cancel still names an alert accepted before the rule
