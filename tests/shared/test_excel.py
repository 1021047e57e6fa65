"""shared.excel: registers read into pydantic models row by row, and results workbooks written back."""

from __future__ import annotations

import datetime as dt
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared import excel
from shared.errors import InputError
from shared.excel import Personnummer, Postnummer, Row, read_rows
from shared.items import OUTCOMES, ItemResult
from shared.redaction import redact

HEADER = ["Referens", "Personnummer", "Förnamn", "Postnummer", "Belopp"]
PNR = "811218-9876"


class Person(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True, str_strip_whitespace=True)

    referens: str = Field(alias="Referens", min_length=1)
    personnummer: Personnummer = Field(alias="Personnummer")
    fornamn: str = Field(alias="Förnamn", min_length=1)
    postnummer: Postnummer | None = Field(default=None, alias="Postnummer")
    belopp: int | None = Field(default=None, alias="Belopp")


def sheet(path: Path, *rows: list[Any], header: list[Any] | None = None) -> Path:
    workbook = Workbook()
    workbook.active.append(HEADER if header is None else header)
    for cell in workbook.active[1]:
        cell.font = Font(bold=True)
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


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
    with pytest.raises(InputError, match=r"lower\.xlsx, sheet 'Sheet': missing required column\(s\) 'Referens' "
                       r"\(.*the closest is row 1, which has 'referens': the case differs\)$"):
        list(read_rows(lower, Person))


def test_missing_required_columns_give_one_error_naming_file_and_all_columns(tmp_path: Path) -> None:
    path = sheet(tmp_path / "utan.xlsx", ["SN-1"], header=["Referens", "Postnummer"])
    with pytest.raises(InputError) as caught:
        list(read_rows(path, Person))
    assert str(caught.value) == (f"{path}, sheet 'Sheet': missing required column(s) 'Personnummer', 'Förnamn' "
                                 "(no row among the first 20 has them all; the closest is row 1)")


def test_a_bad_cell_fails_only_its_row_naming_row_and_column(tmp_path: Path) -> None:
    path = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo", None, "tre"], ["SN-2", PNR, "   "],
                 ["SN-3", "811218-9875", "Ada", "1234", "x"], ["SN-4", PNR, "Eva"])
    rows = {row.number: row for row in read_rows(path, Person)}
    assert rows[2].error is not None and rows[2].error.startswith("row 2: column 'Belopp': Input should be")
    assert rows[3].error == "row 3: column 'Förnamn': required value is empty"
    assert rows[4].error is not None and rows[4].error.endswith("(and 2 more problems)")
    assert all(rows[n].model is None for n in (2, 3, 4)) and rows[5].model is not None
    assert rows[2].values["Belopp"] == "tre", "the raw values stay on a bad row"


@pytest.mark.parametrize("number", ["811218-9875", "198112189875", "8113189875", "811218-98"])
def test_personnummer_error_names_the_column_but_never_the_number(tmp_path: Path, number: str) -> None:
    path = sheet(tmp_path / "reg.xlsx", ["SN-1", number, "Bo"])
    (row,) = read_rows(path, Person)
    assert row.error == "row 2: column 'Personnummer': not a valid personnummer (format or check digit)"
    assert redact(row.error) == row.error


@pytest.mark.parametrize("number", ["811218-9876", "8112189876", "19811218-9876", "198112189876",
                                    "811218+9876", "811278-9873", "121212-1212", " 121212-1212 "])
def test_personnummer_accepts_10_or_12_digits_and_samordningsnummer(number: str) -> None:
    assert TypeAdapter(Personnummer).validate_python(number) == number.strip()


@pytest.mark.parametrize("number", ["811218-9875", "8113189875", "8112329878", "8112929875", "8100189870",
                                    "18811218-9876", "81121898765", "811218/9876", "ÅÄÖ", ""])
def test_personnummer_rejects_bad_check_digit_date_century_and_format(number: str) -> None:
    with pytest.raises(ValidationError, match="not a valid personnummer"):
        TypeAdapter(Personnummer).validate_python(number)


@pytest.mark.parametrize("raw", ["12345", "123 45", " 1 2345"])
def test_postnummer_is_normalised_to_three_plus_two_digits(raw: str) -> None:
    assert TypeAdapter(Postnummer).validate_python(raw) == "123 45"


@pytest.mark.parametrize("raw", ["1234", "123456", "12a45", "123-45", ""])
def test_postnummer_rejects_anything_but_five_digits(raw: str) -> None:
    with pytest.raises(ValidationError, match="not a valid postnummer"):
        TypeAdapter(Postnummer).validate_python(raw)


@pytest.mark.parametrize("content", [os.urandom(512), b"Referens;Personnummer\nSN-1;x\n", b"",
                                     b"PK\x03\x04 truncated zip"])
def test_a_file_that_is_not_an_xlsx_raises_input_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "register.xlsx"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"register\.xlsx: not an Excel \.xlsx workbook"):
        list(read_rows(path, Person))


