"""The invoice demo is reproducible and holds the invoices it says: 40 from 8 suppliers, 4 bad."""

from __future__ import annotations

from email import message_from_bytes
from pathlib import Path

import pytest

from demo.build_invoice_demo import BAD, NO_MESSAGE_ID, build
from shared.errors import InputError
from shared.invoice import DuplicateInvoiceError, InvoiceBook, InvoiceFieldError, parse_invoice
from shared.pdf import PdfNoTextError, read_pdf


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    assert [message for _, message in first] == [message for _, message in second]
    assert [p.read_bytes() for p in sorted((tmp_path / "a").glob("*.pdf"))] == \
        [p.read_bytes() for p in sorted((tmp_path / "b").glob("*.pdf"))]


def test_forty_invoices_eight_suppliers_and_the_bad_ones_fail_as_planned(tmp_path: Path) -> None:
    built = build(tmp_path)
    assert len(built) == 40 and len({invoice.supplier.name for invoice, _ in built}) == 8
    book = InvoiceBook(tmp_path / "bok")
    failures: dict[int, type[InputError]] = {}
    for invoice, raw in built:
        message = message_from_bytes(raw)
        assert (message["Message-ID"] is None) == (invoice.number == NO_MESSAGE_ID)
        path = tmp_path / f"faktura-{invoice.number:02d}.pdf"
        try:
            parsed = parse_invoice(read_pdf(path).text, path.name)
            book.record(str(invoice.number), parsed)
        except InputError as error:
            failures[invoice.number] = type(error)
            continue
        assert (parsed.invoice_number, parsed.ocr, parsed.amount, parsed.due_date) == (
            invoice.invoice_number, invoice.ocr, invoice.amount, invoice.due_date)
        assert parsed.organisation_number == invoice.supplier.organisation_number
        assert (parsed.bankgiro, parsed.plusgiro) == (invoice.supplier.bankgiro, invoice.supplier.plusgiro)
    assert failures == {7: InvoiceFieldError, 14: InvoiceFieldError, 21: PdfNoTextError,
                        31: DuplicateInvoiceError}
    assert set(failures) == set(BAD)


@pytest.mark.parametrize("number", [1, 4, 5, 39])
def test_the_layouts_differ(tmp_path: Path, number: int) -> None:
    built = dict((invoice.number, invoice) for invoice, _ in build(tmp_path))
    text = read_pdf(tmp_path / f"faktura-{number:02d}.pdf").text
    assert built[number].supplier.name in text
