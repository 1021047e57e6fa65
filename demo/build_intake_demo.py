"""Build ``demo/data/intake.xlsx``: paper applications to be re-keyed into the demo e-service.

Run from the repository root::

    .venv/bin/python demo/build_intake_demo.py

The workbook has one sheet, "Inkomna ansökningar": a register of 100 paper applications to
Exempelby kommun, one row each, which the web-form robot types into the demo e-service
(``python -m demo.site``). The columns map one to one onto the e-service's fields:

    Referens          -> "Er referens" (unique, "PA-2026-0001" ...; the robot looks cases up by it)
    Namn              -> "Namn"
    Personnummer      -> "Personnummer" (YYYYMMDD-NNNN, valid check digit)
    E-post            -> "E-post"
    Telefon           -> "Telefon"
    Utdelningsadress  -> "Utdelningsadress"
    Postnummer        -> "Postnummer" ("NNN NN")
    Postort           -> "Postort"
    Ärendetyp         -> "Ärendetyp" (one of the five options of the e-service's list)
    Startdatum        -> "Önskat startdatum" (a real Excel date, always in 2027)
    Beskrivning       -> "Beskrivning"

The build is deterministic (fixed seed, fixed timestamps, fixed zip entry dates), so rebuilding
gives a byte-identical file. Five rows are deliberately bad; see ``BAD_ROWS``.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from demo.synthetic import make_personnummer, normalise_ooxml

DEMO_DIR = Path(__file__).resolve().parent
INTAKE_PATH = DEMO_DIR / "data" / "intake.xlsx"

SEED = 20261125
N_ROWS = 100
SHEET_NAME = "Inkomna ansökningar"
KOMMUN = "Exempelby kommun"
FIXED_TIMESTAMP = dt.datetime(2026, 11, 25, 8, 0, 0)

HEADERS: tuple[str, ...] = (
    "Referens",
    "Namn",
    "Personnummer",
    "E-post",
    "Telefon",
    "Utdelningsadress",
    "Postnummer",
    "Postort",
    "Ärendetyp",
    "Startdatum",
    "Beskrivning",
)

ARENDETYPER: tuple[str, ...] = (
    "Bostadsanpassningsbidrag",
    "Färdtjänst",
    "Parkeringstillstånd för rörelsehindrade",
    "Ekonomiskt bistånd",
    "Serveringstillstånd",
)

# Deliberately bad rows (Excel row numbers: the header is row 1, data is rows 2-101). Each of
# them is otherwise valid and has exactly one fault, which the e-service's validation rejects:
#   row  14: Personnummer has a wrong Luhn check digit ("Personnumret har fel kontrollsiffra")
#   row  33: E-post has no "@" ("Ange en giltig e-postadress")
#   row  52: Ärendetyp is "Bygglov", which is not in the e-service's list
#   row  71: Namn is empty (the robot may catch this one itself, before the site does)
#   row  90: Postnummer is "12A 45" (not "NNN NN" or five digits)
BAD_ROWS: dict[int, str] = {
    14: "Personnummer har fel kontrollsiffra",
    33: "E-post saknar @",
    52: "Ärendetyp 'Bygglov' finns inte i e-tjänsten",
    71: "Namn saknas",
    90: "Postnummer '12A 45' är ogiltigt",
}

_FEMALE_NAMES = (
    "Åsa", "Märta", "Ingrid", "Karin", "Britt-Marie", "Margareta", "Birgitta", "Elsa", "Maja",
    "Linnéa", "Ebba", "Signe", "Gunnel", "Solveig", "Agneta", "Annika", "Sofia", "Fatima",
    "Amira", "Malin", "Ylva", "Ellinor", "Gunilla", "Sara", "Astrid", "Hanna", "Lovisa",
)  # fmt: skip
_MALE_NAMES = (
    "Örjan", "Björn", "Göran", "Håkan", "Sören", "Pär", "Åke", "Gösta", "Jörgen", "Ove", "Lars",
    "Mikael", "Anders", "Stig", "Bengt", "Mats", "Niklas", "Oskar", "Ahmed", "Mohammed", "Erik",
    "Olle", "Rune", "Kjell", "Tomas", "Jöns", "Måns",
)  # fmt: skip
_SURNAMES = (
    "Åström", "Öberg", "Björk", "Söderström", "Sjöberg", "Bäckström", "Löfgren", "Strömberg",
    "Åberg", "Höglund", "Jönsson", "Håkansson", "Lindqvist", "Ekström", "Nyström", "Hägglund",
    "Öhman", "Forsén", "Sandén", "Mårtensson", "Källström", "Lundgren", "Karlsson", "Andersson",
    "Nilsson", "Pettersson", "Hussein", "Yilmaz", "Nguyen", "Rahimi", "Mäkelä", "Ståhl",
    "Grönlund", "Fält", "Wikström", "Dahlén",
)  # fmt: skip
_STREETS = (
    "Åsgatan", "Björkvägen", "Södra Storgatan", "Västra Ringvägen", "Östra Långgatan",
    "Kyrkogatan", "Älvgatan", "Sjöviksvägen", "Ängsvägen", "Rönnbärsvägen", "Lärkstigen",
    "Järnvägsgatan", "Köpmangatan", "Smedjegatan", "Trädgårdsgatan", "Skolvägen",
    "Hagalundsvägen", "Gröndalsvägen", "Tallbacksvägen", "Fältvägen", "Mjölnarvägen",
    "Slånbärsgatan", "Nygårdsgatan", "Örnvägen", "Hästhagsvägen", "Bryggaregatan",
)  # fmt: skip
# Postort and three-digit postnummer prefixes that really belong to it.
_TOWNS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Västerås", (722, 723, 724, 725)),
    ("Örebro", (702, 703, 704, 705)),
    ("Gävle", (802, 803, 804, 805)),
    ("Luleå", (972, 973, 974, 975)),
    ("Malmö", (211, 212, 214, 215, 217)),
    ("Norrköping", (602, 603, 604, 605)),
    ("Jönköping", (553, 554, 555, 556)),
    ("Umeå", (903, 904, 905, 906)),
    ("Växjö", (352, 353)),
    ("Östersund", (831, 832)),
    ("Borås", (503, 504, 506)),
    ("Ängelholm", (262,)),
    ("Härnösand", (871,)),
    ("Södertälje", (151, 152)),
    ("Mölndal", (431,)),
    ("Skellefteå", (931, 934)),
)
_AREA_CODES = {
    "Västerås": "021", "Örebro": "019", "Gävle": "026", "Luleå": "0920", "Malmö": "040",
    "Norrköping": "011", "Jönköping": "036", "Umeå": "090", "Växjö": "0470",
    "Östersund": "063", "Borås": "033", "Ängelholm": "0431", "Härnösand": "0611",
    "Södertälje": "08", "Mölndal": "031", "Skellefteå": "0910",
}  # fmt: skip
_MAIL_DOMAINS = ("gmail.com", "hotmail.com", "outlook.com", "telia.com", "live.se", "icloud.com")
_TRANSLIT = str.maketrans({"å": "a", "ä": "a", "ö": "o", "é": "e", "ü": "u"})

_BIRTH_YEARS: dict[str, tuple[int, int]] = {
    "Bostadsanpassningsbidrag": (1935, 1965),
    "Färdtjänst": (1935, 1975),
    "Parkeringstillstånd för rörelsehindrade": (1938, 1985),
    "Ekonomiskt bistånd": (1960, 2004),
    "Serveringstillstånd": (1965, 2000),
}
_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "Bostadsanpassningsbidrag": (
        "Ansöker om bidrag för att ta bort tröskeln till badrummet och sätta upp stödhandtag "
        "vid toalett och dusch.",
        "Behöver ramp vid entrén eftersom jag sedan i våras använder rullstol.",
        "Önskar byta badkar mot duschplats med golvbrunn. Intyg från arbetsterapeut bifogas "
        "i pappersansökan.",
        "Ansöker om spisvakt i köket efter att ha glömt spisen på två gånger i höstas.",
        "Behöver automatisk dörröppnare till porten i trapphuset för att kunna ta mig ut själv.",
    ),
    "Färdtjänst": (
        "Kan inte längre åka buss på grund av nedsatt gångförmåga. Behöver resa till "
        "vårdcentralen och dagverksamheten.",
        "Har svår KOL och orkar inte gå till hållplatsen. Ansöker om färdtjänst inom kommunen.",
        "Synskadad sedan 2025. Behöver färdtjänst med ledsagare till arbetet två dagar i veckan.",
        "Använder rullator och behöver resa med fordon som tar med den.",
    ),
    "Parkeringstillstånd för rörelsehindrade": (
        "Kan gå högst 100 meter med kryckor. Ansöker om parkeringstillstånd som förare.",
        "Ansöker om tillstånd som passagerare; min make kör mig till dialysen tre gånger i "
        "veckan.",
        "Har reumatism och stora svårigheter att gå längre sträckor, särskilt vintertid.",
        "Behöver parkera nära bostaden efter höftoperationen. Läkarintyg skickas separat.",
    ),
    "Ekonomiskt bistånd": (
        "Ansöker om försörjningsstöd för januari. Väntar på beslut från Försäkringskassan.",
        "Behöver hjälp med hyran för december efter att ha blivit arbetslös i oktober.",
        "Ansöker om bistånd till akut tandvård. Kostnadsförslag från tandläkaren finns.",
        "Ensamstående med två barn. Ansöker om bistånd till vinterkläder och hemförsäkring.",
    ),
    "Serveringstillstånd": (
        "Ansöker om stadigvarande serveringstillstånd för restaurang Källaren vid Stortorget.",
        "Gäller servering på uteservering maj–september vid caféet i hamnen.",
        "Ansöker om serveringstid till kl. 01.00 fredagar och lördagar för vår pub.",
        "Nystartad bistro med 40 sittplatser. Ansöker om tillstånd för öl, vin och sprit.",
    ),
}


@dataclass
class Intake:
    """One paper application, as it is typed into the register."""

    referens: str
    namn: str
    personnummer: str
    epost: str
    telefon: str
    adress: str
    postnummer: str
    postort: str
    arendetyp: str
    startdatum: dt.date
    beskrivning: str

    def as_row(self) -> list[object]:
        return [value if value != "" else None for value in astuple(self)]


# --------------------------------------------------------------------------- data






def _email(rng: random.Random, first: str, last: str, birth: dt.date) -> str:
    given = re.sub(r"[^a-z-]", "", first.lower().translate(_TRANSLIT))
    family = re.sub(r"[^a-z-]", "", last.lower().translate(_TRANSLIT))
    local = rng.choice(
        (f"{given}.{family}", f"{given}.{family}{birth:%y}", f"{given[0]}.{family}", family)
    )
    return f"{local}@{rng.choice(_MAIL_DOMAINS)}"


def _phone(rng: random.Random, town: str) -> str:
    if rng.random() < 0.7:
        prefix = rng.choice(("070", "072", "073", "076", "079"))
        return f"{prefix}-{rng.randint(100, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
    return f"{_AREA_CODES[town]}-{rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"


def _address(rng: random.Random) -> str:
    street = f"{rng.choice(_STREETS)} {rng.randint(1, 60)}"
    if rng.random() < 0.2:
        street += rng.choice(" ABC")
    if rng.random() < 0.3:
        street = f"{street.strip()} lgh {rng.randint(10, 16)}{rng.randint(1, 9):02d}"
    return street.strip()


def _start_date(rng: random.Random) -> dt.date:
    day = dt.date(2027, 1, 4) + dt.timedelta(days=rng.randint(0, 340))
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def _make_intake(rng: random.Random, number: int) -> Intake:
    arendetyp = rng.choice(ARENDETYPER)
    female = rng.random() < 0.5
    first = rng.choice(_FEMALE_NAMES if female else _MALE_NAMES)
    last = rng.choice(_SURNAMES)
    low, high = _BIRTH_YEARS[arendetyp]
    birth = dt.date(rng.randint(low, high), 1, 1) + dt.timedelta(days=rng.randint(0, 364))
    town, prefixes = rng.choice(_TOWNS)
    return Intake(
        referens=f"PA-2026-{number:04d}",
        namn=f"{first} {last}",
        personnummer=make_personnummer(rng, birth, female),
        epost=_email(rng, first, last, birth),
        telefon=_phone(rng, town),
        adress=_address(rng),
        postnummer=f"{rng.choice(prefixes)} {rng.randint(10, 99)}",
        postort=town,
        arendetyp=arendetyp,
        startdatum=_start_date(rng),
        beskrivning=rng.choice(_DESCRIPTIONS[arendetyp]),
    )


def generate_intake(seed: int = SEED) -> list[Intake]:
    """The 100 rows, with the five faults of ``BAD_ROWS`` injected."""
    rng = random.Random(seed)
    rows = [_make_intake(rng, number) for number in range(1, N_ROWS + 1)]

    def at(excel_row: int) -> Intake:
        return rows[excel_row - 2]

    pnr = at(14).personnummer
    at(14).personnummer = pnr[:-1] + str((int(pnr[-1]) + 3) % 10)
    at(33).epost = at(33).epost.replace("@", ".")
    at(52).arendetyp = "Bygglov"
    at(52).beskrivning = "Ansöker om bygglov för ett uterum på 15 kvadratmeter mot trädgården."
    at(71).namn = ""
    at(90).postnummer = "12A 45"
    return rows


# --------------------------------------------------------------------------- workbook


def _style_header(ws: Worksheet) -> None:
    font = Font(bold=True, color="FFFFFF")
    fill = PatternFill(fill_type="solid", start_color="1D4F6E", end_color="1D4F6E")
    border = Border(bottom=Side(style="medium", color="123449"))
    for cell in ws[1]:
        cell.font = font
        cell.fill = fill
        cell.border = border
        cell.alignment = Alignment(vertical="center")
    ws.row_dimensions[1].height = 22


def _size_columns(ws: Worksheet) -> None:
    for index, header in enumerate(HEADERS, start=1):
        letter = get_column_letter(index)
        (column,) = ws.iter_cols(min_col=index, max_col=index)
        if header == "Startdatum":
            for cell in column[1:]:
                cell.number_format = "yyyy-mm-dd"
            width = 13.0
        else:
            longest = max(len(str(cell.value or "")) for cell in column)
            width = float(min(max(longest + 2, 10), 60))
        if header == "Beskrivning":
            for cell in column[1:]:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
        ws.column_dimensions[letter].width = width


def write_intake(path: Path, rows: Sequence[Intake]) -> None:
    """Write the register, formatted, to ``path``."""
    workbook = Workbook()
    ws = workbook.active
    assert ws is not None
    ws.title = SHEET_NAME
    ws.append(list(HEADERS))
    for row in rows:
        ws.append(row.as_row())
    _style_header(ws)
    _size_columns(ws)
    ws.freeze_panes = "B2"
    ws.auto_filter.ref = ws.dimensions
    workbook.properties.creator = KOMMUN
    workbook.properties.title = "Inkomna ansökningar på papper (demodata)"
    workbook.properties.created = FIXED_TIMESTAMP
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    normalise_ooxml(path, FIXED_TIMESTAMP)


# ------------------------------------------------------------------- determinism





def main() -> int:
    rows = generate_intake()
    write_intake(INTAKE_PATH, rows)
    sys.stdout.write(
        f"Wrote {INTAKE_PATH.relative_to(DEMO_DIR.parent)} ({len(rows)} rows, "
        f"{len(BAD_ROWS)} deliberately bad: rows {', '.join(map(str, BAD_ROWS))})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
