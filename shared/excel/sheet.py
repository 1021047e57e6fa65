"""One sheet being read, as the sheet readers of :mod:`shared._sheets` give it to
:func:`~shared.excel.reading.read_rows`: its rows as ``(number, {column: value})`` (any failure of the
parser one :class:`~shared.errors.InputError` naming where), the values of cells that hold none to
read (a formula never computed, an Excel error), and its merged ranges with their top-left values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import InputError
from shared.excel.rows import column_letter
from shared.excel.workbook import _reason

_TAKE_MERGED = "mark the field MergedTopLeft() or read with merged='top_left' to take their first value"


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
