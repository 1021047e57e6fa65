"""How :mod:`shared.excel` reads the cells of a sheet: calamine for a plain sheet, openpyxl otherwise.

Imported when a workbook is read, not when robots are listed (it imports openpyxl and calamine).

openpyxl's streaming parser reads any sheet and names the cell it cannot read, but spends most of a
big register's run in Python (about 0.2 ms a cell). calamine, in Rust, reads the same cells over ten
times faster; it is used only for a sheet, and its shared strings, in the plain form both libraries
are shown to read alike (``tests/shared/test_excel_readers.py`` compares them on generated and
damaged workbooks): well-formed UTF-8 XML without comments, CDATA, DTDs or ``_xHHHH_`` escapes; rows
in order, each cell inside its own row as ``<c r=".." s=".." t="..">`` holding a number, a shared
string index, a 0/1 or an inline string; no formulas and no Excel errors. Numbers come out as
openpyxl gives them (``1`` an int, ``1.5`` a float: a whole number written with a point or an
exponent, or too long for a float, sends the sheet to openpyxl); dates are converted by openpyxl's
own rules from the cell's style. Everything outside the cells (page setup, views, merged cells, ...)
is parsed by openpyxl's parser as before. Any doubt, and any failure, and openpyxl reads the sheet:
its answers, and its errors, are the reference.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.parsers import expat

from loguru import logger
from openpyxl import load_workbook
from openpyxl.reader.excel import ExcelReader
from openpyxl.utils.datetime import from_excel
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet._reader import FORMULA_TAG, VALUE_TAG, WorkSheetParser
from openpyxl.xml.constants import SHARED_STRINGS

from shared.errors import InputError
from shared.excel import (
    _LAST_EXCEL_DAY,
    _NO_VALUE,
    _ErrorValue,
    _reason,
    _Sheet,
    _sheet,
    _UnreadableCell,
    column_letter,
)

#: The fast reader is used when this is true (tests turn it off to compare the two readers).
FAST = True

# -- openpyxl ------------------------------------------------------------------------------------------


def load(path: Path, content: bytes, *, read_only: bool) -> Workbook:
    """``content`` as an openpyxl workbook, or :class:`InputError` saying why it cannot be read."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # reading wants values; a copy (``write_results``) keeps the formulas as they are
            workbook = load_workbook(io.BytesIO(content), read_only=read_only, data_only=read_only)
    except Exception as error:  # noqa: BLE001 - any failure of the reader on a damaged file
        raise InputError(f"{path}: not an Excel .xlsx workbook that can be read ({_reason(error)})") from None
    _log_warnings(path, caught, "DEBUG" if read_only else "WARNING")
    return workbook


def _log_warnings(path: Path, caught: list[warnings.WarningMessage], level: str) -> None:
    for warning in caught:  # what openpyxl passes over (extensions, odd definitions): a copy loses it
        logger.log(level, "{}: {}", path, " ".join(str(warning.message).split()))


def openpyxl_sheet(path: Path, content: bytes, name: str | None) -> _Sheet:
    """The sheet read by openpyxl's streaming parser."""
    workbook = load(path, content, read_only=True)
    try:
        worksheet = _sheet(workbook, path, name)
    except BaseException:
        workbook.close()
        raise

    def source() -> bytes:
        with worksheet._get_source() as stream:
            return bytes(stream.read())

    def cells(marked: set[int]) -> Iterator[tuple[int, dict[int, Any]]]:
        with worksheet._get_source() as stream:
            parser = _SheetParser(stream, worksheet._shared_strings, data_only=True, epoch=workbook.epoch,
                                  date_formats=workbook._date_formats,
                                  timedelta_formats=workbook._timedelta_formats)
            parser.marked_rows = marked
            for number, row in parser.parse():
                yield number, {cell["column"]: _value(cell["value"]) for cell in row}

    return _Sheet(path, worksheet.title, source, cells, workbook.close)


def _value(value: Any) -> Any:
    """A cell's value as both readers give it: an empty text is an empty cell."""
    return None if value == "" else value


