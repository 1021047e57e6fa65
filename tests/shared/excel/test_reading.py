"""shared.excel.reading: registers read into pydantic models row by row: the header row (title
rows above it, repeated headers), cells without a value to read, and fuzzing."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook
from pydantic import Field

from bench.fuzz_inputs import FuzzRow, mutated, read_outcome, seed_workbook
from shared.errors import InputError
from shared.excel import read_rows
from tests.shared.excel.conftest import HEADER, PNR, Person, cell_xml, rewritten, sheet, sheet_xml


def test_good_rows_become_models_with_excel_row_numbers_and_swedish_text(tmp_path: Path) -> None:
    path = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Åsa Öberg-Ärlig", 11434, 12500],
                 [None, "  ", None], ["SN-2", "19121212-1212", "Märta", "702 14", None])
    rows = list(read_rows(path, Person))
    assert [row.number for row in rows] == [2, 4], "the blank row 3 is passed over but still counted"
    first = rows[0].model
    assert first is not None and rows[0].error is None
    assert (first.fornamn, first.postnummer, first.belopp) == ("Åsa Öberg-Ärlig", "114 34", 12500)
    assert rows[0].values["Förnamn"] == "Åsa Öberg-Ärlig" and rows[0].values["Postnummer"] == 11434
    assert rows[1].model is not None and rows[1].model.personnummer == "19121212-1212"


def test_headers_are_trimmed_but_matched_case_sensitively(tmp_path: Path) -> None:
    trimmed = sheet(tmp_path / "trim.xlsx", ["SN-1", PNR, "Bo"],
                    header=["  Referens ", "Personnummer\t", " Förnamn"])
    assert [row.model is not None for row in read_rows(trimmed, Person)] == [True]
    lower = sheet(tmp_path / "lower.xlsx", ["SN-1", PNR, "Bo"], header=["referens", *HEADER[1:3]])
    with pytest.raises(InputError, match=r"lower\.xlsx, sheet 'Sheet': missing required column\(s\) "
                       r"'Referens' \(.*the closest is row 1, which has 'referens': the case differs\)$"):
        list(read_rows(lower, Person))


def test_missing_required_columns_give_one_error_naming_file_and_all_columns(tmp_path: Path) -> None:
    path = sheet(tmp_path / "utan.xlsx", ["SN-1"], header=["Referens", "Postnummer"])
    with pytest.raises(InputError) as caught:
        list(read_rows(path, Person))
    assert str(caught.value) == (f"{path}, sheet 'Sheet': missing required column(s) 'Personnummer', "
                                 "'Förnamn' (no row among the first 20 has them all; the closest is row 1)")


# --- registers in other styles: title rows, several sheets, repeated headers, merged cells, formulas ---


def test_title_rows_above_the_header_are_passed_over_and_row_numbers_stay_the_sheets(tmp_path: Path) -> None:
    workbook = Workbook()
    worksheet = workbook.active
    worksheet["A1"] = "Ansökningar om bidrag 2026"
    worksheet["A2"] = "Utdrag ur verksamhetssystemet 2026-11-30"
    worksheet.append([])
    worksheet.append(HEADER)  # row 4
    worksheet.append(["SN-1", PNR, "Åsa"])
    worksheet.append([None])
    worksheet.append(["SN-2", PNR, "Bo"])
    workbook.save(tmp_path / "titel.xlsx")
    rows = list(read_rows(tmp_path / "titel.xlsx", Person))
    assert [(row.number, row.values["Referens"]) for row in rows] == [(5, "SN-1"), (7, "SN-2")]
    assert all(row.model is not None for row in rows)
    given = list(read_rows(tmp_path / "titel.xlsx", Person, header_row=4))
    assert [row.number for row in given] == [5, 7]
    with pytest.raises(InputError, match=r"titel\.xlsx, sheet 'Sheet': missing required column\(s\) "
                       r"'Referens', 'Personnummer', 'Förnamn' in the header row 2$"):
        list(read_rows(tmp_path / "titel.xlsx", Person, header_row=2))
    with pytest.raises(InputError, match=r"titel\.xlsx, sheet 'Sheet', row 3: the header row is empty$"):
        list(read_rows(tmp_path / "titel.xlsx", Person, header_row=3))


def test_a_header_below_row_20_is_not_looked_for(tmp_path: Path) -> None:
    workbook = Workbook()
    for number in range(1, 22):
        workbook.active.append([f"Anteckning {number}"])
    workbook.active.append(HEADER)
    workbook.active.append(["SN-1", PNR, "Åsa"])
    workbook.save(tmp_path / "djup.xlsx")
    with pytest.raises(InputError, match=r"djup\.xlsx, sheet 'Sheet': missing required column\(s\) "
                       r"'Referens', 'Personnummer', 'Förnamn' \(no row among the first 20 has them all; "
                       r"the closest is row 1\)"):
        list(read_rows(tmp_path / "djup.xlsx", Person))
    assert [row.number for row in read_rows(tmp_path / "djup.xlsx", Person, header_row=22)] == [23]


def test_a_header_the_model_uses_twice_is_an_error_naming_both_columns(tmp_path: Path) -> None:
    path = sheet(tmp_path / "dubbel.xlsx", ["SN-1", PNR, "Bo", 100, 200],
                 header=["Referens", "Personnummer", "Förnamn", "Belopp", "Belopp"])
    with pytest.raises(InputError) as caught:
        list(read_rows(path, Person))
    assert str(caught.value) == (f"{path}, sheet 'Sheet', row 1: the header 'Belopp' is in 2 columns, "
                                 "D and E: rename or remove all but one of them")
    triple = sheet(tmp_path / "tre.xlsx", ["SN-1", PNR, "Bo"],
                   header=["Referens", "Personnummer", "Förnamn", "Referens", None, "Referens"])
    with pytest.raises(InputError, match=r"the header 'Referens' is in 3 columns, A, D and F"):
        list(read_rows(triple, Person))


def test_a_repeated_header_the_model_does_not_use_is_read_leftmost(tmp_path: Path) -> None:
    path = sheet(tmp_path / "anteckning.xlsx", ["SN-1", PNR, "Bo", "första", "andra"],
                 header=[*HEADER[:3], "Anteckning", "Anteckning"])
    (row,) = read_rows(path, Person)
    assert row.model is not None and row.values["Anteckning"] == "första"


def test_a_formula_without_a_computed_value_is_named_and_one_with_a_value_is_read(tmp_path: Path) -> None:
    path = sheet(tmp_path / "formel.xlsx", ["SN-1", PNR, "Bo", None, "=100*3"], ["SN-2", PNR, "Eva", None, 7],
                 ["SN-3", PNR, "Ada", None, None, "=A4&\"-x\""], header=[*HEADER, "Anteckning"])
    rows = {row.number: row for row in read_rows(path, Person)}
    assert rows[2].error == ("row 2: column 'Belopp': E2 holds a formula with no computed value: "
                             "open and save the file in Excel")
    assert rows[2].model is None and rows[2].values["Belopp"] is None
    assert rows[3].model is not None and rows[3].model.belopp == 7
    assert rows[4].model is not None, "a formula in a column the model does not use is no problem"
    computed = rewritten(path, tmp_path / "beraknad.xlsx", "xl/worksheets/sheet1.xml",
                         lambda xml: xml.replace(b"<f>100*3</f><v></v>", b"<f>100*3</f><v>300</v>"))
    assert b"<v>300</v>" in sheet_xml(computed)
    assert next(read_rows(computed, Person)).model.belopp == 300  # type: ignore[union-attr]


def test_an_excel_error_or_a_date_excel_cannot_show_is_named_not_read_as_text(tmp_path: Path) -> None:
    path = sheet(tmp_path / "fel.xlsx", ["SN-1", PNR, "Bo"], ["SN-2", PNR, "Eva", None, 5],
                 ["SN-3", PNR, "Ada"], header=[*HEADER, "Datum"])
    workbook = load_workbook(path)
    workbook.active["F3"] = dt.date(2026, 12, 1)
    workbook.active["F4"] = dt.date(2026, 12, 2)
    workbook.save(path)

    class Dated(Person):
        datum: dt.date | None = Field(default=None, alias="Datum")

    def damage(xml: bytes) -> bytes:  # a failed VLOOKUP in a name, and a serial number past 9999-12-31
        failed = b'<c r="C2" t="e"><f>VLOOKUP(A2,Blad2!A:B,2,0)</f><v>#N/A</v></c>'
        return xml.replace(cell_xml(xml, "C2"), failed).replace(b"<v>46358</v>", b"<v>2958467</v>")

    assert b"<v>46358</v>" in cell_xml(sheet_xml(path), "F4")
    broken = rewritten(path, tmp_path / "trasig.xlsx", "xl/worksheets/sheet1.xml", damage)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # openpyxl's own warning for the date is not let out
        rows = {row.number: row for row in read_rows(broken, Dated)}
    assert rows[2].error == ("row 2: column 'Förnamn': C2 holds the Excel error #N/A (a failed formula, or a "
                             "date out of range)") and rows[2].values["Förnamn"] == "#N/A"
    assert rows[3].model is not None and rows[3].model.datum == dt.date(2026, 12, 1)
    assert rows[4].error == ("row 4: column 'Datum': F4 holds the Excel error #VALUE! (a failed formula, or "
                             "a date out of range)")


# --- fuzzing: mutated real workbooks give rows or one InputError, never a traceback (longer: bench/) ---


def test_the_fuzzing_seed_is_a_register_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "frö.xlsx"
    path.write_bytes(seed_workbook())
    rows = list(read_rows(path, FuzzRow, merged="top_left"))
    assert [row.number for row in rows] == list(range(3, 11)) and all(row.model for row in rows)
    assert [row.values["Handläggare"] for row in rows][:5] == ["Karin Ek"] * 4 + [None]
    assert read_outcome(path) == "rows"


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=mutated(seed_workbook()), merged=st.booleans())
def test_mutated_workbooks_give_rows_or_one_input_error(tmp_path: Path, content: bytes, merged: bool) -> None:
    path = tmp_path / "mutated.xlsx"
    path.write_bytes(content)
    assert read_outcome(path, merged=merged) in {"rows", "InputError", "ConfigError"}
