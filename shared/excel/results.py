"""Writing results: a copy of the input workbook with result columns (:func:`write_results`, headed
in the staff language and keeping the input's formatting), the cells for them from the items'
results (:func:`result_cells`), and a new one-sheet workbook (:func:`write_table`); each written to a
temporary file, then renamed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from copy import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import InputError
from shared.excel.rows import Row
from shared.excel.validation import word_problems
from shared.excel.workbook import _sheet, open_workbook
from shared.files import atomic_path
from shared.wording import LANGUAGES, Language, Wording, wording

if TYPE_CHECKING:  # openpyxl is imported when a workbook is written, not when robots are listed
    from openpyxl.worksheet.worksheet import Worksheet

    from shared.items import ItemResult
    from shared.settings import Settings

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
