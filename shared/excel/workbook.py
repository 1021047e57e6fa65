"""Opening a workbook file: its bytes when it is an xlsx, else one :class:`~shared.errors.InputError`
saying what it is instead (an old .xls, an .ods, an .xlsb, a password-protected or a Strict Open XML
workbook, a Word document, text), and the sheet chosen by name.

openpyxl is imported when a workbook is opened (by :mod:`shared._sheets`), not when robots are listed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from shared.errors import InputError

if TYPE_CHECKING:  # openpyxl is imported when a workbook is read or written, not when robots are listed
    from openpyxl.workbook.workbook import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_STRICT_NAMESPACE = b"purl.oclc.org/ooxml/spreadsheetml/main"
_SAVE_AS_XLSX = "open it in Excel and save it as 'Excel Workbook (.xlsx)'"


def _reason(error: BaseException) -> str:
    """One line about what a third-party reader tripped over."""
    while error.__cause__ is not None and "Unable to read workbook" in str(error):
        error = error.__cause__
    text = " ".join(str(error).split())[:160]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def open_workbook(path: Path, *, read_only: bool) -> Workbook:
    """Open an .xlsx file, or raise :class:`InputError` saying what is wrong with it (and what it is)."""
    from shared._sheets import load

    return load(path, _content(path), read_only=read_only)


def _content(path: Path) -> bytes:
    """The bytes of an .xlsx file, or :class:`InputError` saying why not (and what the file is)."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an Excel file")
    try:
        content = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    _check_is_xlsx(path, content)
    if path.suffix.lower() not in (".xlsx", ".xlsm", ".xltx", ".xltm"):
        logger.warning("{}: an Excel .xlsx workbook under another extension; reading it", path)
    return content


def _check_is_xlsx(path: Path, content: bytes) -> None:
    """Raise :class:`InputError` naming what ``content`` is when it is not an xlsx package."""
    if content.startswith(_OLE2_MAGIC):
        raise InputError(f"{path}: {_ole2_kind(content)}")
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype")[:80] if "mimetype" in names else b""
            workbook_xml = archive.read("xl/workbook.xml")[:4000] if "xl/workbook.xml" in names else b""
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise InputError(f"{path}: not an Excel .xlsx workbook{_text_hint(content)}") from None
    except Exception as error:  # noqa: BLE001 - zlib and the like on a damaged archive
        raise InputError(f"{path}: not an Excel .xlsx workbook (a damaged zip: {_reason(error)})") from None
    if b"opendocument.spreadsheet" in mimetype:
        raise InputError(f"{path}: an OpenDocument spreadsheet (.ods), not an Excel .xlsx workbook: "
                         f"{_SAVE_AS_XLSX}")
    if "xl/workbook.bin" in names:
        raise InputError(f"{path}: an Excel binary workbook (.xlsb), which Kansli cannot read: "
                         f"{_SAVE_AS_XLSX}")
    if _STRICT_NAMESPACE in workbook_xml:
        raise InputError(f"{path}: a Strict Open XML workbook, which Kansli cannot read: {_SAVE_AS_XLSX} "
                         "(not 'Strict Open XML Spreadsheet')")
    if "word/document.xml" in names:
        raise InputError(f"{path}: a Word document, not an Excel .xlsx workbook")
    if not workbook_xml and not any(name.startswith("xl/") for name in names):
        raise InputError(f"{path}: not an Excel .xlsx workbook (a zip file without a workbook in it)")


def _ole2_kind(content: bytes) -> str:
    """What an OLE2 compound file holds, from its directory entry names (UTF-16 in the file)."""
    def has(name: str) -> bool:
        return name.encode("utf-16-le") in content

    if has("EncryptedPackage") or has("EncryptionInfo"):
        return "the workbook is password-protected (encrypted): save a copy without a password for the robot"
    if has("WordDocument"):
        return "an old Word .doc document, not an Excel .xlsx workbook"
    return f"an old Excel 97-2003 .xls workbook, which Kansli cannot read: {_SAVE_AS_XLSX}"


def _text_hint(content: bytes) -> str:
    sample = content[:2000]
    if not sample:
        return " (the file is empty)"
    if sample.startswith(b"PK"):
        return " (a damaged or incomplete zip file)"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return " (it holds text: a CSV or text export?)"


def _sheet(workbook: Workbook, path: Path, sheet: str | None) -> Worksheet:
    if sheet is None:
        if not workbook.worksheets:
            raise InputError(f"{path}: the workbook has no worksheets")
        return workbook.worksheets[0]
    if sheet not in workbook.sheetnames:
        names = ", ".join(repr(name) for name in workbook.sheetnames) or "none"
        raise InputError(f"{path}: no sheet named {sheet!r} (the sheets are {names})")
    chosen = workbook[sheet]
    if chosen not in workbook.worksheets:
        raise InputError(f"{path}: sheet {sheet!r} is a chart sheet, not a sheet of rows")
    return chosen