def test_missing_file_directory_unknown_or_empty_sheet_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"finns-inte\.xlsx: file not found"):
        list(read_rows(tmp_path / "finns-inte.xlsx", Person))
    with pytest.raises(InputError, match="is a directory"):
        list(read_rows(tmp_path, Person))
    with pytest.raises(InputError, match="no sheet named 'Blad9'"):
        list(read_rows(sheet(tmp_path / "reg.xlsx"), Person, sheet="Blad9"))
    Workbook().save(tmp_path / "tom.xlsx")
    with pytest.raises(InputError, match=r"tom\.xlsx, sheet 'Sheet': the sheet is empty"):
        list(read_rows(tmp_path / "tom.xlsx", Person))
    assert list(read_rows(sheet(tmp_path / "header.xlsx"), Person)) == []


def test_row_key_trims_the_value_and_falls_back_to_the_row_number() -> None:
    def key(value: Any, number: int = 7) -> str:
        return excel.row_key(Row(number, {"Referens": value}), "Referens")

    assert (key(" SN-2026-01 "), key(4711), key(None), key("   "), key("", 8)) == (
        "SN-2026-01", "4711", "row-7", "row-7", "row-8")
    assert excel.row_key(Row(9, {}), "Saknas") == "row-9"
    assert key("SN-1", 2) == key(" SN-1", 3), "duplicates keep one key, for the item layer to reject"


def test_write_results_adds_columns_fills_rows_and_leaves_the_source_alone(tmp_path: Path) -> None:
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Åsa"], ["SN-2", PNR, "Örjan"])
    before = source.read_bytes()
    out = excel.write_results(source, tmp_path / "ut" / "reg-resultat.xlsx",
                        {3: {"status": "fel i data", "error": "row 3: trasig"}}, ["status", "error"])
    result = load_workbook(out).active
    assert [cell.value for cell in result[1]] == [*HEADER, "status", "error"]
    assert [c.value for c in result[3]] == ["SN-2", PNR, "Örjan", None, None, "fel i data", "row 3: trasig"]
    assert [cell.value for cell in result[2]][:3] == ["SN-1", PNR, "Åsa"] and result["F2"].value is None
    assert result["F1"].font.bold, "the new header cell takes the header's style"
    assert source.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["reg-resultat.xlsx"]


def test_write_results_over_its_own_output_reuses_the_result_columns(tmp_path: Path) -> None:
    out = tmp_path / "ut" / "res.xlsx"
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo"])
    excel.write_results(source, out, {2: {"status": "tekniskt fel"}}, ["status"])
    excel.write_results(out, out, {2: {"status": "klar"}}, ["status"])
    result = load_workbook(out).active
    assert [cell.value for cell in result[1]] == [*HEADER, "status"] and result["F2"].value == "klar"
    assert [p.name for p in out.parent.iterdir()] == ["res.xlsx"]


def test_a_save_failing_half_way_leaves_the_old_destination_and_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "ut" / "res.xlsx"
    out.parent.mkdir()
    out.write_bytes(b"the previous results")
    aware = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)  # openpyxl refuses it only while saving
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo"])
    with pytest.raises(TypeError, match="timezones"):
        excel.write_results(source, out, {2: {"status": aware}}, ["status"])
    assert out.read_bytes() == b"the previous results"
    assert [p.name for p in out.parent.iterdir()] == ["res.xlsx"]


def test_result_cells_label_every_outcome_in_swedish() -> None:
    assert set(excel.OUTCOME_LABELS) == set(OUTCOMES)
    results = [ItemResult("SN-1", "done", 2, output={"letter": "beslut-SN-1.docx"}),
               ItemResult("SN-2", "skipped", 3, output={"letter": "beslut-SN-2.docx"}),
               ItemResult("SN-3", "business_error", 4, output={"letter": "x"}, error="row 4: fel"),
               ItemResult("SN-4", "app_error", 5, error="timeout"), ItemResult("SN-5", "done", 6)]
    assert excel.result_cells(results, "letter file", "letter") == {
        2: {"status": "klar", "letter file": "beslut-SN-1.docx", "error": ""},
        3: {"status": "klar", "letter file": "beslut-SN-2.docx", "error": ""},
        4: {"status": "fel i data", "letter file": "", "error": "row 4: fel"},
        5: {"status": "tekniskt fel", "letter file": "", "error": "timeout"},
        6: {"status": "klar", "letter file": "", "error": ""},
    }


def test_write_results_keeps_the_source_formulas(tmp_path: Path) -> None:
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo", None, "=100*3"])
    result = load_workbook(excel.write_results(source, tmp_path / "res.xlsx", {}, ["status"])).active
    assert result["E2"].value == "=100*3"


def test_read_rows_is_not_fooled_by_a_wrong_dimension_record(tmp_path: Path) -> None:
    good, stale = sheet(tmp_path / "good.xlsx", ["SN-1", PNR, "Bo"]), tmp_path / "stale.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(stale, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b'<dimension ref="A1:E2"/>', b'<dimension ref="A1"/>')
                assert b'<dimension ref="A1"/>' in data
            target.writestr(info, data)
    assert [row.model is not None for row in read_rows(stale, Person)] == [True]
