"""Excel registers in and out.

:func:`read_rows` streams a sheet (openpyxl ``read_only``) and validates each row as a pydantic model
whose field aliases are the column headers; a bad row becomes a :class:`Row` with an error naming the
row and the column, and the rest go on. File-level problems (not found, not an xlsx, empty sheet,
missing required column) raise one :class:`~shared.errors.InputError` naming the file.
:func:`write_results` writes a copy of the input with result columns added, keeping its formatting.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from copy import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError

from shared.errors import InputError
from shared.files import atomic_path

if TYPE_CHECKING:
    from openpyxl.workbook.workbook import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

    from shared.items import ItemResult

M = TypeVar("M", bound=BaseModel)


@dataclass
class Row(Generic[M]):
    """One data row: its Excel row number, its raw values by header, and the model or the error."""

    number: int
    values: dict[str, Any]
    model: M | None = None
    error: str | None = None


def open_workbook(path: Path, *, read_only: bool) -> Workbook:
    """Open an .xlsx file, or raise :class:`InputError` saying what is wrong with it."""
    from openpyxl import load_workbook  # here, not at the top: listing robots must not import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

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
        return Row(number, values, error=f"row {number}: {describe_validation(error)}")


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


def write_results(
    source: Path,
    destination: Path,
    results: Mapping[int, Mapping[str, Any]],
    columns: Sequence[str],
    *,
    sheet: str | None = None,
) -> Path:
    """Copy ``source`` to ``destination`` with ``columns`` filled from ``results`` (by row number).

    Existing columns of the same names are reused, so a results workbook can be fed back in.
    """
    workbook = open_workbook(source, read_only=False)
    worksheet = _sheet(workbook, source, sheet)
    positions = _result_columns(worksheet, columns)
    for number, values in results.items():
        for column, value in values.items():
            worksheet.cell(row=number, column=positions[column], value=value)
    with atomic_path(destination) as temporary:
        workbook.save(temporary)
    return destination


def _result_columns(worksheet: Worksheet, columns: Sequence[str]) -> dict[str, int]:
    header = {cell.value: cell.column for cell in worksheet[1] if cell.value is not None}
    last = max(header.values(), default=0)
    model_cell = worksheet.cell(row=1, column=last) if last else None
    positions: dict[str, int] = {}
    for name in columns:
        if name in header:
            positions[name] = int(header[name])
            continue
        last += 1
        cell = worksheet.cell(row=1, column=last, value=name)
        if model_cell is not None and model_cell.has_style:
            cell.font, cell.fill = copy(model_cell.font), copy(model_cell.fill)
            cell.border, cell.alignment = copy(model_cell.border), copy(model_cell.alignment)
        positions[name] = last
        letter = cell.column_letter
        worksheet.column_dimensions[letter].width = max(14, len(name) + 4)
    return positions


def _check_personnummer(value: str) -> str:
    from shared.redaction import normalise_personnummer

    try:
        normalise_personnummer(value)
    except ValueError:
        raise ValueError("not a valid personnummer (format or check digit)") from None
    return value.strip()


def _check_postnummer(value: str) -> str:
    digits = value.replace(" ", "")
    if len(digits) != 5 or not digits.isdigit():
        raise ValueError("not a valid postnummer (five digits, e.g. 123 45)")
    return f"{digits[:3]} {digits[3:]}"


#: A Swedish personal identity number (or samordningsnummer) with a valid check digit.
Personnummer = Annotated[str, AfterValidator(_check_personnummer)]
#: A Swedish postal code, normalised to ``NNN NN``.
Postnummer = Annotated[str, AfterValidator(_check_postnummer)]


#: How item outcomes read in a results workbook (for Swedish staff).
OUTCOME_LABELS = {"done": "klar", "skipped": "klar", "business_error": "fel i data",
                  "app_error": "tekniskt fel"}


def row_key(row: Row[Any], column: str) -> str:
    """The row's ``column`` as an item key (a case reference), or ``row-N`` when it is empty."""
    value = row.values.get(column)
    text = str(value).strip() if value is not None else ""
    return text or f"row-{row.number}"


def result_cells(
    results: Iterable[ItemResult], output_column: str, output_field: str
) -> dict[int, dict[str, Any]]:
    """A results workbook's ``status``, output and ``error`` cells, by Excel row number."""
    return {
        result.position: {
            "status": OUTCOME_LABELS.get(result.outcome, result.outcome),
            output_column: (result.output or {}).get(output_field, "") if result.ok else "",
            "error": result.error or "",
        }
        for result in results
    }
