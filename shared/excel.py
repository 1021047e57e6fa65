"""Excel registers in and out.

:func:`read_rows` streams a sheet (openpyxl ``read_only``) and validates each row as a pydantic model
whose field aliases are the column headers; a bad row becomes a :class:`Row` with an error naming the
row and the column, and the rest go on. File-level problems (not found, not an xlsx, empty sheet,
missing required column) raise one :class:`~shared.errors.InputError` naming the file.
:func:`write_results` writes a copy of the input with result columns added, keeping its formatting.

A bad row keeps its problems structured (:class:`CellProblem`): its ``error`` is the English line for
logs and the CLI, and the results workbook words the problems in the staff language
(:mod:`shared.wording`), naming the column and quoting the bad value (masked when it is personal data).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from copy import copy
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as clock_time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, get_args, get_origin

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet
from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from shared.errors import InputError
from shared.files import atomic_path
from shared.redaction import mask_quoted_value, redact
from shared.wording import LANGUAGES, VALIDATION_ALIASES, Language, Wording, wording

if TYPE_CHECKING:
    from shared.items import ItemResult, WorkItem
    from shared.settings import Settings

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class CellProblem:
    """One problem of a bad row, kept structured so each output words it in its own language."""

    #: The column's header; ``""`` for a problem of the whole row (a model validator).
    column: str
    #: Pydantic's error type: ``missing``, ``int_parsing``, ``personnummer``, ...
    kind: str
    #: Pydantic's English message.
    message: str
    #: The offending value as read (None when the cell is empty).
    value: Any = None
    #: Pydantic's context (``ge``, ``expected``, ...).
    context: dict[str, Any] = field(default_factory=dict)
    #: The value is personal data (a personnummer column): it is quoted masked.
    personal: bool = False


@dataclass
class Row(Generic[M]):
    """One data row: its Excel row number, its raw values by header, and the model or the error.

    ``error`` is one English line for logs and the CLI; ``problems`` are the same problems, structured.
    """

    number: int
    values: dict[str, Any]
    model: M | None = None
    error: str | None = None
    problems: list[CellProblem] = field(default_factory=list)


def open_workbook(path: Path, *, read_only: bool) -> Workbook:
    """Open an .xlsx file, or raise :class:`InputError` saying what is wrong with it."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an Excel file")
    try:
        # reading wants values; a copy (``write_results``) keeps the formulas as they are
        return load_workbook(path, read_only=read_only, data_only=read_only)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError):
        raise InputError(f"{path}: not an Excel .xlsx workbook") from None


def _sheet(workbook: Workbook, path: Path, sheet: str | None) -> Worksheet:
    if sheet is None:
        return workbook.worksheets[0]
    if sheet not in workbook.sheetnames:
        raise InputError(f"{path}: no sheet named {sheet!r}")
    return workbook[sheet]


def columns_of(model: type[BaseModel]) -> dict[str, str]:
    """Header → field name, from the model's aliases."""
    return {(info.alias or name): name for name, info in model.model_fields.items()}


def read_rows(path: Path, model: type[M], *, sheet: str | None = None) -> Iterator[Row[M]]:
    """Stream the rows of ``path`` as ``model`` instances; blank rows are passed over."""
    workbook = open_workbook(path, read_only=True)
    try:
        worksheet = _sheet(workbook, path, sheet)
        if hasattr(worksheet, "reset_dimensions"):
            worksheet.reset_dimensions()  # a stored used range may be wrong (some tools write "A1")
        rows = worksheet.iter_rows(values_only=True)
        header = _header(next(rows, None), path, model)
        for number, cells in enumerate(rows, start=2):
            if all(cell is None or str(cell).strip() == "" for cell in cells):
                continue
            yield _validated(number, dict(zip(header, cells, strict=False)), model)
    finally:
        workbook.close()


def _header(cells: Sequence[Any] | None, path: Path, model: type[BaseModel]) -> list[str]:
    if cells is None or all(cell is None for cell in cells):
        raise InputError(f"{path}: the sheet is empty (no header row)")
    header = [str(cell).strip() if cell is not None else "" for cell in cells]
    required = [
        info.alias or name for name, info in model.model_fields.items() if info.is_required()
    ]
    missing = [column for column in required if column not in header]
    if missing:
        names = ", ".join(repr(column) for column in missing)
        raise InputError(f"{path}: missing required column(s) {names}")
    return header


def _validated(number: int, values: dict[str, Any], model: type[M]) -> Row[M]:
    cleaned = {key: _clean(value) for key, value in values.items() if key}
    try:
        return Row(number, values, model=model.model_validate(cleaned))
    except ValidationError as error:
        return Row(number, values, error=f"row {number}: {describe_validation(error)}",
                   problems=cell_problems(error, model))


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def describe_validation(error: ValidationError) -> str:
    """``column 'X': message`` for the first problem (never the offending value itself)."""
    first = error.errors()[0]
    column = ".".join(str(part) for part in first["loc"])
    empty = first["type"] == "missing" or first.get("input", "") is None
    message = "required value is empty" if empty else first["msg"]
    message = message.removeprefix("Value error, ")
    more = error.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"column {column!r}: {message}{suffix}"


