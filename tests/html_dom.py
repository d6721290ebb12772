"""HTML parsed the way browsers parse it (html5lib, the WHATWG algorithm), wrapped for assertions.

One helper for every test that reads a page: ``dom(page)`` returns the document as ``Node`` trees
(tag, attributes, children, and text and children in document order); ``parse_errors(page)``
lists what the parser had to repair, so a test can require well-formed markup.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

import html5lib


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    texts: list[str | Node] = field(default_factory=list)  # text and child elements, in order

    def iter(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            yield from c.iter()

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Every element (this one included) with the tag and attributes (``http_equiv`` is
        ``http-equiv``)."""
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        """The text, whitespace collapsed, elements set apart by a space."""
        return " ".join("".join(self._text()).split())

    def _text(self) -> Iterator[str]:
        for part in self.texts:
            if isinstance(part, Node):
                yield " "
                yield from part._text()
                yield " "
            else:
                yield part


def _node(element: Element) -> Node:
    node = Node(str(element.tag), {str(k): str(v) for k, v in element.attrib.items()})
    if element.text:
        node.texts.append(element.text)
    for child in element:
        if isinstance(child.tag, str):  # comments and processing instructions are not elements
            converted = _node(child)
            node.children.append(converted)
            node.texts.append(converted)
        if child.tail:
            node.texts.append(child.tail)
    return node


def dom(page: str) -> Node:
    """The parsed document under a ``#document`` root."""
    html = html5lib.parse(page, treebuilder="etree", namespaceHTMLElements=False)
    root = Node("#document", {})
    top = _node(html)
    root.children.append(top)
    root.texts.append(top)
    return root


def parse_errors(page: str) -> list[str]:
    """What html5lib had to repair (empty for well-formed HTML5)."""
    parser = html5lib.HTMLParser(tree=html5lib.getTreeBuilder("etree"), namespaceHTMLElements=False)
    parser.parse(page)
    return [f"{pos}: {code} {data or ''}" for pos, code, data in parser.errors]
