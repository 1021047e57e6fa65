"""The decision_letters robot on the demo register: letters, results, bad input, crashes, secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docx import Document
from openpyxl import load_workbook

from demo.scale import scaled_register
from robots.decision_letters import Application
from shared.excel import read_rows
from shared.runner import Runner
from tests.conftest import REPO, kansli

DEMO_INPUT = REPO / "demo" / "data" / "applications.xlsx"
TEMPLATE = REPO / "demo" / "templates" / "beslut.docx"
BAD_ROWS = {8, 17, 26, 35, 44}


def letter_text(path: Path) -> str:
    document = Document(str(path))
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        parts.extend(cell.text for row in table.rows for cell in row.cells)
    return "\n".join(parts)


def test_letters_and_results_for_the_demo_register(kansli_env: Path) -> None:
    out = kansli_env / "brev"
    record = Runner().run("decision_letters", {"input": str(DEMO_INPUT), "output_dir": str(out)})
    assert record.status == "partial"
    assert (record.items_done, record.items_business_error) == (45, 5)
    letters = sorted(out.glob("beslut-*.docx"))
    assert len(letters) == 45
    first = read_rows(DEMO_INPUT, Application)
    row = next(r for r in first if r.model is not None)
    assert row.model is not None
    text = letter_text(out / f"beslut-{row.model.diarienummer}.docx")
    assert f"{row.model.fornamn} {row.model.efternamn}" in text
    assert "Beslut om" in text and "överklagar" in text.lower()
    assert "å" in text and "ä" in text and "ö" in text
    assert "{{" not in text and "{%" not in text
    assert row.model.personnummer not in text

    results = load_workbook(out / "applications-resultat.xlsx")
    sheet = results.worksheets[0]
    header = [cell.value for cell in sheet[1]]
    assert header[-3:] == ["Status", "Brevfil", "Fel"]
    assert sheet.freeze_panes == "A2", "the input's formatting was not kept"
    status_col, file_col, error_col = (header.index(n) + 1 for n in ("Status", "Brevfil", "Fel"))
    for number in range(2, 52):
        status = sheet.cell(number, status_col).value
        if number in BAD_ROWS:
            error = sheet.cell(number, error_col).value
            assert status == "fel i data" and error.startswith(f"Rad {number}: kolumnen ”")
        else:
            assert status == "klar" and sheet.cell(number, file_col).value.startswith("beslut-")
    assert sheet.cell(8, error_col).value == ("Rad 8: kolumnen ”Personnummer”: ogiltigt personnummer "
                                              "”********-****” (fel form eller kontrollsiffra)")
    assert sheet.cell(35, error_col).value == ("Rad 35: kolumnen ”Beslut”: ogiltigt värde ”Kanske” "
                                               "(tillåtet: ”Bifall”, ”Delvis bifall” eller ”Avslag”)")


def test_bad_rows_name_row_and_column(kansli_env: Path) -> None:
    errors = {row.number: row.error for row in read_rows(DEMO_INPUT, Application) if row.error}
    assert set(errors) == BAD_ROWS
    assert "'Personnummer'" in errors[8] and "'Efternamn'" in errors[17]
    assert "'Beslutsdatum'" in errors[26] and "'Beslut'" in errors[35]
    assert "'Diarienummer'" in errors[44]


def _bad_template(path: Path) -> Path:
    from docx import Document as NewDocument

    document = NewDocument()
    document.add_paragraph("Hej {{ mottagare.namn }}, ditt {{ okänt_fält }} och {{ saknas }}.")
    document.save(str(path))
    return path


def _not_writable(work: Path) -> Path:
    blocker = work / "blocker"
    blocker.write_text("a file, not a folder")
    return blocker / "brev"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("input_missing", "file not found"),
        ("not_xlsx", "not an Excel .xlsx workbook"),
        ("empty_sheet", "the sheet is empty"),
        ("missing_column", "missing required column(s) 'Personnummer'"),
        ("template_missing", "template not found"),
        ("template_field", "'okänt_fält', 'saknas'"),
        ("output_not_writable", "is not writable"),
    ],
)
def test_bad_input_gives_one_clear_line(kansli_env: Path, case: str, expected: str) -> None:
    from openpyxl import Workbook

    params = {"input": str(DEMO_INPUT), "output_dir": str(kansli_env / "brev")}
    if case == "input_missing":
        params["input"] = str(kansli_env / "finns-inte.xlsx")
    elif case == "not_xlsx":
        (kansli_env / "text.xlsx").write_text("Diarienummer;Personnummer\n")
        params["input"] = str(kansli_env / "text.xlsx")
    elif case == "empty_sheet":
        Workbook().save(kansli_env / "tom.xlsx")
        params["input"] = str(kansli_env / "tom.xlsx")
    elif case == "missing_column":
        workbook = load_workbook(DEMO_INPUT)
        workbook.worksheets[0].delete_cols(2)
        workbook.save(kansli_env / "utan.xlsx")
        params["input"] = str(kansli_env / "utan.xlsx")
    elif case == "template_missing":
        params["template"] = str(kansli_env / "ingen.docx")
    elif case == "template_field":
        params["template"] = str(_bad_template(kansli_env / "fel.docx"))
    elif case == "output_not_writable":
        params["output_dir"] = str(_not_writable(kansli_env))
    args = [arg for key, value in params.items() for arg in ("-p", f"{key}={value}")]
    result = kansli("run", "decision_letters", *args, cwd=kansli_env)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("kansli: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert result.stderr.strip() == errors[0], "more than one line on stderr"
    assert not list((kansli_env / "brev").glob("*.docx")) if (kansli_env / "brev").exists() else True
    assert not list(kansli_env.rglob("*.part")), "a temp file was left behind"


def test_sigkill_half_way_then_rerun_writes_no_letter_twice(kansli_env: Path) -> None:
    valid = {row.number for row in read_rows(DEMO_INPUT, Application) if row.model}
    register = scaled_register(kansli_env / "stor.xlsx", 150, valid=valid)
    out = kansli_env / "brev"
    command = [sys.executable, "-m", "shared.cli", "run", "decision_letters",
               "-p", f"input={register}", "-p", f"output_dir={out}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=kansli_env, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list(out.glob("beslut-*.docx"))) < 20:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {path.name: path.stat().st_mtime_ns for path in out.glob("beslut-*.docx")}
    assert 20 <= len(before) < 150, "the kill did not land half-way"

    result = subprocess.run(command, cwd=kansli_env, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    after = {path.name: path.stat().st_mtime_ns for path in out.glob("beslut-*.docx")}
    assert len(after) == 150
    assert {name: after[name] for name in before} == before, "a letter was written twice"
    assert not list(out.glob("*.part"))
    runs = Runner().store.list_runs(robot="decision_letters")
    assert [run.status for run in runs] == ["succeeded", "interrupted"]
    assert runs[0].items_skipped + runs[0].items_done == 150
    assert runs[0].items_done == 150 - runs[0].items_skipped


CANARY = "kanariefågel-hemlis-7781"
PERSONNUMMER = "19811218-9876"


def test_no_secret_or_personnummer_in_anything_the_run_wrote(kansli_env: Path) -> None:
    (kansli_env / ".env").write_text(
        f"KANSLI_ESERVICE__PASSWORD={CANARY}\nKANSLI_AUDIT__KEY={CANARY}-audit\n", encoding="utf-8"
    )
    out = kansli_env / "ut" / PERSONNUMMER
    ok = kansli("run", "decision_letters", "-p", f"input={DEMO_INPUT}", "-p", f"output_dir={out}",
                cwd=kansli_env)
    failing = kansli("run", "decision_letters", "-p", f"input={DEMO_INPUT}",
                     "-p", f"template=/tmp/{CANARY}/{PERSONNUMMER}.docx", cwd=kansli_env)
    shown = [kansli(*args, cwd=kansli_env) for args in (["runs", "--json"], ["config"])]
    assert ok.returncode == 3 and failing.returncode == 1
    assert "******-****" in failing.stderr
    console = "".join(r.stdout + r.stderr for r in [ok, failing, *shown])
    digits = PERSONNUMMER.replace("-", "")[2:]
    for needle in (CANARY, PERSONNUMMER, PERSONNUMMER[2:], digits):
        assert needle not in console
    scanned = 0
    for path in kansli_env.rglob("*"):
        if not path.is_file() or path.name == ".env" or path.suffix in (".docx", ".xlsx"):
            continue  # letters and the results workbook are the robot's deliverables
        content = path.read_bytes()
        scanned += 1
        for needle in (CANARY, PERSONNUMMER, digits):
            assert needle.encode() not in content, f"{needle} in {path}"
    assert scanned >= 5


def test_another_output_dir_writes_only_the_new_cases_and_a_corrected_decision_a_new_letter(
    kansli_env: Path, database_url: str
) -> None:
    register = kansli_env / "ansokningar.xlsx"
    workbook = load_workbook(DEMO_INPUT)
    sheet = workbook.worksheets[0]
    header = [cell.value for cell in sheet[1]]
    for number in range(sheet.max_row, 12, -1):  # rows 2-12 now; 13-51 arrive later
        sheet.delete_rows(number)
    workbook.save(register)
    first = Runner().run("decision_letters", {"input": str(register), "output_dir": str(kansli_env / "a")})
    written_first = {path.name for path in (kansli_env / "a").glob("beslut-*.docx")}
    assert first.items_done == len(written_first) == 10  # row 8 is bad

    grown = kansli_env / "ansokningar-hela.xlsx"
    full = load_workbook(DEMO_INPUT)
    decision, reason = header.index("Beslut") + 1, header.index("Motivering") + 1
    corrected = full.worksheets[0].cell(3, decision).value
    full.worksheets[0].cell(3, decision, "Avslag" if corrected != "Avslag" else "Bifall")
    full.worksheets[0].cell(3, reason, "Omprövat beslut efter komplettering.")
    full.save(grown)
    second = Runner().run("decision_letters", {"input": str(grown), "output_dir": str(kansli_env / "b")})
    written = {path.name for path in (kansli_env / "b").glob("beslut-*.docx")}
    new_cases = 45 - 10
    assert len(written) == new_cases + 1  # the new cases, and row 3's corrected decision
    assert not (written & written_first) - {f"beslut-{sheet.cell(3, 1).value}.docx"}
    items = {item.key: item for item in Runner().store.list_items(second.run_id)}
    [redone] = [item for item in items.values() if item.note == "version 2"]
    assert redone.key == sheet.cell(3, header.index("Diarienummer") + 1).value
    assert "Omprövat beslut" in letter_text(kansli_env / "b" / f"beslut-{redone.key}.docx")
    assert second.items_skipped == 9 and second.items_done == new_cases + 1


def test_results_workbook_in_english_when_staff_read_english(
    kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.settings import load_settings

    monkeypatch.setenv("KANSLI_LANGUAGE", "en")
    out = kansli_env / "letters"
    Runner(load_settings()).run("decision_letters", {"input": str(DEMO_INPUT), "output_dir": str(out)})
    sheet = load_workbook(out / "applications-resultat.xlsx").worksheets[0]
    header = [cell.value for cell in sheet[1]]
    assert header[-3:] == ["Status", "Letter file", "Error"]
    status_col, error_col = header.index("Status") + 1, header.index("Error") + 1
    assert sheet.cell(2, status_col).value == "done" and sheet.cell(8, status_col).value == "error in data"
    assert sheet.cell(26, error_col).value == (
        "Row 26: column “Beslutsdatum”: invalid date “2026-02-30” (write YYYY-MM-DD)")
    assert sheet.cell(17, error_col).value == "Row 17: column “Efternamn”: required value is empty"


def test_pdf_true_writes_an_archivable_pdf_a_beside_each_letter(kansli_env: Path) -> None:
    from shared.pdf import check_pdfa, read_pdf

    register = kansli_env / "tre.xlsx"
    workbook = load_workbook(DEMO_INPUT)
    sheet = workbook.worksheets[0]
    for number in range(sheet.max_row, 4, -1):  # rows 2-4: three applications
        sheet.delete_rows(number)
    workbook.save(register)
    out = kansli_env / "brev"
    result = kansli("run", "decision_letters", "-p", f"input={register}", "-p", f"output_dir={out}",
                    "-p", "pdf=true", cwd=kansli_env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    pdfs = sorted(out.glob("beslut-*.pdf"))
    assert [p.stem for p in pdfs] == sorted(p.stem for p in out.glob("beslut-*.docx")) and len(pdfs) == 3
    for path in pdfs:
        check_pdfa(path)  # PDF/A-2b identification, output intent, every font embedded
        assert "Beslut om" in read_pdf(path, tables=False).text
    record = Runner().store.list_runs(robot="decision_letters")[0]
    outputs = [item.output for item in Runner().store.list_items(record.run_id)]
    assert all(output["pdf"].endswith(".pdf") for output in outputs)
