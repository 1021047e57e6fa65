"""Checks on the generated demo files for the decision_letters robot.

The files are built by ``demo/build_letters_demo.py``; these tests check the committed
copies (and that the builder reproduces them).
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docx
import openpyxl
import pytest
from docx.document import Document as DocxDocument
from docxtpl import DocxTemplate

from demo import build_letters_demo as builder

XLSX = builder.APPLICATIONS_PATH
DOCX = builder.TEMPLATE_PATH

EXPECTED_HEADERS = [
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
]
TEMPLATE_VARIABLES = {
    "kommun",
    "forvaltning",
    "mottagare",
    "diarienummer",
    "arendetyp",
    "beslut",
    "beslutsdatum",
    "ansokningsdatum",
    "handlaggare",
    "belopp",
    "motivering",
    "atgarder",
}
ARENDETYPER = {
    "Bostadsanpassningsbidrag",
    "Färdtjänst",
    "Parkeringstillstånd för rörelsehindrade",
    "Ekonomiskt bistånd",
    "Serveringstillstånd",
}
BESLUT = {"Bifall", "Delvis bifall", "Avslag"}
DECISION_SENTENCE = {
    "Bifall": "beviljar din ansökan om",
    "Delvis bifall": "beviljar delvis din ansökan om",
    "Avslag": "avslår din ansökan om",
}

# ------------------------------------------------------------------ helpers


def luhn_ok(personnummer: str) -> bool:
    m = re.fullmatch(r"(\d{2})(\d{6})-(\d{4})", personnummer)
    if not m:
        return False
    digits = m.group(2) + m.group(3)  # YYMMDD NNN C
    total = 0
    for i, ch in enumerate(digits):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n // 10 + n % 10
    return total % 10 == 0


def row_errors(row: dict[str, Any]) -> list[str]:
    """The simple validation a robot would do before writing a letter."""
    errors = []
    if not re.fullmatch(r"[A-Z]{2,3}-\d{4}-\d{4}", row["Diarienummer"] or ""):
        errors.append("diarienummer")
    if not luhn_ok(row["Personnummer"] or ""):
        errors.append("personnummer")
    for col in ("Förnamn", "Efternamn", "Utdelningsadress", "Postort", "Handläggare"):
        if not (row[col] or "").strip():
            errors.append(col)
    if not re.fullmatch(r"\d{3} \d{2}", row["Postnummer"] or ""):
        errors.append("postnummer")
    if row["Ärendetyp"] not in ARENDETYPER:
        errors.append("ärendetyp")
    if row["Beslut"] not in BESLUT:
        errors.append("beslut")
    applied, decided = row["Ansökningsdatum"], row["Beslutsdatum"]
    if not isinstance(applied, dt.datetime):
        errors.append("ansökningsdatum")
    if not isinstance(decided, dt.datetime):
        errors.append("beslutsdatum")
    elif isinstance(applied, dt.datetime) and decided < applied:
        errors.append("beslutsdatum före ansökningsdatum")
    items = [a for a in (row["Åtgärder"] or "").split("; ") if a]
    if not 2 <= len(items) <= 4:
        errors.append("åtgärder")
    belopp = row["Beviljat belopp"]
    if belopp is not None and not isinstance(belopp, int):
        errors.append("belopp")
    if row["Beslut"] == "Avslag" and belopp not in (None, 0):
        errors.append("belopp vid avslag")
    return errors


def load_rows() -> list[tuple[int, dict[str, Any]]]:
    wb = openpyxl.load_workbook(XLSX)
    ws = wb[builder.SHEET_NAME]
    rows = list(ws.iter_rows(values_only=True))
    headers = list(rows[0])
    return [(i, dict(zip(headers, r, strict=True))) for i, r in enumerate(rows[1:], start=2)]


def fmt_kr(amount: int) -> str:
    return f"{amount:,}".replace(",", "\u00a0") + " kr"  # "12 500 kr" with a no-break space


def build_context(row: dict[str, Any]) -> dict[str, Any]:
    beslut = row["Beslut"]
    items = row["Åtgärder"].split("; ")
    if beslut == "Bifall":
        decisions = ["Beviljas"] * len(items)
    elif beslut == "Avslag":
        decisions = ["Avslås"] * len(items)
    else:  # Delvis bifall: by convention the last item is the refused one
        decisions = ["Beviljas"] * (len(items) - 1) + ["Avslås"]
    belopp = row["Beviljat belopp"]
    return {
        "kommun": builder.KOMMUN,
        "forvaltning": builder.FORVALTNING_BY_ARENDETYP[row["Ärendetyp"]],
        "mottagare": SimpleNamespace(
            namn=f"{row['Förnamn']} {row['Efternamn']}",
            adress=row["Utdelningsadress"],
            postnummer=row["Postnummer"],
            postort=row["Postort"],
        ),
        "diarienummer": row["Diarienummer"],
        "arendetyp": row["Ärendetyp"],
        "beslut": beslut,
        "beslutsdatum": row["Beslutsdatum"].date().isoformat(),
        "ansokningsdatum": row["Ansökningsdatum"].date().isoformat(),
        "handlaggare": row["Handläggare"],
        "belopp": fmt_kr(belopp) if belopp and beslut != "Avslag" else "",
        "motivering": row["Motivering"] or "",
        "atgarder": [SimpleNamespace(namn=n, beslut=b) for n, b in zip(items, decisions, strict=True)],
    }


def render(context: dict[str, Any], out: Path) -> DocxDocument:
    tpl = DocxTemplate(str(DOCX))
    tpl.render(context, autoescape=True)
    tpl.save(str(out))
    return docx.Document(str(out))


def all_text(document: DocxDocument) -> str:
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for r in table.rows:
            parts.extend(c.text for c in r.cells)
    for section in document.sections:
        parts.extend(p.text for p in section.footer.paragraphs)
    return "\n".join(parts)


def valid_rows() -> list[dict[str, Any]]:
    return [row for _, row in load_rows() if not row_errors(row)]


def field(obj: Any, name: str) -> Any:
    """Jinja's ``a.b`` works on attributes and dict keys alike; so must the checks."""
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def check_letter(document: DocxDocument, context: dict[str, Any]) -> None:
    text = all_text(document)
    mottagare = context["mottagare"]
    assert "{{" not in text and "{%" not in text and "}}" not in text
    # Swedish characters survive the round trip
    for fixed in ("Åtgärd", "Hur man överklagar", "förvaltningsrätten", "Med vänlig hälsning"):
        assert fixed in text
    assert field(mottagare, "namn") in text
    assert field(mottagare, "adress") in text
    assert f"{field(mottagare, 'postnummer')} {field(mottagare, 'postort')}" in text
    assert f"Beslut om {context['arendetyp'].lower()}" in text
    assert f"Datum: {context['beslutsdatum']}" in text
    assert f"Diarienummer: {context['diarienummer']}" in text
    assert context["handlaggare"] in text

    # exactly the chosen decision paragraph
    beslut = context["beslut"]
    sentence = DECISION_SENTENCE[beslut]
    decision_paras = [
        p.text for p in document.paragraphs if any(s in p.text for s in DECISION_SENTENCE.values())
    ]
    assert len(decision_paras) == 1, decision_paras
    assert sentence in decision_paras[0]
    assert context["ansokningsdatum"] in decision_paras[0]
    if context["belopp"] and beslut != "Avslag":
        assert f"Beviljat belopp är {context['belopp']}." in decision_paras[0]
    else:
        assert "Beviljat belopp" not in text

    # item table: header + one row per åtgärd, tag rows removed
    items_table = document.tables[1]
    rows = [[c.text for c in r.cells] for r in items_table.rows]
    assert rows[0] == ["Åtgärd", "Beslut"]
    assert rows[1:] == [[field(a, "namn"), field(a, "beslut")] for a in context["atgarder"]]

    if context["motivering"]:
        assert "Motivering" in [p.text for p in document.paragraphs]
        assert context["motivering"] in text
    else:
        assert "Motivering" not in [p.text for p in document.paragraphs]


