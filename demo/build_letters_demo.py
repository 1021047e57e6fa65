"""Build the demo input data and Word template for the ``decision_letters`` robot.

Run from the repository root::

    .venv/bin/python demo/build_letters_demo.py

It (re)writes two files, deterministically (fixed random seed, fixed document
timestamps, fixed zip entry dates), so rebuilding does not produce binary diffs:

* ``demo/data/applications.xlsx`` - sheet "Ansökningar": a register of 50 applications
  to "Exempelby kommun", of which exactly five rows are deliberately bad (see
  ``BAD_ROWS`` below).
* ``demo/templates/beslut.docx`` - a docxtpl (Jinja2-in-Word) decision letter.

Template context (top-level names, nothing else is referenced)::

    kommun: str                  "Exempelby kommun"
    forvaltning: str             "Socialförvaltningen"
    mottagare: object/dict       .namn .adress .postnummer .postort (all str)
    diarienummer: str            "SN-2026-0412"
    arendetyp: str               "Färdtjänst" (rendered with |lower in the heading)
    beslut: str                  "Bifall" | "Delvis bifall" | "Avslag"
    beslutsdatum: str            "2026-03-02"
    ansokningsdatum: str         "2026-02-11"
    handlaggare: str             "Karin Åström"
    belopp: str                  "12 500 kr" or "" (amount sentence is skipped when empty)
    motivering: str              one sentence or "" (section is skipped when empty)
    atgarder: list of object/dict  .namn  .beslut ("Beviljas" | "Avslås")

Data conventions the robot can rely on:

* Förvaltning is not a column; it follows from Ärendetyp (``FORVALTNING_BY_ARENDETYP``).
* For "Delvis bifall" the LAST item in "Åtgärder" is the one that is refused
  ("Avslås"); all other items are granted, and "Motivering" names the refused item.
  For "Bifall" every item is "Beviljas", for "Avslag" every item is "Avslås".
* "Beviljat belopp" is only used for Bostadsanpassningsbidrag and Ekonomiskt bistånd
  (0 for Avslag); it is empty for the other case types.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.section import WD_ORIENTATION
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Mm, Pt, RGBColor
from docx.styles.style import ParagraphStyle
from docx.table import _Cell
from docx.text.paragraph import Paragraph
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter

from demo.synthetic import make_personnummer, normalise_ooxml

DEMO_DIR = Path(__file__).resolve().parent
APPLICATIONS_PATH = DEMO_DIR / "data" / "applications.xlsx"
TEMPLATE_PATH = DEMO_DIR / "templates" / "beslut.docx"

SEED = 20260302
KOMMUN = "Exempelby kommun"
SHEET_NAME = "Ansökningar"
N_ROWS = 50
# Fixed metadata timestamp so rebuilt files are byte-identical.
FIXED_TIMESTAMP = dt.datetime(2026, 3, 2, 8, 0, 0)

HEADERS: tuple[str, ...] = (
    "Diarienummer",
    "Personnummer",
    "Förnamn",
    "Efternamn",
    "Utdelningsadress",
    "Postnummer",
    "Postort",
    "E-post",
    "Ärendetyp",
    "Ansökningsdatum",
    "Beslut",
    "Beslutsdatum",
    "Handläggare",
    "Åtgärder",
    "Beviljat belopp",
    "Motivering",
)
DATE_COLUMNS = ("Ansökningsdatum", "Beslutsdatum")

ARENDETYPER: tuple[str, ...] = (
    "Bostadsanpassningsbidrag",
    "Färdtjänst",
    "Parkeringstillstånd för rörelsehindrade",
    "Ekonomiskt bistånd",
    "Serveringstillstånd",
)
BESLUT: tuple[str, ...] = ("Bifall", "Delvis bifall", "Avslag")

FORVALTNING_BY_ARENDETYP: dict[str, str] = {
    "Bostadsanpassningsbidrag": "Samhällsbyggnadsförvaltningen",
    "Färdtjänst": "Tekniska förvaltningen",
    "Parkeringstillstånd för rörelsehindrade": "Tekniska förvaltningen",
    "Ekonomiskt bistånd": "Socialförvaltningen",
    "Serveringstillstånd": "Socialförvaltningen",
}
_DIARIE_PREFIX: dict[str, str] = {
    "Samhällsbyggnadsförvaltningen": "SBN",
    "Tekniska förvaltningen": "TN",
    "Socialförvaltningen": "SN",
}
_HANDLAGGARE: dict[str, tuple[str, ...]] = {
    "Bostadsanpassningsbidrag": ("Karin Åström", "Örjan Hedström"),
    "Färdtjänst": ("Märta Sjögren", "Pär Lindgren"),
    "Parkeringstillstånd för rörelsehindrade": ("Åsa Berglund",),
    "Ekonomiskt bistånd": ("Linnéa Fröberg", "Göran Wästberg", "Sofia Älvebrink"),
    "Serveringstillstånd": ("Björn Ekelöf",),
}
_BIRTH_YEARS: dict[str, tuple[int, int]] = {
    "Bostadsanpassningsbidrag": (1935, 1965),
    "Färdtjänst": (1935, 1975),
    "Parkeringstillstånd för rörelsehindrade": (1938, 1985),
    "Ekonomiskt bistånd": (1960, 2004),
    "Serveringstillstånd": (1965, 2000),
}
# Items that can be applied for, per case type. The first item of the "base" types is
# always present (you apply for färdtjänst first, extras second); amounts in kronor
# (min, max) only for case types that pay out money.
_ATGARDER: dict[str, tuple[tuple[str, int, int], ...]] = {
    "Bostadsanpassningsbidrag": (
        ("Ramp vid entré", 18_000, 45_000),
        ("Borttagning av trösklar", 3_000, 9_000),
        ("Duschplats i badrum", 35_000, 85_000),
        ("Stödhandtag vid toalett och dusch", 1_500, 4_000),
        ("Spisvakt", 4_000, 7_000),
        ("Automatisk dörröppnare", 25_000, 40_000),
        ("Trapphiss", 90_000, 160_000),
        ("Sänkt bänkskiva i kök", 15_000, 30_000),
        ("Breddning av dörröppning", 6_000, 14_000),
    ),
    "Ekonomiskt bistånd": (
        ("Försörjningsstöd enligt riksnormen", 4_000, 9_000),
        ("Boendekostnad", 5_000, 9_500),
        ("Hushållsel", 400, 1_200),
        ("Hemförsäkring", 150, 300),
        ("Tandvård", 2_000, 12_000),
        ("Glasögon", 1_500, 3_000),
        ("Läkarvård och läkemedel", 300, 1_300),
        ("Arbetsresor", 600, 1_500),
    ),
    "Färdtjänst": (
        ("Färdtjänst inom kommunen", 0, 0),
        ("Färdtjänst till angränsande kommun", 0, 0),
        ("Riksfärdtjänst", 0, 0),
        ("Ledsagare utan kostnad", 0, 0),
        ("Rätt att medföra rullator", 0, 0),
        ("Framsätesplacering", 0, 0),
        ("Resa med rullstolsanpassat fordon", 0, 0),
    ),
    "Parkeringstillstånd för rörelsehindrade": (
        ("Tillstånd som förare", 0, 0),
        ("Tillstånd som passagerare", 0, 0),
        ("Reserverad parkeringsplats vid bostaden", 0, 0),
        ("Parkering på gågata", 0, 0),
    ),
    "Serveringstillstånd": (
        ("Stadigvarande servering till allmänheten", 0, 0),
        ("Servering på uteservering", 0, 0),
        ("Serveringstid till kl. 01.00", 0, 0),
        ("Servering vid provsmakning", 0, 0),
        ("Catering till slutna sällskap", 0, 0),
    ),
}
_FIRST_ITEM_FIXED = {"Färdtjänst", "Serveringstillstånd", "Ekonomiskt bistånd"}
_PAYS_OUT = {"Bostadsanpassningsbidrag", "Ekonomiskt bistånd"}

_MOTIVERING_AVSLAG: dict[str, tuple[str, ...]] = {
    "Bostadsanpassningsbidrag": (
        "Åtgärderna bedöms vara normalt underhåll och inte orsakade av funktionsnedsättningen.",
        "Bidrag lämnas inte eftersom bostaden inte är sökandens permanenta bostad.",
    ),
    "Färdtjänst": (
        "Utredningen visar att du kan resa med allmänna kommunikationer utan väsentliga svårigheter.",
        "Funktionsnedsättningen bedöms inte vara långvarig, det vill säga minst tre månader.",
    ),
    "Parkeringstillstånd för rörelsehindrade": (
        "Det medicinska underlaget visar inte att din förmåga att förflytta dig på egen hand "
        "är väsentligt nedsatt.",
        "Du behöver inte hjälp av föraren utöver i- och urstigning.",
    ),
    "Ekonomiskt bistånd": (
        "Hushållets inkomster överstiger riksnormen och skäliga boendekostnader för perioden.",
        "Du har inte stått till arbetsmarknadens förfogande under den aktuella månaden.",
        "Du har tillgångar i form av sparade medel som ska användas först.",
    ),
    "Serveringstillstånd": (
        "Sökanden har inte visat tillräckliga kunskaper i alkohollagen vid kunskapsprovet.",
        "Serveringsstället uppfyller inte kraven på kök och matutbud enligt alkohollagen.",
    ),
}
_MOTIVERING_DELVIS: dict[str, str] = {
    "Bostadsanpassningsbidrag": "{item} avslås eftersom behovet kan tillgodoses med hjälpmedel "
    "från regionen.",
    "Färdtjänst": "{item} avslås eftersom behovet inte framgår av läkarintyget.",
    "Parkeringstillstånd för rörelsehindrade": "{item} avslås eftersom det saknas utrymme "
    "för fler reserverade platser i området.",
    "Ekonomiskt bistånd": "{item} avslås eftersom kostnaden inte bedöms som skälig.",
    "Serveringstillstånd": "{item} avslås med hänsyn till risken för störningar för de boende i fastigheten.",
}
_MOTIVERING_BIFALL: dict[str, str] = {
    "Bostadsanpassningsbidrag": "Åtgärderna är nödvändiga för att du ska kunna använda "
    "bostaden på ett ändamålsenligt sätt.",
    "Färdtjänst": "Du har en funktionsnedsättning som ger väsentliga svårigheter att resa "
    "med allmänna kommunikationer.",
    "Parkeringstillstånd för rörelsehindrade": "Din förmåga att förflytta dig på egen hand "
    "är väsentligt nedsatt enligt det medicinska underlaget.",
    "Ekonomiskt bistånd": "Du saknar förmåga att tillgodose behoven själv och har rätt till "
    "bistånd för perioden.",
    "Serveringstillstånd": "Sökanden och serveringsstället uppfyller kraven i alkohollagen.",
}

_FEMALE_NAMES = (
    "Åsa",
    "Märta",
    "Ingrid",
    "Karin",
    "Britt-Marie",
    "Margareta",
    "Birgitta",
    "Elsa",
    "Maja",
    "Linnéa",
    "Ebba",
    "Signe",
    "Gunnel",
    "Solveig",
    "Agneta",
    "Annika",
    "Sofia",
    "Fatima",
    "Amira",
    "Malin",
    "Ylva",
    "Ellinor",
    "Gunilla",
    "Märit",
    "Sara",
)
_MALE_NAMES = (
    "Örjan",
    "Björn",
    "Göran",
    "Håkan",
    "Sören",
    "Pär",
    "Åke",
    "Gösta",
    "Jörgen",
    "Ove",
    "Lars",
    "Mikael",
    "Anders",
    "Stig",
    "Bengt",
    "Mats",
    "Niklas",
    "Oskar",
    "Ahmed",
    "Mohammed",
    "Erik",
    "Olle",
    "Rune",
    "Kjell",
    "Tomas",
)
_SURNAMES = (
    "Åström",
    "Öberg",
    "Björk",
    "Söderström",
    "Sjöberg",
    "Bäckström",
    "Löfgren",
    "Strömberg",
    "Åberg",
    "Höglund",
    "Jönsson",
    "Håkansson",
    "Lindqvist",
    "Ekström",
    "Nyström",
    "Wästerlund",
    "Hägglund",
    "Öhman",
    "Forsén",
    "Sandén",
    "Mårtensson",
    "Källström",
    "Lundgren",
    "Karlsson",
    "Andersson",
    "Nilsson",
    "Pettersson",
    "Berglöf",
    "Hussein",
    "Yilmaz",
    "Nguyen",
    "Rahimi",
    "Mäkelä",
    "Ståhl",
    "Grönlund",
    "Fält",
)
_STREETS = (
    "Åsgatan",
    "Björkvägen",
    "Södra Storgatan",
    "Västra Ringvägen",
    "Östra Långgatan",
    "Kyrkogatan",
    "Älvgatan",
    "Sjöviksvägen",
    "Ängsvägen",
    "Rönnbärsvägen",
    "Lärkstigen",
    "Järnvägsgatan",
    "Köpmangatan",
    "Smedjegatan",
    "Trädgårdsgatan",
    "Skolvägen",
    "Hagalundsvägen",
    "Gröndalsvägen",
    "Tallbacksvägen",
    "Fältvägen",
    "Mjölnarvägen",
    "Slånbärsgatan",
    "Nygårdsgatan",
    "Örnvägen",
    "Hästhagsvägen",
)
# Postort and the three-digit postnummer prefixes that really belong to it.
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
    ("Sundsvall", (852, 853, 854)),
    ("Östersund", (831, 832)),
    ("Borås", (503, 504, 506)),
    ("Linköping", (582, 583, 584, 587)),
    ("Ängelholm", (262,)),
    ("Härnösand", (871,)),
    ("Södertälje", (151, 152)),
    ("Mölndal", (431,)),
    ("Skellefteå", (931, 934)),
)
_MAIL_DOMAINS = (
    "gmail.com",
    "hotmail.com",
    "outlook.com",
    "telia.com",
    "live.se",
    "icloud.com",
    "bredband.net",
    "yahoo.se",
)
_TRANSLIT = str.maketrans({"å": "a", "ä": "a", "ö": "o", "é": "e", "ü": "u"})

# Deliberately bad rows (Excel row numbers; the header is row 1, data is rows 2-51).
# Each of these rows is otherwise valid and has exactly one fault:
#   row  8: Personnummer has a wrong Luhn check digit
#   row 17: "Efternamn" is empty
#   row 26: "Beslutsdatum" is the text "2026-02-30" (impossible date, not a real Excel date)
#   row 35: "Beslut" is "Kanske", which is not an allowed value
#   row 44: "Diarienummer" is empty
BAD_ROWS: dict[int, str] = {
    8: "Personnummer har fel kontrollsiffra",
    17: "Efternamn saknas",
    26: "Beslutsdatum är texten 2026-02-30 (omöjligt datum)",
    35: "Beslut 'Kanske' är inte ett tillåtet värde",
    44: "Diarienummer saknas",
}


@dataclass
class Application:
    """One row of the register, before the deliberate faults are injected."""

    diarienummer: str
    personnummer: str
    fornamn: str
    efternamn: str
    adress: str
    postnummer: str
    postort: str
    epost: str
    arendetyp: str
    ansokningsdatum: dt.date
    beslut: str
    beslutsdatum: dt.date | str
    handlaggare: str
    atgarder: list[str] = field(default_factory=list)
    belopp: int | None = None
    motivering: str = ""

    def as_row(self) -> list[object]:
        return [
            self.diarienummer or None,
            self.personnummer,
            self.fornamn,
            self.efternamn or None,
            self.adress,
            self.postnummer,
            self.postort,
            self.epost or None,
            self.arendetyp,
            self.ansokningsdatum,
            self.beslut,
            self.beslutsdatum,
            self.handlaggare,
            "; ".join(self.atgarder),
            self.belopp,
            self.motivering or None,
        ]


# --------------------------------------------------------------------------- data






def _email(rng: random.Random, first: str, last: str, birth: dt.date) -> str:
    f = re.sub(r"[^a-z-]", "", first.lower().translate(_TRANSLIT))
    s = re.sub(r"[^a-z-]", "", last.lower().translate(_TRANSLIT))
    local = rng.choice((f"{f}.{s}", f"{f}.{s}{birth:%y}", f"{f[0]}.{s}", f"{f}{s}", f"{s}.{f}"))
    return f"{local}@{rng.choice(_MAIL_DOMAINS)}"


def _weekday_on_or_after(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def _make_application(rng: random.Random, arendetyp: str, applied: dt.date) -> Application:
    female = rng.random() < 0.55
    first = rng.choice(_FEMALE_NAMES if female else _MALE_NAMES)
    last = rng.choice(_SURNAMES)
    lo, hi = _BIRTH_YEARS[arendetyp]
    birth = dt.date(rng.randint(lo, hi), 1, 1) + dt.timedelta(days=rng.randint(0, 364))
    town, prefixes = rng.choice(_TOWNS)
    street = f"{rng.choice(_STREETS)} {rng.randint(1, 89)}"
    if rng.random() < 0.15:
        street += rng.choice("ABC")
    if rng.random() < 0.3:
        street += f" lgh {rng.randint(10, 16)}{rng.randint(1, 4):02d}"

    beslut = rng.choices(BESLUT, weights=(55, 20, 25))[0]
    decided = _weekday_on_or_after(applied + dt.timedelta(days=rng.randint(7, 56)))

    pool = _ATGARDER[arendetyp]
    n_items = rng.randint(2, min(4, len(pool)))
    if arendetyp in _FIRST_ITEM_FIXED:
        chosen = [pool[0], *rng.sample(pool[1:], n_items - 1)]
    else:
        chosen = rng.sample(pool, n_items)
    amounts = [rng.randint(lo_kr, hi_kr) for _, lo_kr, hi_kr in chosen]
    step = 100 if arendetyp == "Bostadsanpassningsbidrag" else 10
    amounts = [round(a / step) * step for a in amounts]

    belopp: int | None = None
    if arendetyp in _PAYS_OUT:
        if beslut == "Bifall":
            belopp = sum(amounts)
        elif beslut == "Delvis bifall":
            belopp = sum(amounts[:-1])  # the last item is the refused one
        else:
            belopp = 0

    if beslut == "Avslag":
        motivering = rng.choice(_MOTIVERING_AVSLAG[arendetyp])
    elif beslut == "Delvis bifall":
        motivering = _MOTIVERING_DELVIS[arendetyp].format(item=chosen[-1][0])
    else:
        motivering = _MOTIVERING_BIFALL[arendetyp] if rng.random() < 0.4 else ""

    return Application(
        diarienummer="",  # assigned once all rows are sorted by registration date
        personnummer=make_personnummer(rng, birth, female),
        fornamn=first,
        efternamn=last,
        adress=street,
        postnummer=f"{rng.choice(prefixes)} {rng.randint(30, 99):02d}",
        postort=town,
        epost="" if rng.random() < 0.15 else _email(rng, first, last, birth),
        arendetyp=arendetyp,
        ansokningsdatum=applied,
        beslut=beslut,
        beslutsdatum=decided,
        handlaggare=rng.choice(_HANDLAGGARE[arendetyp]),
        atgarder=[name for name, _, _ in chosen],
        belopp=belopp,
        motivering=motivering,
    )


def generate_applications(seed: int = SEED) -> list[Application]:
    """50 applications sorted by registration date, with the five faults injected."""
    rng = random.Random(seed)
    start = dt.date(2025, 10, 1)
    span = (dt.date(2026, 2, 20) - start).days
    apps = [
        _make_application(
            rng,
            rng.choices(ARENDETYPER, weights=(25, 20, 15, 30, 10))[0],
            start + dt.timedelta(days=rng.randint(0, span)),
        )
        for _ in range(N_ROWS)
    ]
    apps.sort(key=lambda a: a.ansokningsdatum)

    # Diarienummer: one running series per nämnd and year, with gaps for other cases.
    counters: dict[tuple[str, int], int] = {}
    for app in apps:
        prefix = _DIARIE_PREFIX[FORVALTNING_BY_ARENDETYP[app.arendetyp]]
        year = app.ansokningsdatum.year
        key = (prefix, year)
        first_number = rng.randint(1_050, 1_400) if year == 2025 else rng.randint(3, 40)
        counters[key] = counters.get(key, first_number) + rng.randint(1, 25)
        app.diarienummer = f"{prefix}-{year}-{counters[key]:04d}"

    def at(excel_row: int) -> Application:
        return apps[excel_row - 2]

    pnr = at(8).personnummer
    at(8).personnummer = pnr[:-1] + str((int(pnr[-1]) + 3) % 10)
    at(17).efternamn = ""
    at(26).beslutsdatum = "2026-02-30"
    at(35).beslut = "Kanske"
    at(44).diarienummer = ""
    return apps


def write_applications(path: Path, apps: Sequence[Application]) -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = SHEET_NAME
    ws.append(list(HEADERS))
    for app in apps:
        ws.append(app.as_row())

    header_font = Font(bold=True, color="FFFFFF")
    header_fill = PatternFill(fill_type="solid", start_color="305496", end_color="305496")
    header_border = Border(bottom=Side(style="medium", color="1F3864"))
    for cell in ws[1]:
        cell.font = header_font
        cell.fill = header_fill
        cell.border = header_border
        cell.alignment = Alignment(vertical="center")
    ws.row_dimensions[1].height = 22

    for col_idx, header in enumerate(HEADERS, start=1):
        letter = get_column_letter(col_idx)
        if header in DATE_COLUMNS:
            for (cell,) in ws.iter_rows(min_row=2, min_col=col_idx, max_col=col_idx):
                if isinstance(cell.value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
            width = 14.0
        else:
            (column,) = ws.iter_cols(min_col=col_idx, max_col=col_idx)
            longest = max(len(str(c.value or "")) for c in column)
            width = float(min(max(longest + 2, 10), 70))
        if header == "Beviljat belopp":
            for (cell,) in ws.iter_rows(min_row=2, min_col=col_idx, max_col=col_idx):
                cell.number_format = "#,##0"
        ws.column_dimensions[letter].width = width

    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions

    wb.properties.creator = KOMMUN
    wb.properties.title = "Ansökningar (demodata)"
    wb.properties.created = FIXED_TIMESTAMP
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    normalise_ooxml(path, FIXED_TIMESTAMP)


# ----------------------------------------------------------------------- template

BODY_FONT = "Calibri"
TEXT_COLOUR = RGBColor(0x1F, 0x1F, 0x1F)
ACCENT = RGBColor(0x1F, 0x38, 0x64)


def _set_style_font(
    style: ParagraphStyle, size: float, bold: bool = False, colour: RGBColor = TEXT_COLOUR
) -> None:
    """Calibri without theme-font overrides (``w:asciiTheme`` would win over ``w:ascii``)."""
    style.font.name = BODY_FONT
    style.font.size = Pt(size)
    style.font.bold = True if bold else None
    style.font.color.rgb = colour
    rpr = style.element.get_or_add_rPr()
    rfonts = rpr.find(qn("w:rFonts"))
    if rfonts is None:
        rfonts = OxmlElement("w:rFonts")
        rpr.insert(0, rfonts)
    for attr in ("w:asciiTheme", "w:hAnsiTheme", "w:eastAsiaTheme", "w:cstheme"):
        rfonts.attrib.pop(qn(attr), None)
    for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        rfonts.set(qn(attr), BODY_FONT)
    lang = rpr.find(qn("w:lang"))
    if lang is None:
        lang = OxmlElement("w:lang")
        rpr.insert_element_before(lang, "w:eastAsianLayout", "w:specVanish", "w:oMath")
    lang.set(qn("w:val"), "sv-SE")


def _setup_styles(doc: DocxDocument) -> None:
    normal = doc.styles["Normal"]
    assert isinstance(normal, ParagraphStyle)
    _set_style_font(normal, 11)
    normal.paragraph_format.space_after = Pt(6)
    normal.paragraph_format.line_spacing = 1.15
    for name, size, before in (("Heading 1", 16, 12), ("Heading 2", 12, 12)):
        style = doc.styles[name]
        assert isinstance(style, ParagraphStyle)
        _set_style_font(style, size, bold=True, colour=ACCENT)
        style.paragraph_format.space_before = Pt(before)
        style.paragraph_format.space_after = Pt(4)
        style.paragraph_format.keep_with_next = True


def _setup_page(doc: DocxDocument) -> None:
    section = doc.sections[0]
    section.orientation = WD_ORIENTATION.PORTRAIT
    section.page_width = Mm(210)
    section.page_height = Mm(297)
    section.top_margin = Mm(20)
    section.bottom_margin = Mm(20)
    section.left_margin = Mm(25)
    section.right_margin = Mm(20)
    section.header_distance = Mm(10)
    section.footer_distance = Mm(10)

    footer = section.footer.paragraphs[0]
    footer.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = footer.add_run("{{ kommun }} · {{ forvaltning }}")
    run.font.size = Pt(8)
    run.font.color.rgb = RGBColor(0x59, 0x59, 0x59)


def _para(
    container: DocxDocument | _Cell,
    text: str = "",
    *,
    bold: bool = False,
    size: float | None = None,
    align: WD_ALIGN_PARAGRAPH | None = None,
    space_after: float | None = None,
) -> Paragraph:
    """Add a paragraph with a single run, so that no Jinja tag is split across runs."""
    p = container.add_paragraph()
    if text:
        run = p.add_run(text)
        if bold:
            run.bold = True
        if size is not None:
            run.font.size = Pt(size)
    if align is not None:
        p.alignment = align
    if space_after is not None:
        p.paragraph_format.space_after = Pt(space_after)
    return p


def _first_para(cell: _Cell, text: str, *, bold: bool = False, size: float | None = None) -> None:
    """Write into a cell's pre-existing empty paragraph."""
    p = cell.paragraphs[0]
    run = p.add_run(text)
    if bold:
        run.bold = True
    if size is not None:
        run.font.size = Pt(size)


