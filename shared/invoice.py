"""Swedish supplier invoices: the payment fields out of an invoice's text, each one checked.

:func:`parse_invoice` finds the invoice number, the supplier's organisation number, the OCR
reference, bankgiro or plusgiro, the amount to pay and the due date by their Swedish (or English)
labels, on the label's line or the line below it (table layouts), and checks them: OCR, bankgiro,
plusgiro and organisation number by their Luhn check digits, the amount as kronor with at most two
öre digits, the due date as a real date. Anything missing or wrong is one :class:`InvoiceFieldError`
naming the field (:func:`swedish_reason` says it for staff). It never guesses: an amount it cannot
read unambiguously ("1,234") is an error, not a number.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

from shared.errors import InputError
from shared.files import atomic_path

T = TypeVar("T")
MONTHS = {name: number for number, name in enumerate(
    ["januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september", "oktober",
     "november", "december"], start=1)}

#: Field -> (label in English messages and logs, label for staff).
FIELDS = {
    "invoice_number": ("invoice number", "Fakturanummer"),
    "organisation_number": ("organisation number", "Organisationsnummer"),
    "ocr": ("OCR reference", "OCR-nummer"),
    "giro": ("bankgiro/plusgiro", "Bankgiro/plusgiro"),
    "bankgiro": ("bankgiro", "Bankgiro"),
    "plusgiro": ("plusgiro", "Plusgiro"),
    "amount": ("amount to pay", "Belopp att betala"),
    "due_date": ("due date", "Förfallodatum"),
}
#: Problem -> (English, Swedish).
PROBLEMS = {
    "missing": ("is missing", "saknas"),
    "check_digit": ("fails its check digit", "har fel kontrollsiffra"),
    "format": ("is not in a known format", "har ett okänt format"),
}

_LABELS = {
    "invoice_number": r"faktura\s*(?:nummer|nr\.?|n:o)|fakturanr\.?|invoice\s*(?:number|no\.?)",
    "organisation_number": r"org(?:anisations)?\.?\s*-?\s*(?:nummer|nr\.?)|corporate\s+id(?:entity)?",
    "ocr": r"ocr(?:-?\s*(?:nummer|nr\.?|referens))?|referens\s*\(ocr\)|betalningsreferens",
    "bankgiro": r"bankgiro(?:nummer|nr)?|\bbg(?:-?nr)?\b",
    "plusgiro": r"plusgiro(?:nummer|nr)?|postgiro|\bpg(?:-?nr)?\b",
    "amount": r"(?:summa|belopp|totalt|totalbelopp)?\s*att\s+betala|amount\s+due|totalbelopp",
    "due_date": r"förfallodatum|förfallodag|förfaller|betalas\s+senast|sista\s+betalningsdag|due\s+date",
}
_VALUES = {
    "invoice_number": r"[A-Za-zÅÄÖåäö0-9][A-Za-zÅÄÖåäö0-9/-]{0,29}",
    "organisation_number": r"(?:16)?\d{6}-?\d{4}",
    "ocr": r"\d[\d ]{0,30}\d",
    "bankgiro": r"\d{3,4}-?\d{4}",
    "plusgiro": r"\d{1,7}-\d|\d{2,8}",
    "amount": r"(?:SEK|kr)?\s*-?\d[\d \u00a0.,]*\d(?:\s*(?:kr|SEK|:-))?|(?:SEK|kr)?\s*\d",
    "due_date": r"\d{4}-\d{2}-\d{2}|\d{8}|\d{1,2}\.\d{1,2}\.\d{4}|\d{1,2}\s+[a-zåäö]+\s+\d{4}",
}


class InvoiceFieldError(InputError):
    """A field of the invoice is missing, malformed, or fails its check digit."""

    def __init__(self, field: str, problem: str, document: str = "") -> None:
        self.field, self.problem = field, problem
        where = f"{document}: " if document else ""
        super().__init__(f"{where}{FIELDS[field][0]} {PROBLEMS[problem][0]}")


class DuplicateInvoiceError(InputError):
    """The same invoice (supplier and invoice number) came in another message before."""


@dataclass(frozen=True)
class Invoice:
    """The payment fields of one supplier invoice, checked."""

    invoice_number: str
    organisation_number: str
    ocr: str
    bankgiro: str | None
    plusgiro: str | None
    amount: Decimal
    due_date: date

    @property
    def identity(self) -> str:
        """The same invoice sent twice has the same identity: supplier and invoice number."""
        return f"{self.organisation_number}:{self.invoice_number.upper()}"


class InvoiceBook:
    """The invoices received, one JSON file per message key in ``folder``, indexed by identity.

    :meth:`record` keeps a message's invoice (again for the same message: the same file, so a
    retried item is no duplicate); an invoice already recorded for another message raises
    :class:`DuplicateInvoiceError`. The files hold the supplier's organisation number, which for a
    sole trader is a personnummer: keep the folder with the robot's output, not in logs or the run
    history (item outputs should carry the invoice number and amount only).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._by_identity: dict[str, str] = {}
        for path in folder.glob("*.json"):
            record = json.loads(path.read_text(encoding="utf-8"))
            self._by_identity.setdefault(record["identity"], record["key"])

    def _path(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def record(self, key: str, invoice: Invoice) -> None:
        earlier = self._by_identity.get(invoice.identity)
        if earlier is not None and earlier != key:
            raise DuplicateInvoiceError(f"invoice {invoice.invoice_number} from this supplier was already "
                                        "received in another message")
        data = {"key": key, "identity": invoice.identity, **asdict(invoice)}
        with atomic_path(self._path(key)) as temporary:
            temporary.write_text(json.dumps(data, default=str, ensure_ascii=False), encoding="utf-8")
        self._by_identity[invoice.identity] = key

    def get(self, key: str) -> Invoice | None:
        path = self._path(key)
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return Invoice(invoice_number=data["invoice_number"], organisation_number=data["organisation_number"],
                       ocr=data["ocr"], bankgiro=data["bankgiro"], plusgiro=data["plusgiro"],
                       amount=Decimal(data["amount"]), due_date=date.fromisoformat(data["due_date"]))


def luhn_ok(digits: str) -> bool:
    """The mod-10 (Luhn) check over ``digits``, the last digit being the check digit."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def luhn_digit(digits: str) -> str:
    """The check digit that makes ``digits`` + it pass :func:`luhn_ok`."""
    return next(str(d) for d in range(10) if luhn_ok(digits + str(d)))


def find_field(text: str, field: str) -> str | None:
    """The raw value after ``field``'s label on its line, or alone on the next line."""
    label = re.compile(rf"(?:^|[^\wåäö])(?:{_LABELS[field]})\s*[:.]?\s*", re.IGNORECASE)
    value = re.compile(rf"^({_VALUES[field]})(?![\w])", re.IGNORECASE)
    whole = re.compile(rf"({_VALUES[field]})", re.IGNORECASE)
    lines = text.splitlines()
    for number, line in enumerate(lines):
        for match in label.finditer(line):
            rest = line[match.end():].strip()
            found = value.match(rest) if rest else None
            if found is None and not rest and number + 1 < len(lines):
                found = whole.fullmatch(lines[number + 1].strip())  # a value alone on the next line
            if found:
                return found.group(1).strip()
    return None


#: Kronor digits before the decimal point an amount may have (up to 999 999 999 999 kr).
MAX_AMOUNT_DIGITS = 12


def parse_amount(raw: str) -> Decimal:
    """``12 345,50 kr``, ``SEK 12345.50``, ``12.345,50``, ``1 234:-`` as a Decimal; ambiguous raises."""
    text = re.sub(r"(?i)sek|kr|:-", "", raw).replace("\u00a0", " ").strip()
    text = text.replace(" ", "")
    if not re.fullmatch(r"-?[\d.,]+", text) or not text.strip("-"):
        raise ValueError(raw)
    separators = [char for char in text if char in ".,"]
    if separators:
        decimal = text.rfind(separators[-1])
        decimals = text[decimal + 1:]
        grouping = separators[:-1]
        if len(set(separators)) == 1 and len(separators) > 1:
            decimal, decimals, grouping = -1, "", separators  # 1.234.567 or 1,234,567: only groups
        elif len(set(separators)) == 1 and len(decimals) == 3:
            raise ValueError(raw)  # "1,234": a thousand, or one and a bit? Never guess.
        whole = text[:decimal] if decimal >= 0 else text
        if grouping and not re.fullmatch(r"-?\d{1,3}(?:[.,]\d{3})+", whole):
            raise ValueError(raw)
        if decimal >= 0 and not re.fullmatch(r"\d{1,2}", decimals):
            raise ValueError(raw)
        text = re.sub(r"[.,]", "", whole) + (f".{decimals}" if decimal >= 0 else "")
    if len(text.split(".")[0].lstrip("-")) > MAX_AMOUNT_DIGITS:
        raise ValueError(raw)  # no invoice is that large: a misread number, or not an amount
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(raw) from None


def parse_date(raw: str) -> date:
    """``2026-12-20``, ``20261220``, ``20.12.2026`` or ``20 december 2026``."""
    text = raw.strip().lower()
    if match := re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})", text):
        year, month, day = (int(part) for part in match.groups())
    elif match := re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", text):
        day, month, year = (int(part) for part in match.groups())
    elif (match := re.fullmatch(r"(\d{1,2})\s+([a-zåäö]+)\s+(\d{4})", text)) and match.group(2) in MONTHS:
        day, month, year = int(match.group(1)), MONTHS[match.group(2)], int(match.group(3))
    else:
        raise ValueError(raw)
    return date(year, month, day)


