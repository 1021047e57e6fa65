"""Build the invoice_inbox demo: 40 synthetic supplier invoices from 8 suppliers, as PDF and e-mail.

Reproducible (fixed seed, fixed PDF dates): the same seed gives the same bytes. Four layouts (label
lines, a two-column table, English labels, a compact one with two fields a line), four amount styles
and three date styles; one supplier is a sole trader whose organisation number is a personnummer,
and the home-care supplier names the client's personnummer. The bad ones, for manual handling:

* invoice 7: the OCR reference's check digit is wrong;
* invoice 14: no amount to pay;
* invoice 21: a scanned page (an image, no text layer);
* invoice 31: the same invoice number from the same supplier as invoice 30 (sent twice).

Invoice 38 comes in a message without a Message-ID. Usage::

    python -m demo.build_invoice_demo OUT_DIR     # OUT_DIR/faktura-NN.pdf and OUT_DIR/mail-NN.eml
"""

from __future__ import annotations

import io
import random
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

from fpdf import FPDF
from PIL import Image, ImageDraw

from shared.invoice import luhn_digit

SEED = 2026
COUNT = 40
BAD = {7: "ocr_check_digit", 14: "amount_missing", 21: "scanned", 31: "duplicate"}
NO_MESSAGE_ID = 38
FIXED_DATE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Supplier:
    name: str
    domain: str
    organisation_number: str
    layout: str
    bankgiro: str | None = None
    plusgiro: str | None = None


def _with_check(digits: str) -> str:
    return digits + luhn_digit(digits)


SUPPLIERS = [
    Supplier("Öresunds Städ AB", "oresundsstad.se", "556036-0793", "rader", bankgiro="5050-1055"),
    Supplier("Kontorsvaruhuset i Norden AB", "kontorsvaruhuset.se", "556677-8899", "tabell",
             bankgiro="297-3675"),
    Supplier("Nordic Facility Services AB", "nordicfacility.se", "556123-4567", "engelsk",
             bankgiro="5402-8923"),
    Supplier("Ängens Trädgård & Snöröjning", "angenstradgard.se", "780315-4517", "kompakt",
             plusgiro="4185-6"),
    Supplier("Bergslagens Bygg & Måleri AB", "bergslagensbygg.se", "556512-3381", "rader",
             plusgiro="90 20 30-4"),
    Supplier("Omsorg i Exempelby AB", "omsorgexempelby.se", "559012-3452", "tabell", bankgiro="5555-5551"),
    Supplier("Lindqvists Elektriska HB", "lindqvistsel.se", "969745-5553", "kompakt",
             bankgiro="123-4566"),
    Supplier("Datakraft Sverige AB", "datakraft.se", "556400-7770", "engelsk", bankgiro="5800-1234"),
]


def _fix_numbers() -> list[Supplier]:
    """The suppliers with every number's check digit computed (the literals give the other digits)."""
    fixed = []
    for supplier in SUPPLIERS:
        digits = supplier.organisation_number.replace("-", "")[:9]
        organisation = _with_check(digits)
        bankgiro = plusgiro = None
        if supplier.bankgiro:
            bg = _with_check(supplier.bankgiro.replace("-", "")[:-1])
            bankgiro = f"{bg[:-4]}-{bg[-4:]}"
        if supplier.plusgiro:
            pg = _with_check(supplier.plusgiro.replace("-", "").replace(" ", "")[:-1])
            plusgiro = f"{pg[:-1]}-{pg[-1]}"
        fixed.append(Supplier(supplier.name, supplier.domain, f"{organisation[:6]}-{organisation[6:]}",
                              supplier.layout, bankgiro, plusgiro))
    return fixed