def _shade(cell: _Cell, fill_hex: str) -> None:
    tc_pr = cell._tc.get_or_add_tcPr()
    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill_hex)
    tc_pr.insert_element_before(
        shd, "w:noWrap", "w:tcMar", "w:textDirection", "w:tcFitText", "w:vAlign", "w:hideMark"
    )


def _bottom_rule(p: Paragraph) -> None:
    p_pr = p._p.get_or_add_pPr()
    borders = OxmlElement("w:pBdr")  # must precede w:spacing etc. (CT_PPr sequence)
    bottom = OxmlElement("w:bottom")
    bottom.set(qn("w:val"), "single")
    bottom.set(qn("w:sz"), "6")
    bottom.set(qn("w:space"), "1")
    bottom.set(qn("w:color"), "1F3864")
    borders.append(bottom)
    p_pr.insert_element_before(
        borders,
        "w:shd",
        "w:tabs",
        "w:suppressAutoHyphens",
        "w:spacing",
        "w:ind",
        "w:jc",
        "w:outlineLvl",
        "w:rPr",
        "w:sectPr",
        "w:pPrChange",
    )


def _letterhead(doc: DocxDocument) -> None:
    table = doc.add_table(rows=1, cols=2)  # default "Normal Table": no borders
    table.alignment = WD_TABLE_ALIGNMENT.LEFT
    table.autofit = False
    left, right = table.rows[0].cells
    # Set both the grid (LibreOffice reads it) and the cell widths (Word reads these).
    table.columns[0].width, table.columns[1].width = Mm(100), Mm(65)
    left.width, right.width = Mm(100), Mm(65)

    _first_para(left, "{{ kommun }}", bold=True, size=16)
    _para(left, "{{ forvaltning }}", size=11)

    right.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.RIGHT
    _first_para(right, "BESLUT", bold=True, size=12)
    _para(right, "Datum: {{ beslutsdatum }}", align=WD_ALIGN_PARAGRAPH.RIGHT, space_after=0)
    _para(right, "Diarienummer: {{ diarienummer }}", align=WD_ALIGN_PARAGRAPH.RIGHT)

    _bottom_rule(_para(doc, space_after=18))