def parse_invoice(text: str, document: str = "") -> Invoice:
    """The checked payment fields of the invoice whose text is ``text`` (``document`` names it)."""
    raw = {field: find_field(text, field) for field in _LABELS}
    for field in ("invoice_number", "organisation_number", "ocr", "amount", "due_date"):
        if raw[field] is None:
            raise InvoiceFieldError(field, "missing", document)
    organisation = _checked(raw["organisation_number"], "organisation_number", document)[-10:]
    if len(organisation) != 10 or not luhn_ok(organisation):
        raise InvoiceFieldError("organisation_number", "check_digit", document)
    ocr = _digits(raw["ocr"])
    if not 2 <= len(ocr) <= 25:
        raise InvoiceFieldError("ocr", "format", document)
    ocr = _checked(ocr, "ocr", document)
    bankgiro = _checked(raw["bankgiro"], "bankgiro", document) if raw["bankgiro"] else None
    plusgiro = _checked(raw["plusgiro"], "plusgiro", document) if raw["plusgiro"] else None
    if bankgiro is None and plusgiro is None:
        raise InvoiceFieldError("giro", "missing", document)
    amount = _parsed(parse_amount, raw["amount"], "amount", document)
    if amount <= 0:
        raise InvoiceFieldError("amount", "format", document)
    return Invoice(
        invoice_number=str(raw["invoice_number"]),
        organisation_number=f"{organisation[:6]}-{organisation[6:]}", ocr=ocr,
        bankgiro=f"{bankgiro[:-4]}-{bankgiro[-4:]}" if bankgiro else None,
        plusgiro=f"{plusgiro[:-1]}-{plusgiro[-1]}" if plusgiro else None,
        amount=amount, due_date=_parsed(parse_date, raw["due_date"], "due_date", document),
    )


