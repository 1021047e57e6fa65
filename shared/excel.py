"""Excel registers in and out.

:func:`read_rows` streams a sheet and validates each row as a pydantic model whose field aliases are
the column headers; a bad row becomes a :class:`Row` with an error naming the row and the column, and
the rest go on. The header row is the first of the first 20 rows that holds every required column (or
the one given), so title rows above it are passed over; row numbers are the sheet's own. The cells
are read by calamine when the sheet is in the plain form it is shown to read as openpyxl does (about
ten times faster), else by openpyxl's streaming parser (:mod:`shared._sheets`): the rows, and the
errors, are the same.

Everything else that is wrong with the file raises one :class:`~shared.errors.InputError` naming the
file, the sheet and, where known, the row and the cell: not found, not an xlsx (with what it is
instead: an old .xls, an .ods, an .xlsb, a password-protected or a Strict Open XML workbook), an empty
sheet, a missing required column, a header the model uses twice, and any damage found part-way
through (a malformed sheet, a cell that cannot be read). A file that is an xlsx under another
extension is read.

:func:`write_results` writes a copy of the input with result columns added, keeping its formatting.

A bad row keeps its problems structured (:class:`CellProblem`): its ``error`` is the English line for
logs and the CLI, and the results workbook words the problems in the staff language
(:mod:`shared.wording`), naming the column and quoting the bad value (masked when it is personal data).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from copy import copy
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as clock_time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar, get_args, get_origin

from loguru import logger
from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from shared.errors import InputError
from shared.files import atomic_path
from shared.redaction import mask_quoted_value, redact
from shared.wording import LANGUAGES, VALIDATION_ALIASES, Language, Wording, wording

if TYPE_CHECKING:  # openpyxl is imported when a workbook is read or written, not when robots are listed
    from openpyxl.workbook.workbook import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

    from shared.items import ItemResult, WorkItem
    from shared.settings import Settings

M = TypeVar("M", bound=BaseModel)

#: How many rows from the top :func:`read_rows` looks in for the header row.
HEADER_SEARCH_ROWS = 20
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_STRICT_NAMESPACE = b"purl.oclc.org/ooxml/spreadsheetml/main"
_SAVE_AS_XLSX = "open it in Excel and save it as 'Excel Workbook (.xlsx)'"
_TAKE_MERGED = "mark the field MergedTopLeft() or read with merged='top_left' to take their first value"


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


class MergedTopLeft:
    """Marks a field whose empty cells inside a merged range take the range's top-left value.

    ``handlaggare: Annotated[str, MergedTopLeft()] = Field(alias="Handläggare")``; or read every
    column so with ``read_rows(..., merged="top_left")``. Without it a merged range's other cells are
    empty, as Excel stores them.
    """

    def __repr__(self) -> str:
        return "MergedTopLeft()"


class _FormulaWithoutValue:
    """A formula cell the file holds no computed value for (written by a tool that does not calculate)."""

    def __repr__(self) -> str:
        return "<formula without a computed value>"


_NO_VALUE = _FormulaWithoutValue()
_MERGE_CELL = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([^"]+)"')
#: The last day Excel can show (9999-12-31) as a serial number.
_LAST_EXCEL_DAY = 2958465


@dataclass(frozen=True)
class _ErrorValue:
    """A cell holding an Excel error (``#N/A``, ``#DIV/0!``: a formula that failed), never a value."""

    text: str


class _UnreadableCell(Exception):
    def __init__(self, row: int, cell: str, problem: str) -> None:
        super().__init__(problem)
        self.row, self.cell, self.problem = row, cell, problem


def _reason(error: BaseException) -> str:
    """One line about what a third-party reader tripped over."""
    while error.__cause__ is not None and "Unable to read workbook" in str(error):
        error = error.__cause__
    text = " ".join(str(error).split())[:160]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def open_workbook(path: Path, *, read_only: bool) -> Workbook:
    """Open an .xlsx file, or raise :class:`InputError` saying what is wrong with it (and what it is)."""
    from shared._sheets import load

    return load(path, _content(path), read_only=read_only)


def _content(path: Path) -> bytes:
    """The bytes of an .xlsx file, or :class:`InputError` saying why not (and what the file is)."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an Excel file")
    try:
        content = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    _check_is_xlsx(path, content)
    if path.suffix.lower() not in (".xlsx", ".xlsm", ".xltx", ".xltm"):
        logger.warning("{}: an Excel .xlsx workbook under another extension; reading it", path)
    return content


def _check_is_xlsx(path: Path, content: bytes) -> None:
    """Raise :class:`InputError` naming what ``content`` is when it is not an xlsx package."""
    if content.startswith(_OLE2_MAGIC):
        raise InputError(f"{path}: {_ole2_kind(content)}")
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype")[:80] if "mimetype" in names else b""
            workbook_xml = archive.read("xl/workbook.xml")[:4000] if "xl/workbook.xml" in names else b""
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise InputError(f"{path}: not an Excel .xlsx workbook{_text_hint(content)}") from None
    except Exception as error:  # noqa: BLE001 - zlib and the like on a damaged archive
        raise InputError(f"{path}: not an Excel .xlsx workbook (a damaged zip: {_reason(error)})") from None
    if b"opendocument.spreadsheet" in mimetype:
        raise InputError(f"{path}: an OpenDocument spreadsheet (.ods), not an Excel .xlsx workbook: "
                         f"{_SAVE_AS_XLSX}")
    if "xl/workbook.bin" in names:
        raise InputError(f"{path}: an Excel binary workbook (.xlsb), which Kansli cannot read: "
                         f"{_SAVE_AS_XLSX}")
    if _STRICT_NAMESPACE in workbook_xml:
        raise InputError(f"{path}: a Strict Open XML workbook, which Kansli cannot read: {_SAVE_AS_XLSX} "
                         "(not 'Strict Open XML Spreadsheet')")
    if "word/document.xml" in names:
        raise InputError(f"{path}: a Word document, not an Excel .xlsx workbook")
    if not workbook_xml and not any(name.startswith("xl/") for name in names):
        raise InputError(f"{path}: not an Excel .xlsx workbook (a zip file without a workbook in it)")


def _ole2_kind(content: bytes) -> str:
    """What an OLE2 compound file holds, from its directory entry names (UTF-16 in the file)."""
    def has(name: str) -> bool:
        return name.encode("utf-16-le") in content

    if has("EncryptedPackage") or has("EncryptionInfo"):
        return "the workbook is password-protected (encrypted): save a copy without a password for the robot"
    if has("WordDocument"):
        return "an old Word .doc document, not an Excel .xlsx workbook"
    return f"an old Excel 97-2003 .xls workbook, which Kansli cannot read: {_SAVE_AS_XLSX}"


def _text_hint(content: bytes) -> str:
    sample = content[:2000]
    if not sample:
        return " (the file is empty)"
    if sample.startswith(b"PK"):
        return " (a damaged or incomplete zip file)"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return " (it holds text: a CSV or text export?)"


def _sheet(workbook: Workbook, path: Path, sheet: str | None) -> Worksheet:
    if sheet is None:
        if not workbook.worksheets:
            raise InputError(f"{path}: the workbook has no worksheets")
        return workbook.worksheets[0]
    if sheet not in workbook.sheetnames:
        names = ", ".join(repr(name) for name in workbook.sheetnames) or "none"
        raise InputError(f"{path}: no sheet named {sheet!r} (the sheets are {names})")
    chosen = workbook[sheet]
    if chosen not in workbook.worksheets:
        raise InputError(f"{path}: sheet {sheet!r} is a chart sheet, not a sheet of rows")
    return chosen


def columns_of(model: type[BaseModel]) -> dict[str, str]:
    """Header → field name, from the model's aliases."""
    return {(info.alias or name): name for name, info in model.model_fields.items()}


def column_letter(column: int) -> str:
    """``1`` as ``A``, ``28`` as ``AB``: a column's letters."""
    letters = ""
    while column > 0:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


@dataclass
class _Sheet:
    """One sheet being read: where it is (for messages) and its rows as ``(number, {column: value})``.

    ``cells`` gives the rows (by openpyxl or by calamine, :mod:`shared._sheets`), adding the numbers
    of rows holding formulas without a value or Excel errors to the set it is given; ``source`` gives
    the sheet's XML (for its merged ranges).
    """

    path: Path
    title: str
    source: Callable[[], bytes]
    cells: Callable[[set[int]], Iterator[tuple[int, dict[int, Any]]]]
    close: Callable[[], None] = lambda: None
    merges: list[tuple[int, int, int, int]] = field(default_factory=list)
    merges_read: bool = False
    marked_rows: set[int] = field(default_factory=set)

    @property
    def where(self) -> str:
        return f"{self.path}, sheet {self.title!r}"

    def rows(self) -> Iterator[tuple[int, dict[int, Any]]]:
        """The sheet's non-empty XML rows; any failure of the parser is one :class:`InputError`."""
        last = 0
        try:
            for number, cells in self.cells(self.marked_rows):
                if number <= last:
                    raise ValueError(f"row {number} comes after row {last}")
                last = number
                yield number, cells
        except InputError:
            raise
        except _UnreadableCell as error:
            raise InputError(f"{self.where}, row {error.row}, cell {error.cell}: {error.problem}") from None
        except Exception as error:  # noqa: BLE001 - a damaged sheet, at any row
            place = f"after row {last}" if last else "before its first row"
            raise InputError(
                f"{self.where}: the sheet is damaged {place} and cannot be read ({_reason(error)})"
            ) from None

    def read_merges(self) -> None:
        """The merged ranges (``min_col, min_row, max_col, max_row``), found in the sheet's raw XML (they
        follow its rows: a pattern over the bytes is fifty times faster than parsing them again)."""
        from openpyxl.utils import range_boundaries

        self.merges_read = True
        try:
            xml = self.source()
            bounds = [range_boundaries(ref.decode()) for ref in _MERGE_CELL.findall(xml)]
            self.merges.extend(bound for bound in bounds if None not in bound)  # whole columns are no merge
        except Exception as error:  # noqa: BLE001 - a damaged sheet or merge reference
            raise InputError(
                f"{self.where}: the sheet is damaged and cannot be read ({_reason(error)})"
            ) from None
        self.merges.sort(key=lambda bounds: bounds[1])


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _text(value: Any) -> str:
    if value is None or isinstance(value, _FormulaWithoutValue | _ErrorValue):
        return ""
    return str(value).strip()


def read_rows(
    path: Path,
    model: type[M],
    *,
    sheet: str | None = None,
    header_row: int | None = None,
    merged: Literal["empty", "top_left"] = "empty",
) -> Iterator[Row[M]]:
    """Stream the rows of ``path`` as ``model`` instances; blank rows are passed over.

    ``sheet`` chooses a sheet by name (default: the first). The header row is ``header_row`` when
    given, else the first of the first :data:`HEADER_SEARCH_ROWS` rows holding every required column.
    ``merged="top_left"`` fills the empty cells of merged ranges with the range's top-left value in
    every column (:class:`MergedTopLeft` does so for one field).
    """
    if header_row is not None and header_row < 1:
        raise ValueError(f"header_row must be 1 or more, not {header_row}")
    from shared._sheets import fast_sheet, openpyxl_sheet

    content = _content(path)
    current = fast_sheet(path, content, sheet) or openpyxl_sheet(path, content, sheet)
    try:
        filled = _merged_columns(model, merged)
        if filled:
            current.read_merges()
        merges = _MergeFiller(current.merges)
        rows = merges.watch(current.rows())
        _, header = _find_header(current, rows, model, header_row)
        yield from _data_rows(current, rows, model, header, filled, merges)
    finally:
        current.close()


def _merged_columns(model: type[BaseModel], merged: str) -> set[str]:
    if merged not in ("empty", "top_left"):
        raise ValueError(f"merged must be 'empty' or 'top_left', not {merged!r}")
    return {
        info.alias or name for name, info in model.model_fields.items()
        if merged == "top_left" or any(isinstance(item, MergedTopLeft) for item in info.metadata)
    }


def _required_columns(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items() if info.is_required()]


def _find_header(
    sheet: _Sheet, rows: Iterator[tuple[int, dict[int, Any]]], model: type[BaseModel], header_row: int | None
) -> tuple[int, dict[int, str]]:
    """The header row's number and its texts by column (checked for missing and duplicate columns)."""
    required = _required_columns(model)
    last = header_row or HEADER_SEARCH_ROWS
    best: tuple[int, int, dict[int, str]] | None = None  # (matches, number, texts)
    for number, cells in rows:
        if number > last:
            break
        texts = {column: _text(value) for column, value in cells.items() if _text(value)}
        if not texts or (header_row is not None and number != header_row):
            continue
        matches = sum(column in texts.values() for column in required)
        if matches == len(required):
            _check_duplicates(sheet, number, texts, model)
            return number, texts
        if best is None or matches > best[0]:
            best = (matches, number, texts)
    raise InputError(_no_header_message(sheet, required, best, header_row))


def _no_header_message(
    sheet: _Sheet, required: list[str], best: tuple[int, int, dict[int, str]] | None, header_row: int | None
) -> str:
    if best is None:
        if header_row is not None:
            return f"{sheet.where}, row {header_row}: the header row is empty"
        return f"{sheet.where}: the sheet is empty (no header row in its first {HEADER_SEARCH_ROWS} rows)"
    _, number, texts = best
    missing = [column for column in required if column not in texts.values()]
    names = ", ".join(repr(column) for column in missing)
    folded = {text.casefold(): text for text in texts.values()}
    cased = [f"{folded[column.casefold()]!r}" for column in missing if column.casefold() in folded]
    hint = f", which has {', '.join(cased)}: the case differs" if cased else ""
    if header_row is not None:
        return f"{sheet.where}: missing required column(s) {names} in the header row {number}{hint}"
    return (f"{sheet.where}: missing required column(s) {names} (no row among the first "
            f"{HEADER_SEARCH_ROWS} has them all; the closest is row {number}{hint})")


def _check_duplicates(sheet: _Sheet, number: int, texts: dict[int, str], model: type[BaseModel]) -> None:
    used = set(columns_of(model))
    positions: dict[str, list[int]] = {}
    for column, text in sorted(texts.items()):
        positions.setdefault(text, []).append(column)
    for text, columns in positions.items():
        if text in used and len(columns) > 1:
            letters = [column_letter(column) for column in columns]
            listed = f"{', '.join(letters[:-1])} and {letters[-1]}"
            raise InputError(f"{sheet.where}, row {number}: the header {text!r} is in {len(columns)} "
                             f"columns, {listed}: rename or remove all but one of them")


def _data_rows(
    sheet: _Sheet, rows: Iterator[tuple[int, dict[int, Any]]], model: type[M], header: dict[int, str],
    filled: set[str], merges: _MergeFiller,
) -> Iterator[Row[M]]:
    used = set(columns_of(model))
    by_column: dict[int, str] = {}
    for column, text in sorted(header.items()):
        if text not in by_column.values():  # a header the model does not use may repeat: the leftmost wins
            by_column[column] = text
    for number, cells in rows:
        if all(_blank(value) for value in cells.values()):
            continue
        values = {text: cells.get(column) for column, text in by_column.items()}
        if filled:
            for column, text in by_column.items():
                if text in filled and cells.get(column) is None:
                    values[text] = merges.value_at(number, column)
        if filled or number in sheet.marked_rows:  # a formula never computed or an Excel error in it
            unusable = _unusable_cell(number, values, by_column, used)
            values = {text: _raw(value) for text, value in values.items()}
            if unusable is not None:
                yield Row(number, values, error=unusable)
                continue
        row = _validated(number, values, model)
        if row.error is not None and "required value is empty" in row.error:
            row.error += merges.hint(number, by_column, row.error, sheet)
        yield row


def _unusable_cell(number: int, values: dict[str, Any], header: dict[int, str], used: set[str]) -> str | None:
    """The row error for a model's cell that holds no value to read: a formula never computed, or an
    Excel error (else an ``#N/A`` would pass as the text of a name)."""
    for column, text in header.items():
        value = values[text]
        if text not in used or not isinstance(value, _FormulaWithoutValue | _ErrorValue):
            continue
        cell = f"{column_letter(column)}{number}"
        if isinstance(value, _ErrorValue):
            problem = f"{cell} holds the Excel error {value.text} (a failed formula, or a date out of range)"
        else:
            problem = f"{cell} holds a formula with no computed value: open and save the file in Excel"
        return f"row {number}: column {text!r}: {problem}"
    return None


def _raw(value: Any) -> Any:
    """A cell's value as a row keeps it: an Excel error as its text, a formula never computed as None."""
    if isinstance(value, _ErrorValue):
        return value.text
    return None if value is _NO_VALUE else value


class _MergeFiller:
    """The top-left values of merged ranges, seen as the rows stream past (ranges sorted by first row)."""

    def __init__(self, merges: list[tuple[int, int, int, int]]) -> None:
        self._pending = list(reversed(merges))
        self._active: dict[tuple[int, int, int, int], Any] = {}

    def watch(self, rows: Iterator[tuple[int, dict[int, Any]]]) -> Iterator[tuple[int, dict[int, Any]]]:
        for number, cells in rows:
            self.see(number, cells)
            yield number, cells

    def see(self, number: int, cells: dict[int, Any]) -> None:
        while self._pending and self._pending[-1][1] <= number:
            bounds = self._pending.pop()
            self._active[bounds] = cells.get(bounds[0]) if bounds[1] == number else None
        for bounds in [bounds for bounds in self._active if bounds[3] < number]:
            del self._active[bounds]

    def hint(self, number: int, header: dict[int, str], error: str, sheet: _Sheet) -> str:
        """Why a required cell may be empty: it is inside merged cells (the ranges read on first need)."""
        if not sheet.merges and not sheet.merges_read:
            sheet.read_merges()
        for column, text in header.items():
            if f"column {text!r}: required value is empty" not in error:
                continue
            for min_col, min_row, max_col, max_row in sheet.merges:
                if min_col <= column <= max_col and min_row <= number <= max_row:
                    merge = f"{column_letter(min_col)}{min_row}:{column_letter(max_col)}{max_row}"
                    cell = f"{column_letter(column)}{number}"
                    return f" ({cell} is inside the merged cells {merge}: {_TAKE_MERGED})"
        return ""

    def value_at(self, number: int, column: int) -> Any:
        for (min_col, _min_row, max_col, _max_row), value in self._active.items():
            if min_col <= column <= max_col:
                return value
        return None


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
    from openpyxl.workbook.workbook import Workbook

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
