"""Register the supplier invoices of the shared mailbox and deliver the register to finance.

Every message of the mailbox folder is an item keyed by its Message-ID. Its PDF attachment is read,
and the invoice number, the supplier's organisation number, the OCR reference, bankgiro or plusgiro,
the amount and the due date are found and checked (check digits, formats; an invoice number the
supplier sent before is a duplicate). The run's invoice register (Excel) is delivered to the finance
system's import folder over SFTP, exactly once, and every message is filed: ``Behandlat``, or
``Manuell hantering`` with the reason in the staff workbook ``inkorg-RUN.xlsx``. A re-run skips the
messages already done and files the ones a crash left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from shared.errors import InputError
from shared.excel import write_table
from shared.invoice import Invoice, InvoiceBook, parse_invoice, swedish_reason
from shared.items import ItemResult, WorkItem
from shared.registry import robot

if TYPE_CHECKING:  # imported when the robot runs, not when robots are listed (asyncssh, pdfplumber, ...)
    from shared.runner import Run
    from shared.transfer import Outbox

DEFAULT_OUTPUT = Path("var/out/invoice_inbox")
REGISTER_HEADER = ("Fakturanummer", "Organisationsnummer", "OCR-nummer", "Bankgiro", "Plusgiro",
                   "Belopp (kr)", "Förfallodatum", "Meddelande-ID")
STAFF_HEADER = ("Status", "Avsändare", "Ämne", "Fakturanummer", "Belopp (kr)", "Orsak", "Meddelande-ID")
STATUS = {"done": "Behandlad", "skipped": "Behandlad tidigare", "business_error": "Manuell hantering",
          "app_error": "Tekniskt fel – försöks igen"}


class AttachmentCountError(InputError):
    """A message with more than one PDF: which one is the invoice is for a person to say."""


@robot()
def invoice_inbox(run: Run, upload_dir: str = "import", output_dir: Path = DEFAULT_OUTPUT) -> None:
    """Register the supplier invoices of the shared mailbox and deliver the register to finance."""
    from shared.mailbox import Mailbox
    from shared.pdf import read_pdf
    from shared.transfer import Outbox

    book = InvoiceBook(output_dir / "fakturor")
    outbox = Outbox(output_dir / "utkorg")
    with Mailbox.from_run(run) as mailbox:
        messages = mailbox.messages()
        logger.info("{} message(s) in the mailbox", len(messages))

        def read_invoice(item: WorkItem) -> dict[str, str]:
            pdfs = mailbox.save_attachments(item)
            if len(pdfs) > 1:
                raise AttachmentCountError(f"message {item.key}: {len(pdfs)} PDF attachments, one expected")
            invoice = parse_invoice(read_pdf(pdfs[0], tables=False).text, pdfs[0].name)
            book.record(item.key, invoice)
            return {"invoice": invoice.invoice_number, "amount": str(invoice.amount)}

        results = run.process(mailbox.items(messages), read_invoice, total=len(messages))
        register = new_register(run, results, book, outbox, output_dir)
        mailbox.file(results)
    deliver(run, outbox, upload_dir)
    staff = write_table(output_dir / f"inkorg-{run.run_id}.xlsx", "Inkorg", STAFF_HEADER,
                        (staff_row(result) for result in results))
    logger.info("register {}; staff workbook {}", register or "(nothing new)", staff)


def new_register(run: Run, results: list[ItemResult], book: InvoiceBook, outbox: Outbox,
                 output_dir: Path) -> Path | None:
    """The register of the invoices done and in no earlier register, put in the outbox."""
    delivered = outbox.keys()
    invoices = [(result.key, book.get(result.key)) for result in results
                if result.ok and result.key not in delivered]
    rows = [register_row(key, invoice) for key, invoice in invoices if invoice is not None]
    if not rows:
        return None
    path = write_table(output_dir / f"fakturaregister-{run.run_id}.xlsx", "Fakturor", REGISTER_HEADER, rows)
    return outbox.add(path, [key for key, invoice in invoices if invoice is not None])


def register_row(key: str, invoice: Invoice) -> list[object]:
    return [invoice.invoice_number, invoice.organisation_number, invoice.ocr, invoice.bankgiro or "",
            invoice.plusgiro or "", invoice.amount, invoice.due_date, key]


def deliver(run: Run, outbox: Outbox, upload_dir: str) -> None:
    """Upload every register not yet delivered (this run's, and any a crash left behind)."""
    if not outbox.pending():
        return
    from shared.transfer import sftp_connection

    with sftp_connection(run) as sftp:
        for sent in outbox.deliver(sftp, upload_dir):
            logger.info("delivered {} (sha256 {})", sent.destination, sent.sha256)


def staff_row(result: ItemResult) -> list[object]:
    from shared.mailbox import MailItem

    mail = result.data if isinstance(result.data, MailItem) else None
    output = result.output if isinstance(result.output, dict) else {}
    reason = "" if result.ok else swedish_reason(result.error_class, result.error)
    sender, subject = (mail.sender, mail.subject) if mail else ("", "")
    return [STATUS.get(result.outcome, result.outcome), sender, subject, output.get("invoice", ""),
            output.get("amount", ""), reason, result.key]
