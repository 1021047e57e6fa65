"""Word documents from docxtpl (Jinja-in-Word) templates.

A :class:`DocumentTemplate` is read once and checked: a Jinja syntax error anywhere in it (body,
headers, footers, footnotes, endnotes, document properties) names the part, the paragraph and the
text there. :attr:`~DocumentTemplate.fields` are the top-level names the template uses and
:attr:`~DocumentTemplate.field_paths` every nested attribute too (``mottagare.telefon``, and
``atgarder[].namn`` for the items of a loop). :meth:`~DocumentTemplate.require` names the fields a
robot's data never provides, once before any rendering; :meth:`~DocumentTemplate.render` checks each
letter's data (a missing or ``None`` value, at any depth, unless allowed) and writes it atomically
(temp file, then rename).

Values: :class:`Hyperlink` is a link whose relationship is made in the part it is rendered in (write
``{{r lank }}`` in the template, as for docxtpl's ``RichText``). Filters: Kansli's Swedish ones
(``kronor``, ``datum``, ``personnummer_maskat``) and any a robot registers (``filters=``).
"""

from __future__ import annotations

import html
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docx.opc.constants import RELATIONSHIP_TYPE
from docx.opc.oxml import parse_xml
from docxtpl import DocxTemplate, RichText
from jinja2 import Environment, Template, TemplateSyntaxError, UndefinedError, meta, nodes

from shared.errors import InputError, TemplateFieldError
from shared.files import atomic_path
from shared.redaction import normalise_personnummer

MONTHS = ("januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september",
          "oktober", "november", "december")
#: The document properties docxtpl renders as templates.
PROPERTIES = ("author", "comments", "identifier", "language", "subject", "title")
_NOTES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml": "the footnotes",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.endnotes+xml": "the endnotes",
}
_RELATIONSHIP_REFERENCE = re.compile(r' r:(?:id|embed|link)="([^"]+)"')
_rendering_part: ContextVar[Any] = ContextVar("rendering_part", default=None)

if TYPE_CHECKING:
    from docxtpl import DocxTemplate


def format_kronor(amount: int | float | Decimal | None) -> str:
    """``12500`` as ``12 500 kr``, ``1234.5`` as ``1 234,50 kr`` (Swedish grouping with no-break
    spaces, a decimal comma, öre only when there are any); empty when there is no amount."""
    if not amount:
        return ""
    whole = Decimal(str(amount)) == Decimal(str(amount)).to_integral_value()
    text = f"{int(amount):,}" if whole else f"{Decimal(str(amount)):,.2f}"
    return text.replace(",", "\u00a0").replace(".", ",") + " kr"