def _recipient(doc: DocxDocument) -> None:
    lines = (
        "{{ mottagare.namn }}",
        "{{ mottagare.adress }}",
        "{{ mottagare.postnummer }} {{ mottagare.postort }}",
    )
    for i, line in enumerate(lines):
        p = _para(doc, line, space_after=0 if i < len(lines) - 1 else 24)
        p.paragraph_format.left_indent = Mm(95)


def _decision(doc: DocxDocument) -> None:
    def two_runs(text: str, conditional: str) -> None:
        # The inline {% if %} ... {% endif %} must stay inside ONE run: if it spanned runs,
        # the skipped branch would cut the run XML in half when the condition is false.
        p = _para(doc, text)
        p.add_run(conditional).bold = True

    amount = "{% if belopp %} Beviljat belopp är {{ belopp }}.{% endif %}"
    _para(doc, '{%p if beslut == "Bifall" %}')
    two_runs(
        "{{ forvaltning }} beviljar din ansökan om {{ arendetyp|lower }}, som kom in till oss "
        "den {{ ansokningsdatum }}. Ansökan beviljas i sin helhet.",
        amount,
    )
    _para(doc, "Beslutet gäller från och med {{ beslutsdatum }}.")
    _para(doc, '{%p elif beslut == "Delvis bifall" %}')
    two_runs(
        "{{ forvaltning }} beviljar delvis din ansökan om {{ arendetyp|lower }}, som kom in "
        "till oss den {{ ansokningsdatum }}. Av tabellen nedan framgår vilka delar som "
        "beviljas och vilka som avslås.",
        amount,
    )
    _para(doc, "Beslutet gäller från och med {{ beslutsdatum }}.")
    _para(doc, "{%p else %}")
    _para(
        doc,
        "{{ forvaltning }} avslår din ansökan om {{ arendetyp|lower }}, som kom in till oss "
        "den {{ ansokningsdatum }}.",
    )
    _para(doc, "Du kan överklaga beslutet. Hur du gör det står längre ned i detta brev.")
    _para(doc, "{%p endif %}")


