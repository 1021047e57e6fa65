"""Word documents from docxtpl (Jinja-in-Word) templates.

A :class:`DocumentTemplate` is read once; :meth:`~DocumentTemplate.require` names every field the
template uses that the data does not provide, before anything is rendered; :meth:`~DocumentTemplate.render`
writes each document atomically (temp file, then rename).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, Template, UndefinedError

from shared.errors import InputError, TemplateFieldError
from shared.files import atomic_path

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


class _CompilingOnce(Environment):
    """A Jinja environment that compiles each distinct template text once.

    docxtpl hands the same document XML to ``from_string`` for every document it renders; plain
    docxtpl compiles it again each time, which is about a third of a letter's rendering time.
    """

    def __init__(self) -> None:
        super().__init__(autoescape=True)
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


class DocumentTemplate:
    """A docxtpl template held in memory."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise InputError(f"{path}: template not found")
        if not path.is_file():
            raise InputError(f"{path}: is not a file")
        self.path = path
        self._content = path.read_bytes()
        self._environment = _CompilingOnce()
        try:
            self.fields: frozenset[str] = frozenset(
                self._load().get_undeclared_template_variables()
            )
        except (zipfile.BadZipFile, KeyError, ValueError):
            raise InputError(f"{path}: not a Word .docx template") from None
        except Exception as error:  # noqa: BLE001 - jinja syntax errors and the like
            raise InputError(f"{path}: the template does not parse: {error}") from None

    def _load(self) -> DocxTemplate:
        from docxtpl import DocxTemplate  # here, not at the top: listing robots must not import docxtpl

        return DocxTemplate(io.BytesIO(self._content))

    def require(self, provided: Iterable[str]) -> None:
        """Raise :class:`TemplateFieldError` naming the fields the template uses but ``provided`` lacks."""
        missing = sorted(self.fields - set(provided))
        if missing:
            names = ", ".join(repr(name) for name in missing)
            raise TemplateFieldError(
                f"{self.path}: template uses field(s) {names} that the data does not provide"
            )

    def render(self, context: Mapping[str, Any], destination: Path) -> Path:
        """Render with ``context`` to ``destination`` (temp file, then rename)."""
        document = self._load()
        try:
            document.render(dict(context), jinja_env=self._environment, autoescape=True)
        except UndefinedError as error:
            raise TemplateFieldError(f"{self.path}: the data lacks a field: {error.message}") from None
        with atomic_path(destination) as temporary:
            document.save(str(temporary))
        return destination