def format_datum(value: date | str | None) -> str:
    """``2026-12-02`` (a date, datetime or ISO text) as ``2 december 2026``; empty for no date."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text[:10])
        except ValueError:
            raise InputError(f"datum: {text[:40]!r} is not a date (YYYY-MM-DD)") from None
    if not isinstance(value, date):
        raise InputError(f"datum: a {type(value).__name__} is not a date")
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def mask_personnummer(value: str | None, *, today: date | None = None) -> str:
    """A personnummer as ``YYYYMMDD-XXXX``: the birth date shown, the last four digits masked
    (the same numbers :func:`shared.redaction.redact` masks; the result passes it unchanged)."""
    if value is None or value == "":
        return ""
    text = str(value).strip()
    try:
        short = normalise_personnummer(text)  # YYMMDD-NNNC or YYMMDD+NNNC
    except ValueError:
        raise InputError("personnummer_maskat: not a valid personnummer") from None
    digits = re.sub(r"\D", "", text)
    if len(digits) == 12:
        century = digits[:2]
    else:
        current = (today or date.today()).year
        year = current - (current - int(short[:2])) % 100
        century = str((year - (100 if short[6] == "+" else 0)) // 100)
    return f"{century}{short[:6]}-XXXX"


#: The filters every template has.
SWEDISH_FILTERS: dict[str, Callable[..., Any]] = {
    "kronor": format_kronor,
    "datum": format_datum,
    "personnummer_maskat": mask_personnummer,
}


class Hyperlink:
    """A link in a letter, ``{{r lank }}`` in the template.

    Its relationship is made in the part being rendered (body, header, footer or note), so the link
    works wherever it is used; docxtpl's ``RichText(url_id=...)`` needs the id of the very document
    being rendered, which a robot does not have.
    """

    def __init__(self, text: str, url: str, **style: Any) -> None:
        self.text, self.url = text, url
        self.style = {"color": "0563C1", "underline": "single", **style}

    def __html__(self) -> str:
        part = _rendering_part.get()
        if part is None:  # rendered outside a document: the text alone
            return html.escape(self.text)
        relationship = part.relate_to(self.url, RELATIONSHIP_TYPE.HYPERLINK, is_external=True)
        return str(RichText(self.text, url_id=relationship, **self.style))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Hyperlink({self.text!r}, {self.url!r})"


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


class _CompilingOnce(Environment):
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


class _Docx(DocxTemplate):
    """docxtpl's template with its rendered parts checked, endnotes rendered, each note part once, and
    the document properties (plain text, not XML) rendered without XML escaping."""

    def __init__(self, template_file: Any, properties_environment: Environment | None = None) -> None:
        super().__init__(template_file)
        self.properties_environment = properties_environment

    def render_xml_part(self, src_xml: str, part: Any, context: Any, jinja_env: Any = None) -> str:
        token = _rendering_part.set(part)
        try:
            xml: str = super().render_xml_part(src_xml, part, context, jinja_env)
        finally:
            _rendering_part.reset(token)
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


def _template_parts(document: DocxTemplate) -> Iterator[tuple[str, str]]:
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


def _by_paragraph(source: str) -> str:
    """The source with a line per paragraph, as docxtpl renders it (Jinja's line = paragraph + 1)."""
    return re.sub(r"<w:p([ >])", r"\n<w:p\1", source)


def _syntax_error_place(part: str, source: str, error: TemplateSyntaxError) -> str:
    """Where in a part Jinja stopped: the paragraph (counted as Word does, empty ones too) or the note,
    and the text there."""
    line = error.lineno or 1
    if part.startswith("the document property"):
        return f"{part}, line {line}"
    lines = _by_paragraph(source).splitlines()
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


class _Paths:
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


_ABSENT = object()


def _child(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name, _ABSENT)
    return getattr(value, name, _ABSENT)


def _missing(value: Any, parts: list[str], path: str, generic: str, allow_none: set[str]) -> Iterator[str]:
    """The concrete paths under ``value`` that are absent or ``None`` (``generic`` names them in
    ``allow_none``, with ``[]`` for any item of a list)."""
    if value is None:
        if generic not in allow_none:
            yield path
        return
    if not parts:
        return
    part, rest = parts[0], parts[1:]
    if part == "[]":
        if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
            for index, item in enumerate(value):
                yield from _missing(item, rest, f"{path}[{index}]", f"{generic}[]", allow_none)
        return
    child = _child(value, part)
    if child is _ABSENT:
        yield f"{path}.{part}"
        return
    yield from _missing(child, rest, f"{path}.{part}", f"{generic}.{part}", allow_none)


class DocumentTemplate:
    """A docxtpl template held in memory, checked when read.

    ``filters`` adds Jinja filters (name → function) to the Swedish ones every template has.
    """

    def __init__(self, path: Path, *, filters: Mapping[str, Callable[..., Any]] | None = None) -> None:
        if not path.exists():
            raise InputError(f"{path}: template not found")
        if not path.is_file():
            raise InputError(f"{path}: is not a file")
        self.path = path
        self._content = path.read_bytes()
        self._environment = _CompilingOnce(filters)
        self._properties_environment = self._environment.overlay(autoescape=False)
        self._properties_environment._compiled = {}
        parsed = [self._parsed(name, source) for name, source in self._parts()]
        fields: set[str] = set().union(*(names for _, names in parsed))
        self.fields: frozenset[str] = frozenset(fields)
        paths = _Paths(fields)
        for tree, _ in parsed:
            paths.visit(tree, {})
        self.field_paths: frozenset[str] = frozenset(paths.found)

    def _parsed(self, name: str, source: str) -> tuple[nodes.Template, set[str]]:
        """The part's Jinja syntax tree and the names it reads, checked as compiling would (unknown
        filters included)."""
        try:
            tree = self._environment.parse(_by_paragraph(source))
            return tree, meta.find_undeclared_variables(tree)
        except TemplateSyntaxError as error:
            place = _syntax_error_place(name, source, error)
            message = " ".join(str(error.message).split())
            raise InputError(f"{self.path}: the template does not parse: {place}: {message}") from None
        except Exception as error:  # noqa: BLE001 - whatever else Jinja refuses
            message = " ".join(str(error).split())
            raise InputError(f"{self.path}: the template does not parse: {name}: {message}") from None

    def _load(self) -> DocxTemplate:
        return _Docx(io.BytesIO(self._content), self._properties_environment)

    def _parts(self) -> list[tuple[str, str]]:
        try:
            return list(_template_parts(self._load()))
        except (zipfile.BadZipFile, KeyError, ValueError):
            raise InputError(f"{self.path}: not a Word .docx template") from None
        except Exception as error:  # noqa: BLE001 - python-docx and lxml on a damaged file
            raise InputError(f"{self.path}: not a Word .docx template (a damaged file: "
                             f"{type(error).__name__})") from None

    def require(self, provided: Iterable[str]) -> None:
        """Raise :class:`TemplateFieldError` naming the fields the template uses but ``provided`` lacks."""
        missing = sorted(self.fields - set(provided))
        if missing:
            names = ", ".join(repr(name) for name in missing)
            raise TemplateFieldError(
                f"{self.path}: template uses field(s) {names} that the data does not provide"
            )

    def missing(self, context: Mapping[str, Any], allow_none: Iterable[str] = ()) -> list[str]:
        """The fields (dotted paths, at any depth) the template uses that ``context`` lacks or holds
        ``None`` for; ``allow_none`` names the paths that may be ``None`` (``atgarder[].beslut``)."""
        allowed = set(allow_none)
        found: set[str] = set()
        for path in self.field_paths:
            root, *parts = path.replace("[]", ".[]").split(".")
            value = context.get(root, _ABSENT)
            if value is _ABSENT:
                found.add(root)
                continue
            found.update(_missing(value, parts, root, root, allowed))
        return sorted(found)

    def render(
        self, context: Mapping[str, Any], destination: Path, *, allow_none: Iterable[str] = ()
    ) -> Path:
        """Render with ``context`` to ``destination`` (temp file, then rename).

        Every field the template uses must be in ``context`` and not ``None`` (unless its path is
        in ``allow_none``; it then prints as nothing): else :class:`TemplateFieldError` names them all.
        """
        missing = self.missing(context, allow_none)
        if missing:
            names = ", ".join(repr(name) for name in missing)
            raise TemplateFieldError(f"{self.path}: the data lacks field(s) {names} (missing or empty)")
        document = self._load()
        try:
            document.render(dict(context), jinja_env=self._environment, autoescape=True)
        except UndefinedError as error:
            raise TemplateFieldError(f"{self.path}: the data lacks a field: {error.message}") from None
        except InputError as error:
            raise type(error)(f"{self.path}: {error.message}") from None
        with atomic_path(destination) as temporary:
            document.save(str(temporary))
        return destination