PERSONAL_COLUMN = re.compile(r"person(?:nummer|nr)|samordningsnummer|personal.?(?:id|number)", re.IGNORECASE)


def cell_problems(error: ValidationError, model: type[BaseModel]) -> list[CellProblem]:
    """Every problem of ``error``, structured (columns by header, values as read)."""
    personal = personal_columns(model)
    problems = []
    for detail in error.errors(include_url=False):
        column = ".".join(str(part) for part in detail["loc"])
        value = detail.get("input") if column else None
        context = {key: item for key, item in (detail.get("ctx") or {}).items() if key != "error"}
        problems.append(CellProblem(column, detail["type"], detail["msg"].removeprefix("Value error, "),
                                    value, context, column in personal))
    return problems


@lru_cache(maxsize=64)
def personal_columns(model: type[BaseModel]) -> frozenset[str]:
    """The headers of ``model`` holding personal identity numbers (by type or by name)."""
    found = set()
    for name, info in model.model_fields.items():
        header = info.alias or name
        typed = any(_is_personnummer_check(item) for item in info.metadata)
        if typed or _holds_personnummer(info.annotation) or PERSONAL_COLUMN.search(f"{header} {name}"):
            found.add(header)
    return frozenset(found)


def _is_personnummer_check(metadata: Any) -> bool:
    return getattr(metadata, "func", None) is _check_personnummer