def _items_table(doc: DocxDocument) -> None:
    doc.add_heading("Beslut per åtgärd", level=2)
    table = doc.add_table(rows=4, cols=2)
    table.style = doc.styles["Table Grid"]
    table.alignment = WD_TABLE_ALIGNMENT.LEFT
    table.autofit = False
    widths = (Mm(120), Mm(45))
    for column, width in zip(table.columns, widths, strict=True):
        column.width = width
    for row in table.rows:
        for cell, width in zip(row.cells, widths, strict=True):
            cell.width = width

    header = table.rows[0]
    tr_pr = header._tr.get_or_add_trPr()
    tbl_header = OxmlElement("w:tblHeader")  # repeat the header row on a page break
    tr_pr.append(tbl_header)
    for cell, text in zip(header.cells, ("Åtgärd", "Beslut"), strict=True):
        _first_para(cell, text, bold=True)
        _shade(cell, "D9E2F3")

    # docxtpl row tags: each sits alone in a row that is removed when rendering.
    _first_para(table.rows[1].cells[0], "{%tr for a in atgarder %}")
    _first_para(table.rows[2].cells[0], "{{ a.namn }}")
    _first_para(table.rows[2].cells[1], "{{ a.beslut }}")
    _first_para(table.rows[3].cells[0], "{%tr endfor %}")
    for row in table.rows:
        for cell in row.cells:
            cell.paragraphs[0].paragraph_format.space_after = Pt(2)