class _SheetParser(WorkSheetParser):
    """openpyxl's streaming sheet parser, naming the cell it cannot read and marking formulas whose
    computed value the file lacks (``data_only`` reads would take them for empty cells) and Excel
    errors, with the rows that hold them in ``marked_rows``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marked_rows: set[int] = set()

    def parse_cell(self, element: Any) -> dict[str, Any]:
        try:
            if self._date_out_of_range(element):
                with warnings.catch_warnings():  # openpyxl warns, then reads it as the error #VALUE!
                    warnings.simplefilter("ignore")
                    cell: dict[str, Any] = super().parse_cell(element)
            else:
                cell = super().parse_cell(element)
        except Exception as error:  # noqa: BLE001 - whatever a damaged cell makes the parser raise
            reference = element.get("r") or f"{column_letter(self.col_counter + 1)}{self.row_counter}"
            problem = _cell_problem(element, error)
            raise _UnreadableCell(self.row_counter, str(reference)[:20], problem) from None
        if cell["value"] is None and element.find(FORMULA_TAG) is not None:
            cell["value"] = _NO_VALUE
            self.marked_rows.add(cell["row"])
        elif cell["data_type"] == "e":
            cell["value"] = _ErrorValue(str(cell["value"])[:20])
            self.marked_rows.add(cell["row"])
        return cell

    def parse_extensions(self, element: Any) -> None:
        """Extensions (newer conditional formats, validations) do not hold cells: passed over, unwarned."""

    def parse_formatting(self, element: Any) -> None:
        """Conditional formats do not hold cells either."""

    def _date_out_of_range(self, element: Any) -> bool:
        style = element.get("s")
        if not style or element.get("t", "n") != "n" or int(style) not in self.date_formats:
            return False
        text = element.findtext(VALUE_TAG)
        try:
            return bool(text) and not 0 <= float(text) < _LAST_EXCEL_DAY + 1
        except ValueError:
            return False  # not a number at all: the parser says so


def _cell_problem(element: Any, error: BaseException) -> str:
    kind = element.get("t", "n")
    if kind == "s":
        return "refers to a shared text the file does not have (a damaged file)"
    if kind == "n":
        return "is a number cell holding something that is not a number (a damaged file)"
    if kind == "d":
        return "is a date cell holding something that is not a date (a damaged file)"
    if kind == "b":
        return "is a true/false cell holding something else (a damaged file)"
    return f"cannot be read ({_reason(error)})"


# -- calamine, for plain sheets -------------------------------------------------------------------------

_MAIN = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_DECLARATION = re.compile(rb'<\?xml version="1\.0"(?: encoding="(?:UTF|utf)-8")?(?: standalone="yes")?\?>\s*')
#: A text: calamine trims the white space around a ``<t>`` without ``xml:space="preserve"``, openpyxl
#: keeps it, so such a text must have none.
_TEXT = rb'(?:<t xml:space="preserve">[^<]*</t>|<t>(?:[^<\s](?:[^<]*[^<\s])?)?</t>|<t/>)'
_RUN_PROPERTIES = rb'(?:<rPr>(?:<[a-zA-Z]+(?: [a-zA-Z]+="[^"]*")*/>)*+</rPr>)'
#: The text of an inline string or a shared string: plain, or rich text runs (no phonetic runs).
_STRING = rb"(?:" + _TEXT + rb"?(?:<r>" + _RUN_PROPERTIES + rb"?" + _TEXT + rb"</r>)*+)"
_NUMBER = rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
#: A plain cell in its row (``\1`` is the row's number): a style, a type and a value, nothing else.
_CELL = (rb'<c r="[A-Z]{1,2}\1"(?: s="\d+")?(?:'
         rb' t="inlineStr"(?:/>|>(?:<is>' + _STRING + rb"</is>)?</c>)"
         rb'| t="s"(?:/>|>(?:<v>\d+</v>)?</c>)'
         rb'| t="b"(?:/>|>(?:<v>[01]</v>)?</c>)'
         rb'|(?: t="n")?(?:/>|>(?:<v>' + _NUMBER + rb"</v>)?</c>))")
_ROWS = re.compile(rb'(?:<row r="([1-9]\d{0,6})"(?: [\w:]+="[^"]*")*(?:/>|>(?:' + _CELL + rb")*+</row>))*+")
_ROW_NUMBER = re.compile(rb'<row r="(\d+)"')
_SHEET_DATA = re.compile(rb"<sheetData>(.*)</sheetData>|<sheetData/>", re.S)
_STRINGS = re.compile(rb"<sst [^>]*>(?:<si>" + _STRING + rb"</si>)*+</sst>")
_ESCAPE = re.compile(rb"_x[0-9A-Fa-f]{4}_")
#: Numbers openpyxl reads otherwise than their value says: ``1.0`` or ``1E3`` (a float), long integers.
_POINTED = re.compile(rb"<v>(-?\d+\.\d+(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+)</v>")
_LONG_INTEGER = re.compile(rb"<v>-?\d{16,}</v>")
_LAST_ROW = 1_048_576
#: A sheet's XML up to this size is read by calamine (it is held in memory, with calamine's copy of the
#: cells: about 60,000 rows of 16 columns); a bigger one is streamed by openpyxl.
LARGEST_SHEET = 64 * 2**20


class _WithoutStrings(ExcelReader):
    """openpyxl's workbook reader without its shared strings (calamine reads them)."""

    def read_strings(self) -> None:
        self.shared_strings: list[str] = []