# -------------------------------------------------------------------- tests


def test_xlsx_has_50_rows_with_exact_headers() -> None:
    wb = openpyxl.load_workbook(XLSX)
    assert wb.sheetnames == ["Ansökningar"]
    ws = wb["Ansökningar"]
    assert [c.value for c in ws[1]] == EXPECTED_HEADERS
    assert ws.max_row == 51
    assert len(load_rows()) == 50
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:P51"
    assert all(c.font.bold for c in ws[1])
    assert ws["J2"].number_format == "yyyy-mm-dd"
    assert ws["L2"].number_format == "yyyy-mm-dd"


def test_xlsx_has_exactly_five_bad_rows_in_the_documented_places() -> None:
    bad = {i: errs for i, row in load_rows() if (errs := row_errors(row))}
    assert set(bad) == set(builder.BAD_ROWS), bad
    assert all(len(errs) == 1 for errs in bad.values()), bad
    assert min(bad) > 2 and max(bad) < 51  # not at the ends
    rows = dict(load_rows())
    assert rows[26]["Beslutsdatum"] == "2026-02-30"
    assert rows[35]["Beslut"] == "Kanske"
    assert rows[17]["Efternamn"] is None
    assert rows[44]["Diarienummer"] is None


def test_xlsx_valid_rows_are_consistent() -> None:
    rows = [row for _, row in load_rows()]
    ids = [r["Diarienummer"] for r in rows if r["Diarienummer"]]
    assert len(ids) == len(set(ids)) == 49
    text = " ".join(str(v) for r in rows for v in r.values() if v)
    for ch in "åäöÅÖÄ":
        assert ch in text
    for row in valid_rows():
        if row["Beslut"] == "Delvis bifall":
            refused = row["Åtgärder"].split("; ")[-1]
            assert row["Motivering"].startswith(refused)
        if row["Beslut"] == "Avslag":
            assert row["Motivering"]


