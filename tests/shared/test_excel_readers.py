"""The two sheet readers of shared.excel agree: calamine (a plain sheet) and openpyxl (any sheet).

The fast reader must give exactly what openpyxl gives (the same values of the same types, dates
included) or decline, so that openpyxl reads the sheet. Workbooks are made here with openpyxl in
many styles (texts with white space and markup, whole and fractional numbers, booleans, dates,
times and durations under many number formats, the 1900 and 1904 calendars, blank rows, a title
row, merged cells, inline or shared strings), and damaged by the fuzzer's mutations; both readers
read each one.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from bench.fuzz_inputs import FuzzRow, _rezip, mutated, with_shared_strings
from shared import _sheets
from shared.errors import ConfigError, InputError
from shared.excel import _content, read_rows

REPO = Path(__file__).resolve().parents[2]
Cells = list[tuple[int, dict[int, Any]]]

#: Number formats both libraries read as the same kind: numbers, dates and times, durations.
NUMBER_FORMATS = ["General", "0", "0.00", "#,##0", "0%", "0.00E+00", "@"]
DATE_FORMATS = ["yyyy-mm-dd", "d mmm yyyy", "dd/mm/yy", "yyyy-mm-dd h:mm:ss", "h:mm", "hh:mm:ss", "mm:ss",
                "[h]:mm:ss", "[mm]:ss", "d/m/yyyy h:mm"]
#: Formats the readers may classify differently: the fast reader must decline rather than disagree.
ODD_FORMATS = ["[$-41D]d mmmm yyyy", "yyyy-mm-dd;@", '0.00" kr"', "[Red]0.00", "mmm", "ss.0", "[ss]",
               'd "dagar"', "[h]:mm;@", "General;General;General"]
FORMATS = NUMBER_FORMATS + DATE_FORMATS + ODD_FORMATS

#: Texts as cells hold them (openpyxl writes a text starting with "=" as a formula, "#N/A" as an error).
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12).map(
    lambda text: ILLEGAL_CHARACTERS_RE.sub("", text).replace("\r", "")).filter(
    lambda text: not text.startswith(("=", "#")) and "_x" not in text)
spaced_texts = st.sampled_from([" ledande", "släpande ", "  ", "\tflik", "rad\nbrytning", "a & <b> \"c\"",
                                "100", "1e3", "\u00a0hårt", "<t>", "]]>"])
#: Cells the fast reader leaves to openpyxl: formulas, errors, escapes, carriage returns.
formulas_and_errors = st.sampled_from(["=1+1", "=A1*2", "#N/A", "#DIV/0!", "_x000D_", "x005F_", "a\r\nb"])
fractions = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False).filter(
    lambda number: not number.is_integer())
small_fractions = st.floats(min_value=1e-9, max_value=1e-3) | st.floats(min_value=-1e-3, max_value=-1e-9)
dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(9999, 12, 31))
datetimes = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(9999, 12, 30))
times = st.times()
durations = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=3000))

#: Values whose text in the file is plain, so the fast reader must take the sheet.
plain_values = st.one_of(st.none(), texts, spaced_texts, st.integers(1 - 10**15, 10**15 - 1), fractions,
                         small_fractions, st.booleans(), dates, datetimes, times, durations)
#: Values that may send the sheet to openpyxl (long integers, whole floats written with an exponent).
any_values = st.one_of(plain_values, st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       formulas_and_errors)


@st.composite
def workbooks(draw: st.DrawFn, values: st.SearchStrategy[Any], plain: bool) -> bytes:
    """A workbook of a few rows and columns in the styles real registers have; ``plain``: numbers in
    number formats and dates in date formats, else any format on any value."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    if draw(st.booleans()):
        workbook.epoch = dt.datetime(1904, 1, 1)  # the Mac calendar: the 1904 date system
    top = draw(st.integers(1, 4))
    left = draw(st.integers(1, 3))
    for row in range(top, top + draw(st.integers(1, 6))):
        if draw(st.integers(0, 5)) == 0:
            continue  # a blank row
        for column in range(left, left + draw(st.integers(1, 5))):
            value = draw(values)
            if value is None and draw(st.booleans()):
                continue
            cell = sheet.cell(row=row, column=column, value=value)
            if not isinstance(value, str) and draw(st.booleans()):
                cell.number_format = draw(st.sampled_from(_formats(value) if plain else FORMATS))
    if draw(st.booleans()):
        sheet.merge_cells(start_row=top, start_column=left, end_row=top + 1, end_column=left + 1)
    buffer = io.BytesIO()
    workbook.save(buffer)
    content = buffer.getvalue()
    return with_shared_strings(content) if draw(st.booleans()) else content


