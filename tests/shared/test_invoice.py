"""Invoice fields out of text in many layouts, check digits, amounts and dates; what is wrong is one
InvoiceFieldError naming the field; the book finds duplicates; reasons read in Swedish."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo.build_invoice_demo import fields, plan
from shared.invoice import (
    DuplicateInvoiceError,
    InvoiceBook,
    InvoiceFieldError,
    luhn_digit,
    luhn_ok,
    parse_amount,
    parse_date,
    parse_invoice,
    swedish_reason,
)

LINES = """Öresunds Städ AB
FAKTURA
Fakturanummer: 2026-1042
Org.nr: 556036-0793
Förfallodatum: 2026-12-20
OCR-nummer: 1234567897
Bankgiro: 5050-1055
Att betala: 12 345,50 kr
"""

TABLE = """Kontorsvaruhuset i Norden AB
Faktura nr
A-77/3
Organisationsnummer
5560360793
Betalas senast 20.12.2026   Referens (OCR) 12 3456 7897
PG 4185-5
Summa att betala SEK 1 200
"""

ENGLISH = """Nordic Facility Services AB
INVOICE
Invoice number: INV-2026-88
Corporate ID: 556036-0793
Due date: 2026-12-20
OCR: 1234567897
Bankgiro: 5050-1055
Amount due: SEK 12345.50
"""


def test_fields_by_their_labels_in_three_layouts() -> None:
    lines = parse_invoice(LINES)
    assert (lines.invoice_number, lines.organisation_number, lines.ocr) == ("2026-1042", "556036-0793",
                                                                            "1234567897")
    assert (lines.bankgiro, lines.plusgiro, lines.amount, lines.due_date) == (
        "5050-1055", None, Decimal("12345.50"), date(2026, 12, 20))
    table = parse_invoice(TABLE)
    assert (table.invoice_number, table.organisation_number, table.ocr, table.plusgiro) == (
        "A-77/3", "556036-0793", "1234567897", "4185-5")
    assert table.amount == Decimal("1200") and table.due_date == date(2026, 12, 20)
    english = parse_invoice(ENGLISH)
    assert english.invoice_number == "INV-2026-88" and english.amount == Decimal("12345.50")
    assert english.identity == "556036-0793:INV-2026-88"


@pytest.mark.parametrize(("change", "field", "problem"), [
    (("OCR-nummer: 1234567897", "OCR-nummer: 1234567891"), "OCR reference", "fails its check digit"),
    (("OCR-nummer: 1234567897", "OCR-nummer: 7"), "OCR reference", "is missing"),
    (("Bankgiro: 5050-1055", "Bankgiro: 5050-1056"), "bankgiro", "fails its check digit"),
    (("Bankgiro: 5050-1055", ""), "bankgiro/plusgiro", "is missing"),
    (("Org.nr: 556036-0793", "Org.nr: 556036-0794"), "organisation number", "fails its check digit"),
    (("Att betala: 12 345,50 kr", ""), "amount to pay", "is missing"),
    (("Att betala: 12 345,50 kr", "Att betala: 12,345 kr"), "amount to pay", "is not in a known format"),
    (("Att betala: 12 345,50 kr", "Att betala: 0,00 kr"), "amount to pay", "is not in a known format"),
    (("Förfallodatum: 2026-12-20", "Förfallodatum: 2026-02-30"), "due date", "is not in a known format"),
    (("Fakturanummer: 2026-1042", "Fakturanummer:"), "invoice number", "is missing"),
])
def test_a_wrong_field_is_named(change: tuple[str, str], field: str, problem: str) -> None:
    with pytest.raises(InvoiceFieldError) as caught:
        parse_invoice(LINES.replace(*change), "faktura.pdf")
    assert str(caught.value) == f"faktura.pdf: {field} {problem}"


@given(st.text(alphabet="0123456789", min_size=1, max_size=24), st.integers(min_value=0), st.integers(1, 9))
def test_luhn_finds_every_single_digit_error(body: str, where: int, delta: int) -> None:
    number = body + luhn_digit(body)
    assert luhn_ok(number)
    index = where % len(number)
    wrong = number[:index] + str((int(number[index]) + delta) % 10) + number[index + 1:]
    assert not luhn_ok(wrong)


@given(st.integers(min_value=1, max_value=10**9), st.sampled_from(["sv", "sv-kr", "dot", "sek", "whole"]))
def test_amounts_read_back_in_every_style(cents: int, style: str) -> None:
    value = Decimal(cents) / 100
    grouped = f"{value:,.2f}"
    text = {"sv": grouped.replace(",", " ").replace(".", ","),
            "sv-kr": grouped.replace(",", "\u00a0").replace(".", ",") + " kr",
            "dot": grouped.replace(",", "X").replace(".", ",").replace("X", "."),
            "sek": f"SEK {value:.2f}", "whole": f"{cents:,}:-".replace(",", " ")}[style]
    expected = Decimal(cents) if style == "whole" else value
    assert parse_amount(text) == expected


@given(st.text(max_size=40))
def test_any_amount_text_is_read_or_refused_never_misread(text: str) -> None:
    try:
        amount = parse_amount(text)
    except ValueError:
        return
    digits = "".join(char for char in text if char.isdigit())
    assert digits.lstrip("0") == str(abs(amount)).replace(".", "").lstrip("0") or amount == 0


def test_dates_in_three_styles() -> None:
    day = date(2026, 12, 20)
    assert parse_date("2026-12-20") == parse_date("20261220") == parse_date("20.12.2026") == day
    assert parse_date("3 mars 2027") == date(2027, 3, 3)
    for bad in ("12/20/2026", "20 decembre 2026", "2026-13-01"):
        with pytest.raises(ValueError):
            parse_date(bad)


def test_every_demo_layout_parses_to_its_fields() -> None:
    for invoice in plan():
        if invoice.bad:
            continue
        separator = ": " if invoice.supplier.layout == "rader" else " "
        text = "\n".join(f"{label}{separator}{value}" for label, value in fields(invoice))
        parsed = parse_invoice(text)
        assert (parsed.invoice_number, parsed.ocr, parsed.amount, parsed.due_date) == (
            invoice.invoice_number, invoice.ocr, invoice.amount, invoice.due_date)


def test_the_book_finds_an_invoice_sent_twice(tmp_path: Path) -> None:
    invoice = parse_invoice(LINES)
    book = InvoiceBook(tmp_path / "bok")
    book.record("<a@x>", invoice)
    book.record("<a@x>", invoice)  # the same message again (a retried item): no duplicate
    with pytest.raises(DuplicateInvoiceError, match="2026-1042 from this supplier was already received"):
        InvoiceBook(tmp_path / "bok").record("<b@x>", invoice)
    assert book.get("<a@x>") == invoice and book.get("<b@x>") is None


def test_reasons_in_swedish() -> None:
    assert swedish_reason("InvoiceFieldError", "x.pdf: OCR reference fails its check digit") == \
        "OCR-nummer har fel kontrollsiffra"
    assert swedish_reason("InvoiceFieldError", "x.pdf: bankgiro/plusgiro is missing") == \
        "Bankgiro/plusgiro saknas"
    assert swedish_reason("PdfNoTextError", "...").startswith("PDF-filen saknar text")
    assert swedish_reason("SomethingNew", None).startswith("Okänt fel")


@pytest.mark.slow
def test_an_invoice_made_in_word_and_printed_by_libreoffice(tmp_path: Path) -> None:
    """Another PDF producer (LibreOffice, embedded fonts, a Word table) than the demo's fpdf2."""
    from docx import Document

    from shared.pdf import pdf_converter, read_pdf
    from shared.settings import PdfSettings

    document = Document()
    document.add_heading("Städbolaget Åström & Dotter AB", level=1)
    document.add_paragraph("FAKTURA")
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for label, value in (("Fakturanr", "ÅD-2026-004"), ("Organisationsnummer", "556036-0793"),
                         ("Förfallodag", "15 januari 2027"), ("Betalningsreferens", "1234 5678 97"),
                         ("Bankgiro", "5050-1055"), ("Totalt att betala", "3 750,00 SEK")):
        cells = table.add_row().cells
        cells[0].text, cells[1].text = label, value
    document.save(str(tmp_path / "faktura.docx"))
    with pdf_converter(settings=PdfSettings()) as convert:
        pdf = convert(tmp_path / "faktura.docx", tmp_path / "faktura.pdf")
    invoice = parse_invoice(read_pdf(pdf).text, pdf.name)
    assert (invoice.invoice_number, invoice.ocr) == ("ÅD-2026-004", "1234567897")
    assert (invoice.bankgiro, invoice.organisation_number) == ("5050-1055", "556036-0793")
    assert (invoice.amount, invoice.due_date) == (Decimal("3750.00"), date(2027, 1, 15))