def test_template_declares_exactly_the_documented_variables() -> None:
    tpl = DocxTemplate(str(DOCX))
    assert tpl.get_undeclared_template_variables() == TEMPLATE_VARIABLES


def test_render_first_three_valid_rows(tmp_path: Path) -> None:
    for n, row in enumerate(valid_rows()[:3]):
        context = build_context(row)
        document = render(context, tmp_path / f"letter_{n}.docx")
        check_letter(document, context)


@pytest.mark.parametrize("beslut", ["Bifall", "Delvis bifall", "Avslag"])
def test_render_each_decision_branch(tmp_path: Path, beslut: str) -> None:
    row = next(r for r in valid_rows() if r["Beslut"] == beslut)
    context = build_context(row)
    check_letter(render(context, tmp_path / "letter.docx"), context)


def test_render_with_dicts_and_without_optional_fields(tmp_path: Path) -> None:
    context: dict[str, Any] = {
        "kommun": "Exempelby kommun",
        "forvaltning": "Socialförvaltningen",
        "mottagare": {
            "namn": "Märta Åström",
            "adress": "Östra Långgatan 7 lgh 1102",
            "postnummer": "702 14",
            "postort": "Örebro",
        },
        "diarienummer": "SN-2026-0412",
        "arendetyp": "Ekonomiskt bistånd",
        "beslut": "Bifall",
        "beslutsdatum": "2026-03-02",
        "ansokningsdatum": "2026-02-11",
        "handlaggare": "Karin Åström",
        "belopp": "",
        "motivering": "",
        "atgarder": [{"namn": "Hyra & el <mars>", "beslut": "Beviljas"}],
    }
    # "&" and "<" only survive because render() is called with autoescape=True
    check_letter(render(context, tmp_path / "letter.docx"), context)


def test_builder_is_deterministic_and_matches_committed_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    builder.write_applications(first, builder.generate_applications())
    builder.write_applications(second, builder.generate_applications())
    assert first.read_bytes() == second.read_bytes()
    committed = [list(row.values()) for _, row in load_rows()]
    rebuilt_ws = openpyxl.load_workbook(first)[builder.SHEET_NAME]
    assert [list(r) for r in rebuilt_ws.iter_rows(min_row=2, values_only=True)] == committed

    tpl_a, tpl_b = tmp_path / "a.docx", tmp_path / "b.docx"
    builder.write_template(tpl_a)
    builder.write_template(tpl_b)
    assert tpl_a.read_bytes() == tpl_b.read_bytes()
    with zipfile.ZipFile(tpl_a) as rebuilt_zip, zipfile.ZipFile(DOCX) as committed_zip:
        name = "word/document.xml"
        assert rebuilt_zip.read(name) == committed_zip.read(name)