def _digits(raw: str | None) -> str:
    return re.sub(r"\D", "", raw or "")


def _checked(raw: str | None, field: str, document: str) -> str:
    """The digits of ``raw``, their Luhn check digit verified."""
    digits = _digits(raw)
    if not luhn_ok(digits):
        raise InvoiceFieldError(field, "check_digit", document)
    return digits


def _parsed(parse: Callable[[str], T], raw: str | None, field: str, document: str) -> T:
    try:
        return parse(raw or "")
    except ValueError:
        raise InvoiceFieldError(field, "format", document) from None


def swedish_reason(error_class: str | None, error: str | None) -> str:
    """The reason an invoice needs a person, in Swedish, from an item's error class and message."""
    if error_class == "InvoiceFieldError" and error:
        for english, swedish in FIELDS.values():
            for problem_en, problem_sv in PROBLEMS.values():
                if f"{english} {problem_en}" in error:
                    return f"{swedish} {problem_sv}"
    return REASONS.get(error_class or "", "Okänt fel – se körningens logg")


REASONS = {
    "AttachmentTooLargeError": "Bilagan är större än tillåtet",
    "AttachmentTypeError": "Bilaga av en typ som inte tas emot",
    "ZipBombError": "Bilagan är en misstänkt zip-bomb eller en trasig zip-fil",
    "NoAttachmentError": "Ingen PDF-faktura bifogad",
    "PdfEncryptedError": "PDF-filen är lösenordsskyddad",
    "PdfNoTextError": "PDF-filen saknar text (inskannad bild) – registrera fakturan för hand",
    "PdfBrokenError": "PDF-filen går inte att läsa",
    "DuplicateInvoiceError": "Fakturan har redan kommit i ett annat meddelande (dubblett)",
    "InputError": "Fel i indata",
    "AttachmentCountError": "Flera PDF-bilagor i samma meddelande – välj fakturan för hand",
    "TargetUnavailableError": "Tekniskt fel: servern svarade inte – försöks igen vid nästa körning",
}