def _holds_personnummer(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated and any(map(_is_personnummer_check, annotation.__metadata__)):
        return True
    return any(_holds_personnummer(argument) for argument in get_args(annotation))


MAX_PROBLEMS_WORDED = 5
MAX_QUOTED_LENGTH = 40


def word_problems(row: Row[Any], words: Wording) -> str:
    """The row's problems in the staff language: ``Rad 8: kolumnen ”Belopp”: ”tre” är inget heltal``."""
    worded = [word_problem(problem, words) for problem in row.problems[:MAX_PROBLEMS_WORDED]]
    if len(row.problems) > MAX_PROBLEMS_WORDED:
        worded.append(words("validation.more", count=len(row.problems) - MAX_PROBLEMS_WORDED))
    return words("validation.row", row=row.number, problems="; ".join(worded))


def word_problem(problem: CellProblem, words: Wording) -> str:
    """One problem, naming its column and quoting its value (masked when personal); redacted."""
    if not problem.column:
        return redact(words("validation.model", message=problem.message))
    kind = VALIDATION_ALIASES.get(problem.kind, problem.kind)
    if kind == "missing" or problem.value is None or str(problem.value).strip() == "":
        body = words("validation.missing")
    else:
        shown = mask_quoted_value(_shown(problem.value), personal=problem.personal)
        fields = {**problem.context, "value": words.quote(shown), "message": problem.message}
        if "expected" in problem.context:
            fields["expected"] = _expected(str(problem.context["expected"]), words)
        key = f"validation.{kind}" if words.has(f"validation.{kind}") else "validation.other"
        try:
            body = words(key, **fields)
        except (KeyError, IndexError):  # a context field the wording names is not there
            body = words("validation.other", **fields)
    return redact(words("validation.column", column=words.quote(problem.column), problem=body))


def _shown(value: Any) -> str:
    """A cell value as staff typed it: dates as dates, whole floats as integers, bounded."""
    if isinstance(value, datetime):
        text = value.date().isoformat() if value.time() == clock_time() else value.isoformat(" ", "minutes")
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= MAX_QUOTED_LENGTH else text[: MAX_QUOTED_LENGTH - 1] + "…"


def _expected(expected: str, words: Wording) -> str:
    """Pydantic's ``'A', 'B' or 'C'`` in the staff language's quotes and ``or``."""
    choices = re.findall(r"'([^']*)'", expected)
    if not choices:
        return expected
    quoted = [words.quote(choice) for choice in choices]
    if len(quoted) == 1:
        return quoted[0]
    return f"{', '.join(quoted[:-1])} {words('validation.or')} {quoted[-1]}"


def write_results(
    source: Path,
    destination: Path,
    results: Mapping[int, Mapping[str, Any]],
    columns: Sequence[str],
    *,
    sheet: str | None = None,
    settings: Settings | Language | None = None,
) -> Path:
    """Copy ``source`` to ``destination`` with ``columns`` filled from ``results`` (by row number).

    ``columns`` are named by meaning (``status``, ``letter_file``, ``error``): a name with a
    ``column.`` wording is headed in the staff language (``Status``, ``Brevfil``, ``Fel``), any
    other name is its own header. Existing columns headed so in any language are reused (and
    headed anew), so a results workbook can be fed back in.
    """
    workbook = open_workbook(source, read_only=False)
    worksheet = _sheet(workbook, source, sheet)
    positions = _result_columns(worksheet, columns, wording(settings))
    for number, values in results.items():
        for column, value in values.items():
            worksheet.cell(row=number, column=positions[column], value=value)
    with atomic_path(destination) as temporary:
        workbook.save(temporary)
    return destination


def _result_columns(worksheet: Worksheet, columns: Sequence[str], words: Wording) -> dict[str, int]:
    header = {_folded(cell.value): int(cell.column) for cell in worksheet[1] if cell.value is not None}
    last = max(header.values(), default=0)
    model_cell = worksheet.cell(row=1, column=last) if last else None
    positions: dict[str, int] = {}
    for name in columns:
        title = words.label("column", name)
        found = next((header[known] for known in _headings(name) if known in header), None)
        if found is not None:
            positions[name] = found
            worksheet.cell(row=1, column=found, value=title)
            continue
        last += 1
        cell = worksheet.cell(row=1, column=last, value=title)
        if model_cell is not None and model_cell.has_style:
            cell.font, cell.fill = copy(model_cell.font), copy(model_cell.fill)
            cell.border, cell.alignment = copy(model_cell.border), copy(model_cell.alignment)
        positions[name] = last
        letter = cell.column_letter
        worksheet.column_dimensions[letter].width = max(14, len(title) + 4)
    return positions


def _folded(value: Any) -> str:
    return str(value).strip().casefold()


def _headings(name: str) -> list[str]:
    """The headers a result column may already have: its name, and its heading in every language."""
    return [_folded(heading) for heading in
            (name, *(Wording(language).label("column", name) for language in LANGUAGES))]


def _check_personnummer(value: str) -> str:
    from shared.redaction import normalise_personnummer

    try:
        normalise_personnummer(value)
    except ValueError:
        message = "not a valid personnummer (format or check digit)"
        raise PydanticCustomError("personnummer", message) from None
    return value.strip()


def _check_postnummer(value: str) -> str:
    digits = value.replace(" ", "")
    if len(digits) != 5 or not digits.isdigit():
        raise PydanticCustomError("postnummer", "not a valid postnummer (five digits, e.g. 123 45)")
    return f"{digits[:3]} {digits[3:]}"


#: A Swedish personal identity number (or samordningsnummer) with a valid check digit.
Personnummer = Annotated[str, AfterValidator(_check_personnummer)]
#: A Swedish postal code, normalised to ``NNN NN``.
Postnummer = Annotated[str, AfterValidator(_check_postnummer)]


def row_key(row: Row[Any], column: str) -> str:
    """The row's ``column`` as an item key (a case reference); ``""`` when it is empty.

    An empty key is a business error of its row (:mod:`shared.items`): a row is never identified
    by its position, which changes when the register grows or is sorted.
    """
    value = row.values.get(column)
    return str(value).strip() if value is not None else ""


def row_items(rows: Iterable[Row[Any]], key_column: str, source: Path) -> Iterator[WorkItem]:
    """Work items of a register's rows: keyed by ``key_column``, with file and row for people."""
    from shared.items import WorkItem

    for row in rows:
        yield WorkItem(key=row_key(row, key_column), data=row, position=row.number,
                       source=f"{source.name} row {row.number}")


def result_cells(
    results: Iterable[ItemResult], output_column: str, output_field: str,
    settings: Settings | Language | None = None, *, rows: Iterable[Row[Any]] = (),
) -> dict[int, dict[str, Any]]:
    """A results workbook's ``status``, output and ``error`` cells, by Excel row number.

    In the staff language of ``settings``: the outcome as staff say it (``klar``, ``fel i data``,
    ...) and a bad row's problems worded for them (:func:`word_problems`). A result's row is its
    ``data`` when that is a :class:`Row`, else the one of ``rows`` with its position as number.
    """
    words = wording(settings)
    by_number = {row.number: row for row in rows}
    return {
        result.position: {
            "status": words.outcome(result.outcome),
            output_column: (result.output or {}).get(output_field, "") if result.ok else "",
            "error": staff_error(result, words, by_number.get(result.position)),
        }
        for result in results
    }


def staff_error(result: ItemResult, words: Wording, row: Row[Any] | None = None) -> str:
    """The item's error for staff: a bad row's own problems worded for them, else the error as recorded."""
    from shared.items import describe_error

    if result.problem is not None:
        code, fields = result.problem
        return words(f"item_problem.{code}", **fields)
    row = result.data if isinstance(result.data, Row) else row
    if result.error and row is not None and row.problems and row.error:
        if describe_error(InputError(row.error)) == result.error:  # it failed on its validation
            return word_problems(row, words)
    return result.error or ""


def write_table(destination: Path, title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A new workbook of one sheet: a bold, frozen header row and ``rows`` (temp file, then rename)."""
    from openpyxl.styles import Font

    workbook = Workbook()
    worksheet = workbook.active
    assert worksheet is not None
    worksheet.title = title[:31]
    worksheet.append(list(header))
    for cell in worksheet[1]:
        cell.font = Font(bold=True)
    worksheet.freeze_panes = "A2"
    for row in rows:
        worksheet.append(list(row))
    for cell in worksheet[1]:
        worksheet.column_dimensions[cell.column_letter].width = max(14, len(str(cell.value)) + 4)
    with atomic_path(destination) as temporary:
        workbook.save(temporary)
    return destination
