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

Everything is importable from ``shared.excel``; it lives in :mod:`shared.excel.reading` (:func:`read_rows`:
the header row, title rows, data rows), :mod:`shared.excel.rows` (:class:`Row`, :class:`CellProblem`,
a model's columns, rows as work items), :mod:`shared.excel.validation` (a row validated as its model,
its problems worded, :data:`Personnummer` and :data:`Postnummer`), :mod:`shared.excel.workbook`
(opening a file, or saying what it is instead), :mod:`shared.excel.sheet` (one sheet being read: its
rows, cells without a value, merged ranges) and :mod:`shared.excel.results` (results workbooks).
Importing it does not import openpyxl or calamine: they are imported when a workbook is read or
written, not when robots are listed.
"""

from __future__ import annotations

from shared.excel.reading import HEADER_SEARCH_ROWS, read_rows
from shared.excel.results import result_cells, staff_error, write_results, write_table
from shared.excel.rows import (
    CellProblem,
    M,
    MergedTopLeft,
    Row,
    column_letter,
    columns_of,
    row_items,
    row_key,
)
from shared.excel.sheet import _LAST_EXCEL_DAY, _NO_VALUE, _ErrorValue, _Sheet, _UnreadableCell
from shared.excel.validation import (
    MAX_PROBLEMS_WORDED,
    MAX_QUOTED_LENGTH,
    PERSONAL_COLUMN,
    Personnummer,
    Postnummer,
    cell_problems,
    describe_validation,
    personal_columns,
    word_problem,
    word_problems,
)
from shared.excel.workbook import _content, _reason, _sheet, open_workbook

__all__ = [
    # reading
    "HEADER_SEARCH_ROWS",
    "read_rows",
    # rows
    "M",
    "CellProblem",
    "MergedTopLeft",
    "Row",
    "column_letter",
    "columns_of",
    "row_items",
    "row_key",
    # validation
    "MAX_PROBLEMS_WORDED",
    "MAX_QUOTED_LENGTH",
    "PERSONAL_COLUMN",
    "Personnummer",
    "Postnummer",
    "cell_problems",
    "describe_validation",
    "personal_columns",
    "word_problem",
    "word_problems",
    # results
    "result_cells",
    "staff_error",
    "write_results",
    "write_table",
    # workbook
    "open_workbook",
    # for shared._sheets (the sheet readers) and the tests
    "_LAST_EXCEL_DAY",
    "_NO_VALUE",
    "_ErrorValue",
    "_Sheet",
    "_UnreadableCell",
    "_content",
    "_reason",
    "_sheet",
]