def _formats(value: Any) -> list[str]:
    if isinstance(value, dt.date | dt.time | dt.timedelta):
        return DATE_FORMATS
    return NUMBER_FORMATS


def both(path: Path) -> tuple[Cells | None, set[int], Cells, set[int]]:
    """The cells and marked rows by the fast reader (None: it declined) and by openpyxl."""
    content = _content(path)
    fast = _sheets.fast_sheet(path, content, None)
    fast_marked: set[int] = set()
    fast_cells = list(fast.cells(fast_marked)) if fast is not None else None
    slow = _sheets.openpyxl_sheet(path, content, None)
    slow_marked: set[int] = set()
    try:
        slow_cells = list(slow.cells(slow_marked))
    finally:
        slow.close()
    return fast_cells, fast_marked, slow_cells, slow_marked


def typed(cells: Cells) -> list[tuple[int, dict[int, tuple[type, Any]]]]:
    """The cells that hold a value, with their types (so that ``1 == 1.0 == True`` cannot pass for
    agreement); an empty cell or row counts as no cell or row at all (``read_rows`` sees no difference)."""
    kept = [(number, {column: (type(value), value) for column, value in row.items() if value is not None})
            for number, row in cells]
    return [(number, row) for number, row in kept if row]


def assert_agree(path: Path, *, must_be_fast: bool) -> None:
    fast, fast_marked, slow, slow_marked = both(path)
    if fast is None:
        assert not must_be_fast, "the fast reader declined a plain sheet"
        return
    assert typed(fast) == typed(slow)
    assert fast_marked == slow_marked


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=workbooks(plain_values, plain=True))
def test_plain_workbooks_are_read_fast_and_as_openpyxl_reads_them(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "register.xlsx"
    path.write_bytes(content)
    assert_agree(path, must_be_fast=True)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=workbooks(any_values, plain=False))
def test_any_workbook_is_read_as_openpyxl_reads_it_or_left_to_openpyxl(tmp_path: Path,
                                                                        content: bytes) -> None:
    path = tmp_path / "register.xlsx"
    path.write_bytes(content)
    assert_agree(path, must_be_fast=False)


def outcome(path: Path, *, fast: bool, merged: bool) -> Any:
    """What ``read_rows`` gives with one reader: the rows in full, or the error's kind and message."""
    _sheets.FAST = fast
    try:
        rows = list(read_rows(path, FuzzRow, merged="top_left" if merged else "empty"))
    except (InputError, ConfigError) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        _sheets.FAST = True
    return [(row.number, typed([(0, dict(enumerate(row.values.values())))]), list(row.values),
             row.model.model_dump() if row.model else None, row.error, row.problems) for row in rows]