def fast_sheet(path: Path, content: bytes, name: str | None) -> _Sheet | None:
    """The sheet read by calamine, or None when openpyxl must read it (see the module's text)."""
    if not FAST:
        return None
    try:
        sheet = _fast_sheet(path, content, name)
        if sheet is None:
            logger.debug("{}: read by openpyxl (not in the plain form calamine is used for)", path)
        return sheet
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: BLE001 - any doubt, a panic in calamine (a BaseException) too:
        logger.debug("{}: read by openpyxl ({})", path, _reason(error))  # openpyxl reads it and names
        return None  # what is wrong


def _fast_sheet(path: Path, content: bytes, name: str | None) -> _Sheet | None:
    from python_calamine import CalamineWorkbook

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = _WithoutStrings(io.BytesIO(content), read_only=True, data_only=True)
        reader.read()
    workbook = reader.wb
    try:
        if len(set(workbook.sheetnames)) != len(workbook.sheetnames):
            return None
        worksheet = _sheet(workbook, path, name)
        archive: zipfile.ZipFile = workbook._archive
        if archive.getinfo(worksheet._worksheet_path).file_size > LARGEST_SHEET:
            return None  # streamed by openpyxl, in little memory
        xml = archive.read(worksheet._worksheet_path)
        if not _plain_strings(reader, archive) or (body := _plain_sheet_data(xml)) is None:
            return None
        _check_outside_cells(xml, workbook)
        dates = _dates(body, workbook)
        if dates is None:
            return None
        book = CalamineWorkbook.from_filelike(io.BytesIO(content))
        calamine_sheet = book.get_sheet_by_name(worksheet.title)
        book.close()
    finally:
        workbook.close()
    offset = calamine_sheet.start[1] if calamine_sheet.start else 0
    if not _types_agree(calamine_sheet, dates, offset):
        return None
    _log_warnings(path, caught, "DEBUG")
    return _Sheet(path, worksheet.title, lambda: xml,
                  lambda marked: _rows(calamine_sheet.iter_rows(), dates, offset))


def _plain_xml(xml: bytes) -> bytes | None:
    """The document after its XML declaration, when it is well-formed UTF-8 XML without DTD,
    comments, CDATA, processing instructions, carriage returns or ``_xHHHH_`` escapes."""
    declaration = _DECLARATION.match(xml)
    rest = xml[declaration.end():] if declaration else xml
    if not rest.startswith(b"<") or any(token in rest for token in (b"<!", b"<?", b"\r", b"x005F_")):
        return None
    if b"_x" in rest and _ESCAPE.search(rest):
        return None
    parser = expat.ParserCreate(None, "}")  # as openpyxl's ElementTree parses it, namespaces included
    try:
        parser.Parse(xml, True)
    except expat.ExpatError:
        return None
    return rest


def _plain_strings(reader: ExcelReader, archive: zipfile.ZipFile) -> bool:
    """The shared strings are where calamine reads them and in the plain form."""
    part = reader.package.find(SHARED_STRINGS)
    present = "xl/sharedStrings.xml" in archive.namelist()
    if part is None or not present:
        return part is None and not present
    if part.PartName != "/xl/sharedStrings.xml":
        return False
    rest = _plain_xml(archive.read("xl/sharedStrings.xml"))
    return rest is not None and rest.startswith(b"<sst " + _MAIN) and _STRINGS.fullmatch(rest) is not None