@dataclass(frozen=True)
class DemoInvoice:
    number: int
    supplier: Supplier
    invoice_number: str
    ocr: str
    amount: Decimal
    invoice_date: date
    due_date: date
    bad: str | None
    client_personnummer: str | None

    @property
    def pdf_name(self) -> str:
        return f"faktura-{self.invoice_number}.pdf"

    @property
    def message_id(self) -> str | None:
        if self.number == NO_MESSAGE_ID:
            return None
        return f"<faktura-{self.number:02d}.{SEED}@{self.supplier.domain}>"


def plan(seed: int = SEED) -> list[DemoInvoice]:
    """The demo invoices (no files): the same seed, the same invoices."""
    rng = random.Random(seed)
    suppliers = _fix_numbers()
    invoices: list[DemoInvoice] = []
    for number in range(1, COUNT + 1):
        supplier = suppliers[(number - 1) % len(suppliers)]
        bad = BAD.get(number)
        invoice_date = date(2026, 11, 2) + timedelta(days=rng.randrange(25))
        invoice_number = f"{2026}-{rng.randrange(1000, 9999)}"
        if bad == "duplicate":
            supplier, invoice_number = invoices[-1].supplier, invoices[-1].invoice_number
        ocr = _with_check(str(rng.randrange(10**8, 10**11)))
        if bad == "ocr_check_digit":
            ocr = ocr[:-1] + str((int(ocr[-1]) + 3) % 10)
        cents = rng.randrange(40_000, 9_000_000)
        amount = Decimal(cents // 100) if supplier.layout == "kompakt" else Decimal(cents) / 100
        client = _personnummer(rng) if supplier.name.startswith("Omsorg") else None
        invoices.append(DemoInvoice(number, supplier, invoice_number, ocr, amount, invoice_date,
                                    invoice_date + timedelta(days=30), bad, client))
    return invoices


def _personnummer(rng: random.Random) -> str:
    born = date(1930, 1, 1) + timedelta(days=rng.randrange(20_000))
    digits = f"{born:%y%m%d}{rng.randrange(100, 999)}"
    return f"{digits[:6]}-{digits[6:]}{luhn_digit(digits)}"


def _amount_text(invoice: DemoInvoice) -> str:
    value = invoice.amount
    if invoice.supplier.layout == "engelsk":
        return f"SEK {value:.2f}"
    if invoice.supplier.layout == "kompakt":
        return f"{int(value):,}:-".replace(",", " ")
    text = f"{value:,.2f}".replace(",", " ").replace(".", ",")
    return text + " kr" if invoice.supplier.layout == "rader" else text.replace(" ", ".")


def _date_text(invoice: DemoInvoice, day: date) -> str:
    if invoice.supplier.layout == "kompakt":
        return f"{day.day}.{day.month}.{day.year}"
    if invoice.supplier.name.startswith("Bergslagens"):
        months = ["januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september",
                  "oktober", "november", "december"]
        return f"{day.day} {months[day.month - 1]} {day.year}"
    return day.isoformat()


def fields(invoice: DemoInvoice) -> list[tuple[str, str]]:
    """The invoice's labelled fields, in its supplier's words."""
    supplier = invoice.supplier
    english = supplier.layout == "engelsk"
    giro = [("Bankgiro", supplier.bankgiro)] if supplier.bankgiro else [("Plusgiro", str(supplier.plusgiro))]
    rows = [
        ("Invoice number" if english else "Fakturanummer", invoice.invoice_number),
        ("Corporate ID" if english else "Org.nr", supplier.organisation_number),
        ("Invoice date" if english else "Fakturadatum", _date_text(invoice, invoice.invoice_date)),
        ("Due date" if english else "Förfallodatum", _date_text(invoice, invoice.due_date)),
        ("OCR" if english else "OCR-nummer", invoice.ocr),
        *giro,
        ("Amount due" if english else "Att betala", _amount_text(invoice)),
    ]
    if invoice.bad == "amount_missing":
        rows = [row for row in rows if row[0] not in ("Att betala", "Amount due")]
    return rows


def _pdf(title: str) -> FPDF:
    pdf = FPDF()
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(title)
    pdf.set_producer("Kansli demo")
    pdf.add_page()
    return pdf


def render_pdf(invoice: DemoInvoice) -> bytes:
    if invoice.bad == "scanned":
        return _scanned(invoice)
    pdf = _pdf(f"Faktura {invoice.invoice_number}")
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, invoice.supplier.name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.cell(0, 7, "INVOICE" if invoice.supplier.layout == "engelsk" else "FAKTURA", new_x="LMARGIN",
             new_y="NEXT")
    pdf.cell(0, 7, "Till: Exempelby kommun, Ekonomiavdelningen, Box 100, 123 45 Exempelby", new_x="LMARGIN",
             new_y="NEXT")
    pdf.ln(4)
    rows = fields(invoice)
    layout = invoice.supplier.layout
    if layout == "tabell":
        with pdf.table(col_widths=(60, 100), first_row_as_headings=False) as table:
            for label, value in rows:
                row = table.row()
                row.cell(label)
                row.cell(value)
    elif layout == "kompakt":
        for pair in (rows[i:i + 2] for i in range(0, len(rows), 2)):
            line = "     ".join(f"{label} {value}" for label, value in pair)
            pdf.cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
    else:
        for label, value in rows:
            pdf.cell(0, 7, f"{label}: {value}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    if invoice.client_personnummer:
        pdf.cell(0, 7, f"Avser hemtjänst för brukare {invoice.client_personnummer}, november 2026",
                 new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "Vid betalning, ange OCR-numret. Dröjsmålsränta enligt räntelagen. "
                         "Frågor om fakturan: ring vår kundtjänst på vardagar 8-16.")
    return bytes(pdf.output())


def _scanned(invoice: DemoInvoice) -> bytes:
    """A photographed page: the text only as pixels."""
    image = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(image)
    lines = [invoice.supplier.name, "FAKTURA", *(f"{label}: {value}" for label, value in fields(invoice))]
    for index, line in enumerate(lines):
        draw.text((120, 140 + index * 60), line.encode("ascii", "replace").decode(), fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    pdf = _pdf(f"Skannad faktura {invoice.number}")
    pdf.image(buffer, x=0, y=0, w=210)
    return bytes(pdf.output())


def render_message(invoice: DemoInvoice, pdf: bytes) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"{invoice.supplier.name} <faktura@{invoice.supplier.domain}>"
    mail["To"] = "leverantorsfakturor@exempelby.se"
    mail["Subject"] = f"Faktura {invoice.invoice_number} från {invoice.supplier.name}"
    sent = FIXED_DATE + timedelta(minutes=17 * invoice.number)
    mail["Date"] = sent.strftime("%a, %d %b %Y %H:%M:%S +0000")
    if invoice.message_id:
        mail["Message-ID"] = invoice.message_id
    mail.set_content(f"Hej!\n\nBifogat finns faktura {invoice.invoice_number}.\n\nMed vänlig hälsning\n"
                     f"{invoice.supplier.name}\n")
    mail.add_attachment(pdf, maintype="application", subtype="pdf", filename=invoice.pdf_name)
    mail.set_boundary(f"kansli-demo-{SEED}-{invoice.number:02d}")  # not random: reproducible bytes
    return mail.as_bytes()


def build(folder: Path, seed: int = SEED) -> list[tuple[DemoInvoice, bytes]]:
    """Write every invoice's PDF and message into ``folder``; returns (invoice, message bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    built = []
    for invoice in plan(seed):
        pdf = render_pdf(invoice)
        (folder / f"faktura-{invoice.number:02d}.pdf").write_bytes(pdf)
        message = render_message(invoice, pdf)
        (folder / f"mail-{invoice.number:02d}.eml").write_bytes(message)
        built.append((invoice, message))
    return built


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "var/demo-mail/fakturor")
    built = build(folder)
    sys.stdout.write(f"{len(built)} invoices in {folder.resolve()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
