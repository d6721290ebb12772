"""The archive's reading page, bulletin and takedown page come from Jinja2 templates with
autoescape: hostile text stays text, the pages are well-formed HTML5 for a browser's parser, the
one inline style matches the CSP hash, and a misspelt template variable is an error, not a blank."""

from __future__ import annotations

import base64
import hashlib

import jinja2
import pytest
from html_dom import dom, parse_errors

from consumers.archive import render as archive_render
from consumers.archive.render import article_view, render_bulletin, render_index, render_takedown

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & \' "'
URL = "https://bao.example.vn/tin/1?a=1&b=2"
DOC = {
    "uri": "urn:lantoa:article:t",
    "headlines": [{"value": HOSTILE, "role": "main"}],
    "descriptions": [{"value": "Tóm tắt " + HOSTILE, "role": "summary"}],
    "bodies": [{"value": "<p>Đoạn một</p><p>Đoạn hai " + HOSTILE + "</p>", "contentType": "text/html"}],
    "by": "Phóng viên " + HOSTILE,
    "versionCreated": "2026-11-26T01:00:00Z",
    "subjects": [{"name": "Thời tiết"}],
    "places": [{"name": "Thừa Thiên Huế"}],
}


def pages() -> dict[str, str]:
    view = article_view(DOC)
    takedown, ctype = render_takedown(
        "index.html",
        uri="urn:lantoa:article:t",
        version=2,
        reason=HOSTILE,
        requested_at="2026-11-26T02:00:00Z",
        at="2026-11-26T02:00:01Z",
        command_id="c1",
    )
    assert ctype == "text/html; charset=utf-8"
    return {
        "index": render_index(view, URL, "urn:lantoa:article:t", 3, "ab" * 32).decode(),
        "bulletin": render_bulletin(view, URL, 3).decode(),
        "takedown": takedown.decode(),
    }


@pytest.mark.parametrize("name", ["index", "bulletin", "takedown"])
def test_hostile_text_stays_text_in_a_well_formed_page(name: str) -> None:
    page = pages()[name]
    assert parse_errors(page) == []
    root = dom(page)
    for node in root.iter():
        assert node.tag not in ("script", "iframe", "object", "embed"), node.tag
        assert not [a for a in node.attrs if a.startswith("on")], node.attrs
    assert [n.attrs["src"] for n in root.all("img")] in ([], ["qr.png"])
    assert root.one("html").attrs["lang"] == "vi"
    # the hostile text is there, as text
    assert "alert(1)" in root.one("body").text
    csp = root.one("meta", http_equiv="Content-Security-Policy").attrs["content"]
    style = "".join(t for t in root.one("style").texts if isinstance(t, str))
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp and "script-src" not in csp


def test_reading_page_content_and_the_one_attribute_from_input() -> None:
    root = dom(pages()["index"])
    assert root.one("h1").text == " ".join(HOSTILE.split())
    assert root.one("link", rel="canonical").attrs["href"] == URL
    link = root.one("a")
    assert link.attrs["href"] == URL and link.text == URL
    assert [p.text for p in root.all("p") if p.text.startswith("Đoạn")] == [
        "Đoạn một",
        "Đoạn hai & ' \"",  # the body is HTML: reduced to its text, script and img dropped
    ]
    assert "Chủ đề: Thời tiết" in root.one("footer").text
    assert "08:00 ngày 26/11/2026" in root.one("p", **{"class": "meta"}).text


def test_templates_are_strict_about_names() -> None:
    env = archive_render._TEMPLATES
    assert env.autoescape is True
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("takedown.html").render(csp="", css="", canonical=None, title="t", reason="r")