def _plain_sheet_data(xml: bytes) -> bytes | None:
    """The sheet's rows (the inside of ``<sheetData>``) when they are in the plain form, else None."""
    rest = _plain_xml(xml)
    if rest is None or not rest.startswith(b"<worksheet " + _MAIN) or xml.count(b"<sheetData") != 1:
        return None
    found = _SHEET_DATA.search(xml)
    if found is None:
        return None
    body = found.group(1) or b""
    if _ROWS.fullmatch(body) is None or _LONG_INTEGER.search(body):
        return None
    numbers = [int(number) for number in _ROW_NUMBER.findall(body)]
    if any(later <= earlier for earlier, later in zip(numbers, numbers[1:], strict=False)):
        return None
    if numbers and numbers[-1] > _LAST_ROW:
        return None
    if any(float(text).is_integer() for text in _POINTED.findall(body)):
        return None
    return body


def _check_outside_cells(xml: bytes, workbook: Workbook) -> None:
    """Everything but the rows, parsed by openpyxl's parser as it would be (raises what it raises)."""
    found = _SHEET_DATA.search(xml)
    assert found is not None
    rest = xml[: found.start()] + b"<sheetData/>" + xml[found.end():]
    parser = _SheetParser(io.BytesIO(rest), [], data_only=True, epoch=workbook.epoch,
                          date_formats=workbook._date_formats, timedelta_formats=workbook._timedelta_formats)
    for _ in parser.parse():
        pass


def _dates(body: bytes, workbook: Workbook) -> dict[int, dict[int, Any]] | None:
    """The number cells with a date style, by row and column, converted as openpyxl converts them;
    None when a cell without a style is a date, or a date is one Excel cannot show (openpyxl marks
    it, and calamine may not read it)."""
    date_styles, timedelta_styles = workbook._date_formats, workbook._timedelta_formats
    if 0 in date_styles:
        return None
    dates: dict[int, dict[int, Any]] = {}
    if not date_styles:
        return dates
    styles = b"|".join(str(style).encode() for style in sorted(date_styles))
    pattern = re.compile(rb'<c r="([A-Z]{1,2})(\d+)" s="(' + styles + rb')"(?: t="n")?><v>([^<]*)</v>')
    converted: dict[tuple[bytes, bytes], Any] = {}
    columns: dict[bytes, int] = {}
    for letters, number, style, text in pattern.findall(body):
        value = converted.get((text, style))
        if value is None:
            value = converted[text, style] = _date(text, workbook, int(style) in timedelta_styles)
            if value is None:
                return None
        column = columns.get(letters) or columns.setdefault(letters, _column_index(letters))
        dates.setdefault(int(number), {})[column] = value
    return dates


def _date(text: bytes, workbook: Workbook, timedelta: bool) -> Any:
    """A date cell's value as openpyxl gives it; None when it is out of Excel's range."""
    serial = text.decode()
    number = float(serial) if "." in serial or "e" in serial or "E" in serial else int(serial)
    if not 0 <= number < _LAST_EXCEL_DAY + 1:
        return None
    return from_excel(number, workbook.epoch, timedelta=timedelta)


def _column_index(letters: bytes) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + letter - 64
    return index


def _types_agree(sheet: Any, dates: dict[int, dict[int, Any]], offset: int) -> bool:
    """calamine sees a date (or time, or duration) exactly where openpyxl does, and its rows start at
    the sheet's first row (its columns at ``offset``): one pass over its values, before any is used."""
    rows = 0
    for number, values in enumerate(sheet.iter_rows(), 1):
        rows = number
        own = dates.get(number, {})
        for column, value in enumerate(values, offset + 1):
            kind = type(value)
            if kind is str or kind is float or kind is bool or kind is int:
                if column in own and kind is str:
                    return False  # an empty cell where openpyxl has a date
            elif column not in own:
                return False  # a date by calamine's reading of the style, not by openpyxl's
    end = sheet.end
    return rows == (end[0] + 1 if end else 0)


def _rows(grid: Iterator[list[Any]], dates: dict[int, dict[int, Any]], offset: int
          ) -> Iterator[tuple[int, dict[int, Any]]]:
    """calamine's rows as ``(number, {column: value})`` of the non-empty ones, values as openpyxl
    gives them (a whole number as an int, a date as openpyxl converts it)."""
    for number, values in enumerate(grid, 1):
        cells = {}
        for column, value in enumerate(values, offset + 1):
            if value == "":
                continue
            if type(value) is float and value.is_integer():
                value = int(value)
            cells[column] = value
        own = dates.get(number)
        if own:
            cells.update(own)
        if cells:
            yield number, cells
