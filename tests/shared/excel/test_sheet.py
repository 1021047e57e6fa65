"""shared.excel.sheet: a sheet's rows whatever its dimension record and extensions say, merged
ranges, and damage part-way through a sheet as one InputError naming where."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Annotated, Any

import pytest
from openpyxl import Workbook, load_workbook
from pydantic import BaseModel, ConfigDict, Field

from bench.fuzz_inputs import with_shared_strings
from shared import excel
from shared.errors import InputError
from shared.excel import read_rows
from tests.shared.excel.conftest import PNR, Person, cell_xml, rewritten, sheet, sheet_xml


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


def test_sheet_extensions_of_newer_excel_versions_are_read_past_without_warnings(tmp_path: Path) -> None:
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo"])
    extension = (b'<extLst><ext uri="{CCE6A557-97BC-4b89-ADB6-D9C93CAAB3DF}" xmlns:x14="http://schemas.'
                 b'microsoft.com/office/spreadsheetml/2009/9/main"><x14:dataValidations count="0"/></ext>'
                 b"</extLst></worksheet>")
    newer = rewritten(source, tmp_path / "ny.xlsx", "xl/worksheets/sheet1.xml",
                      lambda xml: xml.replace(b"</worksheet>", extension))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [row.model is not None for row in read_rows(newer, Person)] == [True]
        excel.write_results(newer, tmp_path / "res.xlsx", {2: {"status": "klar"}}, ["status"])
    assert load_workbook(tmp_path / "res.xlsx").active["F2"].value == "klar"


class Visit(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)

    referens: str = Field(alias="Referens")
    handlaggare: Annotated[str, excel.MergedTopLeft()] = Field(alias="Handläggare")
    enhet: str = Field(alias="Enhet")


def merged_register(path: Path) -> Path:
    workbook = Workbook()
    worksheet = workbook.active
    worksheet.append(["Referens", "Handläggare", "Enhet"])
    worksheet.append(["SN-1", "Karin Ek", "Norr"])
    worksheet.append(["SN-2", None, "Söder"])
    worksheet.append(["SN-3", None, None])
    worksheet.append(["SN-4", "Lars Björk", "Väster"])
    worksheet.merge_cells("B2:B4")
    worksheet.merge_cells("C3:C4")
    workbook.save(path)
    return path


def test_merged_cells_take_the_top_left_value_only_when_the_model_asks(tmp_path: Path) -> None:
    path = merged_register(tmp_path / "sammanslagen.xlsx")
    rows = {row.number: row for row in read_rows(path, Visit)}
    assert [(rows[n].model.referens, rows[n].model.handlaggare) for n in (2, 3, 5)] == [  # type: ignore[union-attr]
        ("SN-1", "Karin Ek"), ("SN-2", "Karin Ek"), ("SN-4", "Lars Björk")]
    assert rows[4].values["Handläggare"] == "Karin Ek", "the filled value is the row's raw value too"
    take = "mark the field MergedTopLeft() or read with merged='top_left' to take their first value"
    assert rows[4].error == ("row 4: column 'Enhet': required value is empty (C4 is inside the merged "
                             f"cells C3:C4: {take})"), "Enhet is not marked"
    assert rows[3].model is not None and rows[3].model.handlaggare == "Karin Ek"
    everything = {row.number: row.model for row in read_rows(path, Visit, merged="top_left")}
    assert [(m.handlaggare, m.enhet) for m in everything.values() if m] == [
        ("Karin Ek", "Norr"), ("Karin Ek", "Söder"), ("Karin Ek", "Söder"), ("Lars Björk", "Väster")]

    class Plain(BaseModel):
        referens: str = Field(alias="Referens")
        handlaggare: str = Field(alias="Handläggare")

    plain = {row.number: row.error for row in read_rows(path, Plain)}
    hint = ("is inside the merged cells B2:B4: mark the field MergedTopLeft() or read with merged='top_left' "
            "to take their first value)")
    assert plain == {2: None, 3: f"row 3: column 'Handläggare': required value is empty (B3 {hint}",
                     4: f"row 4: column 'Handläggare': required value is empty (B4 {hint}", 5: None}


# --- damage part-way through a sheet: one InputError naming file, sheet, row and cell ---


def long_register(path: Path, rows: int = 60) -> Path:
    return sheet(path, *[[f"SN-{n}", PNR, f"Namn {n}", "123 45", n] for n in range(1, rows + 1)])


def test_text_in_a_number_cell_part_way_names_the_cell(tmp_path: Path) -> None:
    source = long_register(tmp_path / "lang.xlsx")
    old = cell_xml(sheet_xml(source), "E41")
    broken = rewritten(source, tmp_path / "trasig.xlsx", "xl/worksheets/sheet1.xml",
                       lambda xml: xml.replace(old, b'<c r="E41" t="n"><v>tolv</v></c>'))
    rows = read_rows(broken, Person)
    assert [next(rows).number for _ in range(39)] == list(range(2, 41)), "rows before the damage come first"
    with pytest.raises(InputError) as caught:
        next(rows)
    assert str(caught.value) == (f"{broken}, sheet 'Sheet', row 41, cell E41: is a number cell holding "
                                 "something that is not a number (a damaged file)")


def test_a_bad_shared_string_index_names_the_cell(tmp_path: Path) -> None:
    source = tmp_path / "excel.xlsx"  # texts in a shared string table, as Excel writes them
    source.write_bytes(with_shared_strings(long_register(tmp_path / "lang.xlsx").read_bytes()))
    assert [row.model is not None for row in read_rows(source, Person)] == [True] * 60
    old = cell_xml(sheet_xml(source), "C30")
    assert b't="s"' in old
    xml = sheet_xml(source)
    row_29 = xml[xml.index(b'<row r="29"'): xml.index(b'<row r="30"')]

    def damage(xml: bytes) -> bytes:  # row 29 gone too: the message takes the row from the cell
        return xml.replace(old, b'<c r="C30" t="s"><v>99999</v></c>').replace(row_29, b"")

    broken = rewritten(source, tmp_path / "trasig.xlsx", "xl/worksheets/sheet1.xml", damage)
    with pytest.raises(InputError, match=r"trasig\.xlsx, sheet 'Sheet', row 30, cell C30: refers to a shared "
                       r"text the file does not have \(a damaged file\)$"):
        list(read_rows(broken, Person))


@pytest.mark.parametrize(("change", "expected"), [
    (lambda xml: xml.replace(b'<c r="B20"', b'<c r="B!x"'), r", row 20, cell B!x: cannot be read \("),
    (lambda xml: xml.replace(b'<row r="33"', b'<row r="drei"'), r": the sheet is damaged after row 32 and"),
    (lambda xml: xml[: xml.index(b'<row r="25"') + 40], r": the sheet is damaged after row 24 and cannot"),
    (lambda xml: xml.replace(b'<row r="12"', b'<row r="12" <<'), r": the sheet is damaged after row 11"),
    (lambda xml: xml.replace(b'<row r="50"', b'<row r="5"'), r": the sheet is damaged after row 49 .*row 5"),
])
def test_a_malformed_sheet_or_cell_is_one_input_error_naming_where(tmp_path: Path, change: Any,
                                                                    expected: str) -> None:
    broken = rewritten(long_register(tmp_path / "lang.xlsx"), tmp_path / "trasig.xlsx",
                       "xl/worksheets/sheet1.xml", change)
    with pytest.raises(InputError, match=r"trasig\.xlsx, sheet 'Sheet'" + expected):
        list(read_rows(broken, Person))


def test_a_damaged_compressed_sheet_is_one_input_error(tmp_path: Path) -> None:
    source = long_register(tmp_path / "lang.xlsx", rows=400)
    content = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    data_start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    middle = data_start + info.compress_size // 2
    content[middle: middle + 16] = bytes(16)
    broken = tmp_path / "trasig.xlsx"
    broken.write_bytes(bytes(content))
    with pytest.raises(InputError, match=r"trasig\.xlsx, sheet 'Sheet': the sheet is damaged after row \d+ "
                       r"and cannot be read \(\w+: .+\)$"):
        list(read_rows(broken, Person))
