"""The two steps of the application form: their fields and server-side validation (in Swedish)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

CASE_TYPES = (
    "Bostadsanpassningsbidrag",
    "Färdtjänst",
    "Parkeringstillstånd för rörelsehindrade",
    "Ekonomiskt bistånd",
    "Serveringstillstånd",
)
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024

_PERSONNUMMER = re.compile(r"(\d{2})?(\d{6})[-+]?(\d{4})")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]{2,}")
_PHONE = re.compile(r"\+?[\d\s()-]{7,20}")
_POSTNUMMER = re.compile(r"\d{3} ?\d{2}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Field:
    """One form field as the templates render it."""

    name: str
    label: str
    kind: str = "text"
    required: bool = True
    hint: str = ""
    autocomplete: str = ""
    max_length: int = 100


APPLICANT_FIELDS = (
    Field("namn", "Namn", autocomplete="name"),
    Field("personnummer", "Personnummer", hint="ÅÅÅÅMMDD-NNNN eller ÅÅMMDD-NNNN", max_length=13),
    Field("epost", "E-post", kind="email", autocomplete="email", max_length=254),
    Field("telefon", "Telefon", kind="tel", required=False, autocomplete="tel", max_length=20),
    Field("adress", "Utdelningsadress", autocomplete="street-address"),
    Field("postnummer", "Postnummer", hint="NNN NN", autocomplete="postal-code", max_length=6),
    Field("postort", "Postort", autocomplete="address-level2", max_length=50),
)
ERRAND_FIELDS = (
    Field("arendetyp", "Ärendetyp", kind="select"),
    Field("startdatum", "Önskat startdatum", kind="date", max_length=10),
    Field("beskrivning", "Beskrivning", kind="textarea", max_length=2000),
    Field("referens", "Er referens", hint="Er egen referens, t.ex. PA-2026-0001", max_length=40),
)
CONSENT_LABEL = "Jag intygar att uppgifterna är riktiga"
ATTACHMENT_LABEL = "Bilaga"

_REQUIRED_MESSAGES = {
    "namn": "Ange namn.",
    "personnummer": "Ange personnummer.",
    "epost": "Ange e-postadress.",
    "adress": "Ange utdelningsadress.",
    "postnummer": "Ange postnummer.",
    "postort": "Ange postort.",
    "arendetyp": "Välj ärendetyp.",
    "startdatum": "Ange önskat startdatum.",
    "beskrivning": "Beskriv ärendet.",
    "referens": "Ange er referens.",
}

Errors = dict[str, str]


def luhn_valid(digits: str) -> bool:
    """The Luhn check over the ten digits ``YYMMDDNNNC``."""
    total = 0
    for index, char in enumerate(digits):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def personnummer_error(text: str) -> str | None:
    """Why ``text`` is not a personnummer (or samordningsnummer), or None when it is one."""
    match = _PERSONNUMMER.fullmatch(text)
    if match is None:
        return "Ange personnummer med 10 eller 12 siffror: ÅÅÅÅMMDD-NNNN eller ÅÅMMDD-NNNN."
    date_part, tail = match.group(2), match.group(3)
    month, day = int(date_part[2:4]), int(date_part[4:6])
    if not 1 <= month <= 12 or not (1 <= day <= 31 or 61 <= day <= 91):
        return "Personnumret innehåller inget giltigt datum."
    if not luhn_valid(date_part + tail):
        return "Personnumret har fel kontrollsiffra. Kontrollera numret."
    return None


def _clean(form: Mapping[str, str], fields: tuple[Field, ...]) -> tuple[dict[str, str], Errors]:
    values = {item.name: str(form.get(item.name, "") or "").strip() for item in fields}
    errors: Errors = {}
    for item in fields:
        value = values[item.name]
        if item.required and not value:
            errors[item.name] = _REQUIRED_MESSAGES[item.name]
        elif len(value) > item.max_length:
            errors[item.name] = f"{item.label} får vara högst {item.max_length} tecken."
    return values, errors


def validate_applicant(form: Mapping[str, str]) -> tuple[dict[str, str], Errors]:
    """Step 1, "Sökande": the cleaned values and an error message per bad field."""
    values, errors = _clean(form, APPLICANT_FIELDS)
    checks = {
        "personnummer": personnummer_error(values["personnummer"]),
        "epost": None
        if _EMAIL.fullmatch(values["epost"])
        else "Ange en giltig e-postadress, t.ex. namn@exempel.se.",
        "telefon": None
        if not values["telefon"] or _PHONE.fullmatch(values["telefon"])
        else "Ange ett giltigt telefonnummer, t.ex. 070-123 45 67.",
        "postnummer": None
        if _POSTNUMMER.fullmatch(values["postnummer"])
        else "Ange postnummer med fem siffror, t.ex. 123 45.",
    }
    for name, message in checks.items():
        if message and name not in errors:
            errors[name] = message
    return values, errors


def start_date_error(text: str, today: date) -> str | None:
    """Why ``text`` is not an acceptable start date, or None."""
    if not _ISO_DATE.fullmatch(text):
        return "Ange datumet som ÅÅÅÅ-MM-DD."
    try:
        chosen = date.fromisoformat(text)
    except ValueError:
        return "Datumet finns inte. Ange ett giltigt datum."
    if chosen < today - timedelta(days=365):
        return "Startdatumet får inte ligga mer än ett år bakåt i tiden."
    return None


def validate_errand(
    form: Mapping[str, str], today: date | None = None
) -> tuple[dict[str, str], Errors]:
    """Step 2, "Ärende" (without the attachment): cleaned values and errors."""
    values, errors = _clean(form, ERRAND_FIELDS)
    values["intygande"] = "ja" if form.get("intygande") else ""
    if "arendetyp" not in errors and values["arendetyp"] not in CASE_TYPES:
        errors["arendetyp"] = "Välj en ärendetyp i listan."
    if "startdatum" not in errors:
        message = start_date_error(values["startdatum"], today or date.today())
        if message:
            errors["startdatum"] = message
    if not values["intygande"]:
        errors["intygande"] = "Du måste intyga att uppgifterna är riktiga."
    return values, errors
