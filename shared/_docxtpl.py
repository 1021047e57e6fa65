"""The docxtpl and Jinja machinery behind :class:`shared.documents.DocumentTemplate`.

Imported when a template is read, not when robots are listed: docxtpl, python-docx and Jinja cost
about 60 ms of imports, which ``kansli robots`` does not need.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from docx.opc.oxml import parse_xml
from docxtpl import DocxTemplate
from jinja2 import Environment, Template, TemplateSyntaxError, nodes

from shared.documents import PROPERTIES, SWEDISH_FILTERS, rendering_part
from shared.errors import InputError

_NOTES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml": "the footnotes",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.endnotes+xml": "the endnotes",
}
_RELATIONSHIP_REFERENCE = re.compile(r' r:(?:id|embed|link)="([^"]+)"')


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


class CompilingOnce(Environment):
    """A Jinja environment that compiles each distinct template text once.

    docxtpl hands the same document XML to ``from_string`` for every document it renders; plain
    docxtpl compiles it again each time, which is about a third of a letter's rendering time.
    ``None`` (where a template allows it) prints as nothing rather than the word ``None``.
    """

    def __init__(self, filters: Mapping[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(autoescape=True, finalize=_none_as_empty)
        self.filters.update(SWEDISH_FILTERS)
        self.filters.update(filters or {})
        self._compiled: dict[str, Template] = {}

    def from_string(self, source: Any, globals: Any = None, template_class: Any = None) -> Template:
        if globals is not None or template_class is not None or not isinstance(source, str):
            return super().from_string(source, globals, template_class)
        compiled = self._compiled.get(source)
        if compiled is None:
            if len(self._compiled) >= 256:
                self._compiled.clear()
            compiled = self._compiled[source] = super().from_string(source)
        return compiled


class Docx(DocxTemplate):
    """docxtpl's template with its rendered parts checked, endnotes rendered, each note part once, and
    the document properties (plain text, not XML) rendered without XML escaping."""

    def __init__(self, template_file: Any, properties_environment: Environment | None = None) -> None:
        super().__init__(template_file)
        self.properties_environment = properties_environment

    def render_xml_part(self, src_xml: str, part: Any, context: Any, jinja_env: Any = None) -> str:
        token = rendering_part.set(part)
        try:
            xml: str = super().render_xml_part(src_xml, part, context, jinja_env)
        finally:
            rendering_part.reset(token)
        dangling = sorted(set(_RELATIONSHIP_REFERENCE.findall(xml)) - set(part.rels))
        if dangling:
            raise InputError(
                f"{part.partname} refers to relationship(s) {', '.join(dangling)} it does not have "
                "(a RichText url_id made for another document? use shared.documents.Hyperlink)")
        return xml

    def render_properties(self, context: Any, jinja_env: Any = None) -> None:
        super().render_properties(context, self.properties_environment or jinja_env)

    def render_footnotes(self, context: Any, jinja_env: Any = None) -> None:
        for part in list(self.docx.part.package.iter_parts()):
            if part.content_type in _NOTES:
                xml = self.patch_xml(part.blob.decode("utf-8"))
                part._blob = self.render_xml_part(xml, part, context, jinja_env).encode("utf-8")


def template_parts(document: DocxTemplate) -> Iterator[tuple[str, str]]:
    """``(name, jinja source)`` of every part docxtpl renders, as docxtpl hands them to Jinja."""
    docx = document.get_docx()
    yield "the body", document.patch_xml(document.get_xml())
    seen: set[str] = set()
    for relationship in docx.part.rels.values():
        kinds = {DocxTemplate.HEADER_URI: "header", DocxTemplate.FOOTER_URI: "footer"}
        kind = kinds.get(relationship.reltype)
        if kind is None or relationship.is_external or not relationship.target_part.blob:
            continue
        part = relationship.target_part
        if str(part.partname) not in seen:
            seen.add(str(part.partname))
            xml = document.xml_to_string(parse_xml(part.blob))
            yield f"the {kind} {str(part.partname).lstrip('/')}", document.patch_xml(xml)
    for part in docx.part.package.iter_parts():
        if part.content_type in _NOTES:
            yield _NOTES[part.content_type], document.patch_xml(part.blob.decode("utf-8"))
    for name in PROPERTIES:
        text = getattr(docx.core_properties, name)
        if text and ("{" in text or "%" in text):
            yield f"the document property {name!r}", text


def by_paragraph(source: str) -> str:
    """The source with a line per paragraph, as docxtpl renders it (Jinja's line = paragraph + 1)."""
    return re.sub(r"<w:p([ >])", r"\n<w:p\1", source)


def syntax_error_place(part: str, source: str, error: TemplateSyntaxError) -> str:
    """Where in a part Jinja stopped: the paragraph (counted as Word does, empty ones too) or the note,
    and the text there."""
    line = error.lineno or 1
    if part.startswith("the document property"):
        return f"{part}, line {line}"
    lines = by_paragraph(source).splitlines()
    before = "\n".join(lines[: max(line - 1, 0) + 1])
    text = html.unescape(re.sub(r"<[^>]+>", "", lines[line - 1] if 0 < line <= len(lines) else ""))
    text = " ".join(text.split())
    quoted = f" ({text[:60]!r}{'...' if len(text) > 60 else ''})" if text else ""
    notes = re.findall(r'<w:(footnote|endnote)\b[^>]*\bw:id="(-?\d+)"', before)
    if part in _NOTES.values() and notes:
        kind, number = notes[-1]
        return f"{part}, {kind} {number}{quoted}"
    paragraphs = len(re.findall(r"<w:p[ >/]", before))
    return f"{part}, paragraph {max(paragraphs, 1)}{quoted}"


class Paths:
    """The attribute paths a template reads from its data: ``mottagare.telefon``, ``atgarder[].namn``."""

    def __init__(self, roots: set[str]) -> None:
        self.roots = roots
        self.found: set[str] = set()

    def visit(self, node: nodes.Node, scope: dict[str, str]) -> None:
        if isinstance(node, nodes.For):
            self.visit(node.iter, scope)
            inner = dict(scope)
            source = self.path_of(node.iter, scope)
            if isinstance(node.target, nodes.Name) and source is not None:
                inner[node.target.name] = f"{source}[]"
            for child in [*node.body, *node.else_, *([node.test] if node.test else [])]:
                self.visit(child, inner)
            return
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            self.visit(node.node.node, scope)  # a method call: the object is read, not the method
            for child in [*node.args, *node.kwargs]:
                self.visit(child, scope)
            return
        readable = isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name)
        path = self.path_of(node, scope) if readable else None
        if path is not None:
            self.found.add(path)
            if isinstance(node, nodes.Getitem):
                self.visit(node.arg, scope)
            return
        for child in node.iter_child_nodes():
            self.visit(child, scope)

    def path_of(self, node: nodes.Node, scope: dict[str, str]) -> str | None:
        if isinstance(node, nodes.Name):
            return scope.get(node.name) or (node.name if node.name in self.roots else None)
        if isinstance(node, nodes.Getattr):
            base = self.path_of(node.node, scope)
            return f"{base}.{node.attr}" if base is not None else None
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            base = self.path_of(node.node, scope)
            if base is None:
                return None
            return f"{base}.{node.arg.value}" if isinstance(node.arg.value, str) else base
        return None
