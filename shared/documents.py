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

from shared.errors import InputError, TemplateFieldError
from shared.files import atomic_path
from shared.redaction import normalise_personnummer

MONTHS = ("januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september",
          "oktober", "november", "december")
#: The document properties docxtpl renders as templates.
PROPERTIES = ("author", "comments", "identifier", "language", "subject", "title")
#: The part being rendered (a :class:`Hyperlink` makes its relationship there).
rendering_part: ContextVar[Any] = ContextVar("rendering_part", default=None)

if TYPE_CHECKING:  # docxtpl, python-docx and Jinja are imported when a template is read, not when listed
    from docxtpl import DocxTemplate
    from jinja2 import nodes


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
        from docx.opc.constants import RELATIONSHIP_TYPE
        from docxtpl import RichText

        part = rendering_part.get()
        if part is None:  # rendered outside a document: the text alone
            return html.escape(self.text)
        relationship = part.relate_to(self.url, RELATIONSHIP_TYPE.HYPERLINK, is_external=True)
        return str(RichText(self.text, url_id=relationship, **self.style))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Hyperlink({self.text!r}, {self.url!r})"


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
        from shared._docxtpl import CompilingOnce, Paths

        self.path = path
        self._content = path.read_bytes()
        self._environment = CompilingOnce(filters)
        self._properties_environment = self._environment.overlay(autoescape=False)
        self._properties_environment._compiled = {}
        parsed = [self._parsed(name, source) for name, source in self._parts()]
        fields: set[str] = set().union(*(names for _, names in parsed))
        self.fields: frozenset[str] = frozenset(fields)
        paths = Paths(fields)
        for tree, _ in parsed:
            paths.visit(tree, {})
        self.field_paths: frozenset[str] = frozenset(paths.found)

    def _parsed(self, name: str, source: str) -> tuple[nodes.Template, set[str]]:
        """The part's Jinja syntax tree and the names it reads, checked as compiling would (unknown
        filters included)."""
        from jinja2 import TemplateSyntaxError, meta

        from shared._docxtpl import by_paragraph, syntax_error_place

        try:
            tree = self._environment.parse(by_paragraph(source))
            return tree, meta.find_undeclared_variables(tree)
        except TemplateSyntaxError as error:
            place = syntax_error_place(name, source, error)
            message = " ".join(str(error.message).split())
            raise InputError(f"{self.path}: the template does not parse: {place}: {message}") from None
        except Exception as error:  # noqa: BLE001 - whatever else Jinja refuses
            message = " ".join(str(error).split())
            raise InputError(f"{self.path}: the template does not parse: {name}: {message}") from None

    def _load(self) -> DocxTemplate:
        from shared._docxtpl import Docx

        return Docx(io.BytesIO(self._content), self._properties_environment)

    def _parts(self) -> list[tuple[str, str]]:
        from shared._docxtpl import template_parts

        try:
            return list(template_parts(self._load()))
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
        from jinja2 import UndefinedError

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