def plain_seed(shared_strings: bool) -> bytes:
    """The fuzzer's register without its formulas (a sheet with formulas is read by openpyxl)."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Ansökningar"
    sheet.append(["Ansökningar 2026"])
    sheet.append(["Referens", "Personnummer", "Handläggare", "Belopp", "Datum", "Anteckning"])
    for number in range(1, 9):
        sheet.append([f"SN-{number}", "811218-9876", "Karin Ek" if number % 3 == 1 else None, number * 1000,
                      dt.date(2026, 1, number), "åäö" if number % 2 else 2.5])
    sheet.merge_cells("C3:C5")
    workbook.create_sheet("Koder").append(["Kod", "Text"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return with_shared_strings(buffer.getvalue()) if shared_strings else buffer.getvalue()


SEEDS = [plain_seed(False), plain_seed(True)]


@pytest.mark.parametrize("seed", SEEDS, ids=["inline strings", "shared strings"])
def test_the_plain_seeds_are_read_fast(tmp_path: Path, seed: bytes) -> None:
    path = tmp_path / "frö.xlsx"
    path.write_bytes(seed)
    assert_agree(path, must_be_fast=True)
    assert outcome(path, fast=True, merged=True) == outcome(path, fast=False, merged=True)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=st.one_of(*(mutated(seed) for seed in SEEDS)), merged=st.booleans())
def test_damaged_workbooks_give_the_same_rows_or_the_same_error_with_both_readers(
    tmp_path: Path, content: bytes, merged: bool
) -> None:
    path = tmp_path / "mutated.xlsx"
    path.write_bytes(content)
    assert outcome(path, fast=True, merged=merged) == outcome(path, fast=False, merged=merged)


def edited(seed: bytes, change: Callable[[bytes], bytes], member: str = "xl/worksheets/sheet1.xml") -> bytes:
    return _rezip(seed, {member: change})


#: Sheets the fast reader must leave to openpyxl: it cannot be shown to read them alike.
DECLINED = {
    "a formula with its value": lambda xml: xml.replace(b"<v>1000</v>", b"<f>500*2</f><v>1000</v>", 1),
    "an Excel error": lambda xml: xml.replace(b't="n"><v>1000</v>', b't="e"><v>#N/A</v>', 1),
    "a text with untrimmed space": lambda xml: xml.replace(b"<t>SN-1</t>", b"<t> SN-1</t>"),
    "a whole number with a point": lambda xml: xml.replace(b"<v>1000</v>", b"<v>1000.0</v>"),
    "a long integer": lambda xml: xml.replace(b"<v>1000</v>", b"<v>12345678901234567</v>"),
    "an escaped character": lambda xml: xml.replace(b"<t>SN-1</t>", b"<t>SN_x000D_1</t>"),
    "a carriage return": lambda xml: xml.replace(b"<t>SN-1</t>", b"<t>SN\r\n1</t>"),
    "a comment": lambda xml: xml.replace(b"<sheetData>", b"<!-- x --><sheetData>"),
    "a cell outside its row": lambda xml: xml.replace(b'<c r="A3"', b'<c r="A4"', 1),
    "rows out of order": lambda xml: xml.replace(b'<row r="3"', b'<row r="30"', 1),
    "a pretty-printed row": lambda xml: xml.replace(b"</row>", b"\n</row>", 1),
    "a cell with an unknown attribute": lambda xml: xml.replace(b'<c r="A3"', b'<c r="A3" vm="1"', 1),
    "a cell typed d": lambda xml: xml.replace(b't="n"><v>1000</v>', b't="d"><v>2026-01-01</v>', 1),
}


@pytest.mark.parametrize("change", DECLINED.values(), ids=DECLINED.keys())
def test_what_the_fast_reader_cannot_vouch_for_is_left_to_openpyxl(tmp_path: Path, change: Any) -> None:
    path = tmp_path / "register.xlsx"
    path.write_bytes(edited(SEEDS[0], change))
    assert _sheets.fast_sheet(path, _content(path), None) is None
    outcome(path, fast=False, merged=False)  # openpyxl reads it (or names what is wrong)


def test_shared_strings_the_fast_reader_cannot_vouch_for_are_left_to_openpyxl(tmp_path: Path) -> None:
    path = tmp_path / "register.xlsx"
    for change in (lambda xml: xml.replace(b"<si>", b'<si><rPh sb="0" eb="1"><t>x</t></rPh>', 1),
                   lambda xml: xml.replace(b'preserve">Karin', b'preserve">Karin_x000A_', 1),
                   lambda xml: re.sub(rb'<t xml:space="preserve">SN-1</t>', b"<t> SN-1</t>", xml)):
        path.write_bytes(edited(SEEDS[1], change, "xl/sharedStrings.xml"))
        assert _sheets.fast_sheet(path, _content(path), None) is None


def test_the_demo_registers_are_read_fast_and_alike() -> None:
    for name in ("applications.xlsx", "intake.xlsx"):
        assert_agree(REPO / "demo" / "data" / name, must_be_fast=True)


def test_a_date_excel_cannot_show_is_left_to_openpyxl_which_marks_it(tmp_path: Path) -> None:
    path = tmp_path / "register.xlsx"
    for serial in (b"2958466", b"-1", b"1e9"):
        path.write_bytes(edited(SEEDS[0], lambda xml, serial=serial: xml.replace(b"<v>46023</v>",
                                                                                   b"<v>%s</v>" % serial, 1)))
        fast, _, _, slow_marked = both(path)
        assert fast is None and slow_marked == ({3} if serial != b"-1" else set())


def test_the_fast_reader_chooses_the_sheet_by_name_and_leaves_unknown_names_to_openpyxl(
    tmp_path: Path,
) -> None:
    with zipfile.ZipFile(io.BytesIO(SEEDS[0])) as archive:
        assert "xl/sharedStrings.xml" not in archive.namelist()
    path = tmp_path / "register.xlsx"
    path.write_bytes(SEEDS[0])
    sheet = _sheets.fast_sheet(path, _content(path), "Ansökningar")
    assert sheet is not None and sheet.title == "Ansökningar"
    assert _sheets.fast_sheet(path, _content(path), "Koder") is not None
    assert _sheets.fast_sheet(path, _content(path), "Saknas") is None  # openpyxl names the sheets


def test_a_sheet_too_big_to_hold_in_memory_is_streamed_by_openpyxl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "register.xlsx"
    path.write_bytes(SEEDS[0])
    with zipfile.ZipFile(path) as archive:
        size = archive.getinfo("xl/worksheets/sheet1.xml").file_size
    monkeypatch.setattr(_sheets, "LARGEST_SHEET", size)
    assert _sheets.fast_sheet(path, _content(path), None) is not None
    monkeypatch.setattr(_sheets, "LARGEST_SHEET", size - 1)
    assert _sheets.fast_sheet(path, _content(path), None) is None