def _motivering(doc: DocxDocument) -> None:
    _para(doc, "{%p if motivering %}")
    doc.add_heading("Motivering", level=2)
    _para(doc, "{{ motivering }}")
    _para(doc, "{%p endif %}")


def _appeal(doc: DocxDocument) -> None:
    doc.add_heading("Hur man överklagar", level=2)
    _para(
        doc,
        "Om du inte är nöjd med beslutet kan du överklaga det hos förvaltningsrätten. "
        "Skriv vilket beslut du överklagar, till exempel genom att ange diarienummer "
        "{{ diarienummer }}, hur du vill att beslutet ska ändras och varför. "
        "Skriv under överklagandet och ange namn, personnummer, adress och telefonnummer.",
    )
    _para(
        doc,
        "Skicka eller lämna överklagandet till {{ forvaltning }}, {{ kommun }}, och inte direkt "
        "till förvaltningsrätten. Överklagandet måste ha kommit in till oss inom tre veckor "
        "från den dag du fick del av beslutet, annars kan det inte prövas. Om vi inte själva "
        "ändrar beslutet så som du begär skickar vi överklagandet vidare till "
        "förvaltningsrätten.",
    )
    _para(doc, "Behöver du hjälp att överklaga kan du kontakta din handläggare.")


def _signature(doc: DocxDocument) -> None:
    _para(doc, "Med vänlig hälsning", space_after=24).paragraph_format.space_before = Pt(18)
    _para(doc, "{{ handlaggare }}", bold=True, space_after=0)
    _para(doc, "Handläggare", space_after=0)
    _para(doc, "{{ forvaltning }}", space_after=0)
    _para(doc, "{{ kommun }}", space_after=0)


