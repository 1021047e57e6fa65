"""shared.excel.workbook: a file that is no xlsx (or none at all) says what it is; the sheet is
chosen by name."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from shared.errors import InputError
from shared.excel import read_rows
from tests.shared.excel.conftest import HEADER, PNR, Person, rewritten, sheet, sheet_xml


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


def test_the_sheet_is_chosen_by_name_and_an_unknown_name_lists_the_sheets(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.title = "Instruktioner"
    workbook.active["A1"] = "Fyll i bladet Ansökningar"
    data = workbook.create_sheet("Ansökningar")
    data.append(["Rapport"])
    data.append(HEADER)
    data.append(["SN-9", PNR, "Örjan"])
    workbook.save(tmp_path / "blad.xlsx")
    (row,) = read_rows(tmp_path / "blad.xlsx", Person, sheet="Ansökningar")
    assert (row.number, row.model is not None) == (3, True)
    with pytest.raises(InputError, match=r"blad\.xlsx: no sheet named 'Blad1' \(the sheets are "
                       r"'Instruktioner', 'Ansökningar'\)$"):
        list(read_rows(tmp_path / "blad.xlsx", Person, sheet="Blad1"))
    with pytest.raises(InputError, match=r"blad\.xlsx, sheet 'Instruktioner': missing required column"):
        list(read_rows(tmp_path / "blad.xlsx", Person))


# --- files that are not what their name says ---


def compound_file(*streams: str) -> bytes:
    """An OLE2 compound file (the container of .xls, .doc and encrypted Office files) with empty streams."""
    end, free = 0xFFFFFFFE, 0xFFFFFFFF
    header = bytearray(512)
    header[:8] = bytes.fromhex("d0cf11e0a1b11ae1")
    header[24:34] = (0x3E).to_bytes(2, "little") + (3).to_bytes(2, "little") + b"\xfe\xff" + \
        (9).to_bytes(2, "little") + (6).to_bytes(2, "little")
    header[44:48] = (1).to_bytes(4, "little")  # one FAT sector
    header[48:52] = (1).to_bytes(4, "little")  # the directory starts at sector 1
    header[56:60] = (4096).to_bytes(4, "little")
    header[60:64] = end.to_bytes(4, "little")
    header[68:72] = end.to_bytes(4, "little")
    header[76:80] = (0).to_bytes(4, "little")  # DIFAT: the FAT is sector 0
    header[80:512] = b"\xff" * 432
    fat = bytearray(b"\xff" * 512)
    fat[0:8] = (0xFFFFFFFD).to_bytes(4, "little") + end.to_bytes(4, "little")
    directory = bytearray()
    for index, name in enumerate(["Root Entry", *streams]):
        encoded = (name + "\0").encode("utf-16-le")
        entry = bytearray(128)
        entry[: len(encoded)] = encoded
        entry[64:66] = len(encoded).to_bytes(2, "little")
        entry[66] = 5 if index == 0 else 2
        child = 1 if index == 0 and streams else free
        entry[68:80] = free.to_bytes(4, "little") * 2 + child.to_bytes(4, "little")
        entry[116:120] = end.to_bytes(4, "little")
        directory += entry
    directory += bytes(512 - len(directory) % 512) if len(directory) % 512 else b""
    return bytes(header + fat + directory)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("gammal.xls", compound_file("Workbook", "\x05SummaryInformation"),
     "an old Excel 97-2003 .xls workbook, which Kansli cannot read: open it in Excel and save it as "
     "'Excel Workbook (.xlsx)'"),
    ("gammal.xlsx", compound_file("Book"), "an old Excel 97-2003 .xls workbook"),
    ("losen.xlsx", compound_file("EncryptionInfo", "EncryptedPackage", "\x06DataSpaces"),
     "the workbook is password-protected (encrypted): save a copy without a password for the robot"),
    ("brev.xls", compound_file("WordDocument", "1Table"), "an old Word .doc document"),
])
def test_ole2_files_say_what_they_are(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        list(read_rows(path, Person))
    assert str(caught.value).startswith(f"{path}: {message}")


def test_ods_and_xlsb_and_word_files_say_what_they_are(tmp_path: Path) -> None:
    ods = tmp_path / "kalkyl.ods"
    with zipfile.ZipFile(ods, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet",
                         compress_type=zipfile.ZIP_STORED)
        archive.writestr("content.xml", "<office:document-content/>")
        archive.writestr("META-INF/manifest.xml", "<manifest:manifest/>")
    xlsb = tmp_path / "binar.xlsb"
    with zipfile.ZipFile(xlsb, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.bin", b"\x83\x01\x00")
        archive.writestr("xl/worksheets/sheet1.bin", b"\x81\x01\x00")
    word = tmp_path / "brev.xlsx"
    from docx import Document

    Document().save(str(word))
    for path, message in [(ods, "an OpenDocument spreadsheet (.ods), not an Excel .xlsx workbook: open it"),
                          (xlsb, "an Excel binary workbook (.xlsb), which Kansli cannot read"),
                          (word, "a Word document, not an Excel .xlsx workbook")]:
        with pytest.raises(InputError) as caught:
            list(read_rows(path, Person))
        assert str(caught.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize("name", ["register.xls", "register.csv", "register", "register.XLSX", "export.txt"])
def test_an_xlsx_under_another_extension_is_read(tmp_path: Path, name: str) -> None:
    path = sheet(tmp_path / "riktig.xlsx", ["SN-1", PNR, "Bo"]).rename(tmp_path / name)
    assert [(row.number, row.model is not None) for row in read_rows(path, Person)] == [(2, True)]


STRICT = {
    b"http://schemas.openxmlformats.org/spreadsheetml/2006/main": b"http://purl.oclc.org/ooxml/spreadsheetml/main",
    b"http://schemas.openxmlformats.org/officeDocument/2006/relationships":
        b"http://purl.oclc.org/ooxml/officeDocument/relationships",
}


def test_a_strict_open_xml_workbook_is_named_as_such(tmp_path: Path) -> None:
    source = sheet(tmp_path / "vanlig.xlsx", ["SN-1", PNR, "Bo"])
    strict = source
    for member in ["xl/workbook.xml", "xl/worksheets/sheet1.xml", "xl/styles.xml"]:
        def to_strict(xml: bytes) -> bytes:
            for transitional, strict_ns in STRICT.items():
                xml = xml.replace(transitional, strict_ns)
            return xml
        strict = rewritten(strict, tmp_path / f"strikt-{len(member)}.xlsx", member, to_strict)
    assert b"purl.oclc.org" in sheet_xml(strict, "xl/workbook.xml")
    with pytest.raises(InputError) as caught:
        list(read_rows(strict, Person))
    assert str(caught.value) == (
        f"{strict}: a Strict Open XML workbook, which Kansli cannot read: open it in Excel and save it as "
        "'Excel Workbook (.xlsx)' (not 'Strict Open XML Spreadsheet')")
