"""Reading a register: :func:`read_rows` streams a sheet as rows (:class:`~shared.excel.rows.Row`).

The header row is found among the first :data:`HEADER_SEARCH_ROWS` rows (title rows above it are
passed over) and checked for missing and repeated columns; each data row is validated as the model
(:mod:`shared.excel.validation`), or fails on a cell that holds no value to read, with merged cells
filled or named as the model asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from shared.errors import InputError
from shared.excel.rows import M, MergedTopLeft, Row, column_letter, columns_of
from shared.excel.sheet import _NO_VALUE, _ErrorValue, _FormulaWithoutValue, _MergeFiller, _Sheet
from shared.excel.validation import _validated
from shared.excel.workbook import _content

#: How many rows from the top :func:`read_rows` looks in for the header row.
HEADER_SEARCH_ROWS = 20


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