def write_template(path: Path) -> None:
    doc = Document()
    _setup_styles(doc)
    _setup_page(doc)
    _letterhead(doc)
    _recipient(doc)
    doc.add_heading("Beslut om {{ arendetyp|lower }}", level=1)
    _decision(doc)
    _items_table(doc)
    _motivering(doc)
    _appeal(doc)
    _signature(doc)

    # Drop the empty paragraph python-docx's default template starts with (keep the sectPr).
    body = doc.element.body
    first = body[0]
    if first.tag == qn("w:p") and not "".join(first.itertext()).strip():
        body.remove(first)

    props = doc.core_properties
    props.author = KOMMUN
    props.last_modified_by = KOMMUN
    props.title = "Beslut"
    props.subject = "Beslutsbrev"
    props.comments = "Byggd av demo/build_letters_demo.py (docxtpl-mall)"
    props.language = "sv-SE"
    props.revision = 1
    props.created = FIXED_TIMESTAMP
    props.modified = FIXED_TIMESTAMP
    props.last_printed = FIXED_TIMESTAMP
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    normalise_ooxml(path, FIXED_TIMESTAMP)


# ------------------------------------------------------------------- determinism





def main() -> int:
    apps = generate_applications()
    write_applications(APPLICATIONS_PATH, apps)
    write_template(TEMPLATE_PATH)
    root = DEMO_DIR.parent
    sys.stdout.write(
        f"Wrote {APPLICATIONS_PATH.relative_to(root)} ({len(apps)} rows, "
        f"{len(BAD_ROWS)} deliberately bad: rows {', '.join(map(str, BAD_ROWS))})\n"
        f"Wrote {TEMPLATE_PATH.relative_to(root)}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
