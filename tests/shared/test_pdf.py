"""PDF text and tables from PDFs of several makers; clear errors for encrypted, scanned and broken
files; Word to PDF/A-2b through one real LibreOffice, checked, with a hung or killed office."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import psutil
import pytest
from docx import Document
from fpdf import FPDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter

from shared.errors import InputError, TargetError
from shared.pdf import (
    ConversionError,
    PdfAError,
    PdfBrokenError,
    PdfEncryptedError,
    PdfNoTextError,
    check_pdfa,
    pdf_converter,
    read_pdf,
)
from shared.settings import PdfSettings

LETTER_TEXT = "Beslut om färdtjänst för Åsa Öberg i Ängelholm"


def fpdf_invoice(path: Path, *, font: str = "Helvetica") -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font(font, size=12)
    pdf.cell(0, 10, "Faktura 2026-117 från Öresunds Städ AB", new_x="LMARGIN", new_y="NEXT")
    with pdf.table() as table:
        for cells in (("Artikel", "Antal", "Belopp"), ("Städning", "4", "1 200,00"),
                      ("Fönsterputs", "1", "450,50")):
            row = table.row()
            for cell in cells:
                row.cell(cell)
    pdf.output(str(path))
    return path


def scanned_pdf(path: Path) -> Path:
    """A page that is only a picture of text, as a scanner makes it."""
    image = Image.new("RGB", (800, 400), "white")
    ImageDraw.Draw(image).text((40, 40), "Faktura 4711 - skannad", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    pdf = FPDF()
    pdf.add_page()
    pdf.image(buffer, x=10, y=10, w=180)
    pdf.output(str(path))
    return path


def encrypted(source: Path, path: Path, *, user: str, owner: str) -> Path:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user, owner_password=owner, algorithm="AES-256")
    with path.open("wb") as out:
        writer.write(out)
    return path


def word_letter(path: Path, text: str = LETTER_TEXT) -> Path:
    document = Document()
    document.add_heading("Exempelby kommun", level=1)
    document.add_paragraph(text)
    table = document.add_table(rows=2, cols=2)
    table.style = "Table Grid"
    table.cell(0, 0).text, table.cell(0, 1).text = "Diarienummer", "SBF 2026/0117"
    table.cell(1, 0).text, table.cell(1, 1).text = "Beslut", "Bifall"
    document.save(str(path))
    return path


# -- reading ------------------------------------------------------------------------------------


def test_text_and_tables_from_an_fpdf_invoice(tmp_path: Path) -> None:
    content = read_pdf(fpdf_invoice(tmp_path / "faktura.pdf"))
    assert "Faktura 2026-117 från Öresunds Städ AB" in content.text
    assert len(content.pages) == 1
    assert ["Fönsterputs", "1", "450,50"] in content.tables[0]


def test_permissions_only_encryption_reads_like_any_viewer(tmp_path: Path) -> None:
    source = fpdf_invoice(tmp_path / "plain.pdf")
    content = read_pdf(encrypted(source, tmp_path / "locked.pdf", user="", owner="ägarlösen"))
    assert "Öresunds Städ" in content.text


def test_a_pdf_needing_a_password_is_a_business_error(tmp_path: Path) -> None:
    source = fpdf_invoice(tmp_path / "plain.pdf")
    with pytest.raises(PdfEncryptedError, match="locked.pdf: the PDF is encrypted"):
        read_pdf(encrypted(source, tmp_path / "locked.pdf", user="hemligt", owner="ägarlösen"))


def test_a_scanned_pdf_without_text_is_a_business_error(tmp_path: Path) -> None:
    with pytest.raises(PdfNoTextError, match="skannad.pdf: the PDF has no text layer"):
        read_pdf(scanned_pdf(tmp_path / "skannad.pdf"))


@pytest.mark.parametrize("content", [b"", b"%PDF-1.7\n", b"not a pdf at all", b"PK\x03\x04" + b"\0" * 40])
def test_broken_files_are_business_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "trasig.pdf"
    path.write_bytes(content)
    with pytest.raises(PdfBrokenError, match="trasig.pdf: not a readable PDF"):
        read_pdf(path)


def test_a_truncated_pdf_is_broken_or_read_never_a_crash(tmp_path: Path) -> None:
    whole = fpdf_invoice(tmp_path / "hel.pdf").read_bytes()
    for cut in (len(whole) // 4, len(whole) // 2, len(whole) - 30):
        path = tmp_path / "avkapad.pdf"
        path.write_bytes(whole[:cut])
        try:
            content = read_pdf(path)
        except InputError as error:
            assert "avkapad.pdf" in str(error)
        else:
            assert "Faktura" in content.text


def test_a_missing_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(PdfBrokenError, match="saknas.pdf: file not found"):
        read_pdf(tmp_path / "saknas.pdf")


INVOICE_BYTES = bytearray()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000), keep=st.integers(min_value=0, max_value=100))
def test_any_bytes_give_content_or_one_input_error(tmp_path: Path, data: bytes, keep: int) -> None:
    if not INVOICE_BYTES:
        INVOICE_BYTES.extend(fpdf_invoice(tmp_path / "bas.pdf").read_bytes())
    whole = bytes(INVOICE_BYTES)
    path = tmp_path / "slump.pdf"
    path.write_bytes(whole[: len(whole) * keep // 100] + data)
    try:
        read_pdf(path)
    except InputError:
        pass


# -- PDF/A checks -------------------------------------------------------------------------------


def test_a_plain_pdf_is_not_pdfa_and_the_document_is_named(tmp_path: Path) -> None:
    with pytest.raises(PdfAError) as caught:
        check_pdfa(fpdf_invoice(tmp_path / "vanlig.pdf"), "beslut-17.docx")
    message = str(caught.value)
    assert message.startswith("beslut-17.docx: the converted PDF is not PDF/A-2b")
    assert "no XMP metadata" in message and "font Helvetica is not embedded" in message


def test_pdfa_identification_without_embedded_fonts_fails(tmp_path: Path) -> None:
    """A file claiming PDF/A-2b in its XMP while using a core font is caught by the font check."""
    writer = PdfWriter(clone_from=PdfReader(fpdf_invoice(tmp_path / "plain.pdf")))
    writer.xmp_metadata = (  # type: ignore[assignment]
        b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
        b' xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/" pdfaid:part="2" pdfaid:conformance="B"/>'
        b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )
    path = tmp_path / "falsk.pdf"
    with path.open("wb") as out:
        writer.write(out)
    with pytest.raises(PdfAError) as caught:
        check_pdfa(path)
    assert "identifies as" not in str(caught.value)
    assert "no PDF/A output intent" in str(caught.value) and "Helvetica is not embedded" in str(caught.value)


# -- Word to PDF/A through LibreOffice ----------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_letters_to_pdfa_through_one_libreoffice(tmp_path: Path) -> None:
    letters = [word_letter(tmp_path / f"beslut-{n}.docx", f"{LETTER_TEXT} nummer {n}") for n in range(3)]
    offices = []
    with pdf_converter(settings=PdfSettings()) as convert:
        for letter in letters:
            convert(letter, letter.with_suffix(".pdf"))
            offices.append(convert.pid)
        office = convert.pid
        assert office is not None and convert.starts == 1 and convert.converted == 3
        assert set(offices) == {office}, "a LibreOffice per document"
        assert psutil.Process(office).is_running()
    assert _gone(office), "LibreOffice still runs after the block"
    for n, letter in enumerate(letters):
        pdf = letter.with_suffix(".pdf")
        check_pdfa(pdf)
        content = read_pdf(pdf)
        assert f"nummer {n}" in content.text and "Ängelholm" in content.text
        assert ["Beslut", "Bifall"] in content.tables[0]
    assert not list(tmp_path.glob(".*.part")), "a temp file was left behind"


@pytest.mark.slow
def test_a_bad_document_is_named_and_the_office_goes_on(tmp_path: Path) -> None:
    bad = tmp_path / "trasigt.docx"
    bad.write_bytes(b"PK\x03\x04 this is no document")
    good = word_letter(tmp_path / "bra.docx")
    with pdf_converter(settings=PdfSettings()) as convert:
        with pytest.raises(ConversionError, match="trasigt.docx: LibreOffice could not convert it"):
            convert(bad, tmp_path / "trasigt.pdf")
        with pytest.raises(ConversionError, match="saknas.docx: file not found"):
            convert(tmp_path / "saknas.docx", tmp_path / "saknas.pdf")
        convert(good, tmp_path / "bra.pdf")
        assert convert.starts == 1
    assert not (tmp_path / "trasigt.pdf").exists()
    check_pdfa(tmp_path / "bra.pdf")


@pytest.mark.slow
def test_a_killed_office_is_a_target_error_and_is_started_again(tmp_path: Path) -> None:
    letter = word_letter(tmp_path / "brev.docx")
    with pdf_converter(settings=PdfSettings()) as convert:
        convert(letter, tmp_path / "ett.pdf")
        first = convert.pid
        assert first is not None
        os.killpg(first, signal.SIGKILL)
        psutil.wait_procs([psutil.Process(first)], timeout=10) if not _gone(first) else None
        try:
            convert(letter, tmp_path / "två.pdf")
        except TargetError:
            convert(letter, tmp_path / "två.pdf")  # the retry the item machinery would make
        assert convert.starts == 2 and convert.pid != first
    check_pdfa(tmp_path / "två.pdf")


@pytest.mark.slow
def test_a_hung_conversion_times_out_and_the_block_failing_kills_the_office(tmp_path: Path) -> None:
    letter = word_letter(tmp_path / "brev.docx")
    with pdf_converter(settings=PdfSettings()) as convert:
        convert(letter, tmp_path / "ett.pdf")
        office = convert.pid
        assert office is not None
        os.killpg(office, signal.SIGSTOP)  # LibreOffice hangs
        convert.settings = PdfSettings(timeout=1.0)
        with pytest.raises(TargetError, match="brev.docx: LibreOffice did not convert it"):
            convert(letter, tmp_path / "två.pdf")
        assert _gone(office)
    with pytest.raises(RuntimeError), pdf_converter(settings=PdfSettings()) as convert:
        convert(letter, tmp_path / "tre.pdf")
        office = convert.pid
        raise RuntimeError("the robot failed")
    assert office is not None and _gone(office)


def test_a_pdf_bomb_is_refused_before_text_extraction(tmp_path: Path) -> None:
    import zlib

    from pypdf.generic import NameObject, StreamObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=595, height=842)
    stream = StreamObject()
    stream.set_data(zlib.compress(b"q Q " * 10_000_000, 9))  # 40 MB of drawing, ~40 KB on disk
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(stream)
    path = tmp_path / "bomb.pdf"
    with path.open("wb") as out:
        writer.write(out)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(PdfBrokenError, match="bomb.pdf: its pages decompress to more than"):
        read_pdf(path)
