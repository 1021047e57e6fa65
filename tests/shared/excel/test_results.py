"""shared.excel.results: results workbooks written back (in the staff language), result cells, and
new one-sheet workbooks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from openpyxl import load_workbook

from shared import excel
from shared.errors import InputError
from shared.excel import Row, read_rows
from shared.items import OUTCOMES, ItemResult, describe_error
from shared.wording import staff_text
from tests.shared.excel.conftest import BAD_PNR, HEADER, PNR, STAFF_HEADER, Decision, decision_register, sheet


def test_write_results_adds_columns_fills_rows_and_leaves_the_source_alone(tmp_path: Path) -> None:
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Åsa"], ["SN-2", PNR, "Örjan"])
    before = source.read_bytes()
    out = excel.write_results(source, tmp_path / "ut" / "reg-resultat.xlsx",
                        {3: {"status": "fel i data", "error": "row 3: trasig"}}, ["status", "error"])
    result = load_workbook(out).active
    assert [cell.value for cell in result[1]] == [*HEADER, "Status", "Fel"]
    assert [c.value for c in result[3]] == ["SN-2", PNR, "Örjan", None, None, "fel i data", "row 3: trasig"]
    assert [cell.value for cell in result[2]][:3] == ["SN-1", PNR, "Åsa"] and result["F2"].value is None
    assert result["F1"].font.bold, "the new header cell takes the header's style"
    assert source.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["reg-resultat.xlsx"]


def test_write_results_over_its_own_output_reuses_the_result_columns(tmp_path: Path) -> None:
    out = tmp_path / "ut" / "res.xlsx"
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo"])
    excel.write_results(source, out, {2: {"status": "tekniskt fel"}}, ["status"])
    excel.write_results(out, out, {2: {"status": "klar"}}, ["status"])
    result = load_workbook(out).active
    assert [cell.value for cell in result[1]] == [*HEADER, "Status"] and result["F2"].value == "klar"
    assert [p.name for p in out.parent.iterdir()] == ["res.xlsx"]


def test_a_save_failing_half_way_leaves_the_old_destination_and_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "ut" / "res.xlsx"
    out.parent.mkdir()
    out.write_bytes(b"the previous results")
    aware = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)  # openpyxl refuses it only while saving
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo"])
    with pytest.raises(TypeError, match="timezones"):
        excel.write_results(source, out, {2: {"status": aware}}, ["status"])
    assert out.read_bytes() == b"the previous results"
    assert [p.name for p in out.parent.iterdir()] == ["res.xlsx"]


def test_result_cells_label_every_outcome_in_swedish() -> None:
    assert all(staff_text(f"outcome.{outcome}", "sv") for outcome in OUTCOMES)
    results = [ItemResult("SN-1", "done", 2, output={"letter": "beslut-SN-1.docx"}),
               ItemResult("SN-2", "skipped", 3, output={"letter": "beslut-SN-2.docx"}),
               ItemResult("SN-3", "business_error", 4, output={"letter": "x"}, error="row 4: fel"),
               ItemResult("SN-4", "app_error", 5, error="timeout"), ItemResult("SN-5", "done", 6)]
    assert excel.result_cells(results, "letter file", "letter") == {
        2: {"status": "klar", "letter file": "beslut-SN-1.docx", "error": ""},
        3: {"status": "redan klar", "letter file": "beslut-SN-2.docx", "error": ""},
        4: {"status": "fel i data", "letter file": "", "error": "row 4: fel"},
        5: {"status": "tekniskt fel", "letter file": "", "error": "timeout"},
        6: {"status": "klar", "letter file": "", "error": ""},
    }


def test_write_results_keeps_the_source_formulas(tmp_path: Path) -> None:
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo", None, "=100*3"])
    result = load_workbook(excel.write_results(source, tmp_path / "res.xlsx", {}, ["status"])).active
    assert result["E2"].value == "=100*3"


# ---------------------------------------------------------------------------------------------------
# Results workbooks in the staff language (issue 10.4): headers, outcomes and worded validation
# problems that name the column and quote the value, masked when it is personal data.
# ---------------------------------------------------------------------------------------------------


def item_results(rows: list[Row[Decision]]) -> list[ItemResult]:
    """What the item layer makes of the rows: a bad row fails with its error line, as a robot raises it."""
    results = []
    for row in rows:
        if row.model is None:
            error = describe_error(InputError(row.error or ""))
            results.append(ItemResult(f"row-{row.number}", "business_error", row.number, error=error,
                                      data=row))
        else:
            results.append(ItemResult(row.model.referens, "done", row.number,
                                      output={"letter": f"brev-{row.model.referens}.docx"}, data=row))
    return results


SWEDISH_ERRORS = {
    3: "Rad 3: kolumnen ”Referens”: för kort värde ”AB” (minst 3 tecken)",
    4: "Rad 4: kolumnen ”Personnummer”: ogiltigt personnummer ”******-****” (fel form eller kontrollsiffra)",
    5: "Rad 5: kolumnen ”Beslut”: ogiltigt värde ”Kanske” (tillåtet: ”Bifall” eller ”Avslag”)",
    6: "Rad 6: kolumnen ”Datum”: ogiltigt datum ”2026-13-45” (skriv ÅÅÅÅ-MM-DD)",
    7: "Rad 7: kolumnen ”Belopp”: för litet värde ”-5” (minst 0)",
    8: "Rad 8: kolumnen ”Antal”: ”tre” är inget heltal",
    9: "Rad 9: kolumnen ”Ort”: ogiltigt värde ”Atlantis” (okänd ort)",
    11: "Rad 11: kolumnen ”Beslut”: värde saknas",
    12: "Rad 12: Belopp vid avslag",
    14: "Rad 14: kolumnen ”Antal”: ”******-****” är inget heltal",
}


ENGLISH_ERRORS = {
    3: "Row 3: column “Referens”: value “AB” is too short (at least 3 characters)",
    4: "Row 4: column “Personnummer”: invalid personnummer “******-****” (format or check digit)",
    5: "Row 5: column “Beslut”: invalid value “Kanske” (allowed: “Bifall” or “Avslag”)",
    6: "Row 6: column “Datum”: invalid date “2026-13-45” (write YYYY-MM-DD)",
    7: "Row 7: column “Belopp”: value “-5” is too small (at least 0)",
    8: "Row 8: column “Antal”: “tre” is not a whole number",
    11: "Row 11: column “Beslut”: required value is empty",
}


@pytest.mark.parametrize(("language", "headers", "outcomes", "expected"), [
    ("sv", ["Status", "Brevfil", "Fel"], ("klar", "fel i data"), SWEDISH_ERRORS),
    ("en", ["Status", "Letter file", "Error"], ("done", "error in data"), ENGLISH_ERRORS),
])
def test_results_workbook_in_the_staff_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, language: str, headers: list[str],
    outcomes: tuple[str, str], expected: dict[int, str],
) -> None:
    monkeypatch.setenv("KANSLI_LANGUAGE", language)
    from shared.settings import load_settings

    staff = load_settings()
    source = decision_register(tmp_path / "beslut.xlsx")
    results = item_results(list(read_rows(source, Decision)))
    cells = excel.result_cells(results, "letter_file", "letter", staff)
    out = excel.write_results(source, tmp_path / "ut.xlsx", cells, ("status", "letter_file", "error"),
                              settings=staff)
    result = load_workbook(out).active
    assert [cell.value for cell in result[1]] == [*STAFF_HEADER, *headers]
    by_row = {number: [cell.value for cell in result[number]][-3:] for number in range(2, 15)}
    assert by_row[2] == [outcomes[0], "brev-SN-1.docx", None]
    assert all(by_row[number][0] == outcomes[1] for number in range(3, 15))
    for number, message in expected.items():
        assert by_row[number][2] == message, number
    more = by_row[13][2]
    assert more.count("”" if language == "sv" else "“") >= 10 and more.endswith(
        "och 2 fel till" if language == "sv" else "and 2 more problem(s)")
    assert "Kod" in by_row[10][2] and ("“xyz”" if language == "en" else "”xyz”") in by_row[10][2]
    errors = " ".join(str(by_row[number][2]) for number in range(3, 15))
    assert BAD_PNR not in errors and PNR not in errors and "9875" not in errors


def test_errors_that_are_not_the_rows_validation_are_kept_as_recorded(tmp_path: Path) -> None:
    rows = list(read_rows(decision_register(tmp_path / "b.xlsx"), Decision))
    bad = next(row for row in rows if row.problems)
    results = [ItemResult("dup", "business_error", bad.number, error="duplicate key 'SN-1' in the input",
                          data=bad),
               ItemResult("SN-1", "app_error", 2, error="the e-service answered HTTP 503", data=rows[0])]
    cells = excel.result_cells(results, "letter_file", "letter", "sv")
    assert cells[bad.number]["error"] == "duplicate key 'SN-1' in the input"
    assert cells[2] == {"status": "tekniskt fel", "letter_file": "",
                        "error": "the e-service answered HTTP 503"}


def test_a_results_workbook_fed_back_in_another_language_reuses_its_columns(tmp_path: Path) -> None:
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo"])
    english = excel.write_results(source, tmp_path / "en.xlsx",
                                  {2: {"status": "done", "case_number": "KS-1"}},
                                  ["status", "case_number"], settings="en")
    assert [cell.value for cell in load_workbook(english).active[1]][-2:] == ["Status", "Case number"]
    swedish = excel.write_results(english, tmp_path / "sv.xlsx",
                                  {2: {"status": "klar", "case_number": "KS-2"}},
                                  ["status", "case_number", "error"], settings="sv")
    result = load_workbook(swedish).active
    assert [cell.value for cell in result[1]] == [*HEADER, "Status", "Ärendenummer", "Fel"]
    assert [cell.value for cell in result[2]][-3:] == ["klar", "KS-2", None]
    old = sheet(tmp_path / "old.xlsx", ["SN-1", PNR, "Bo", None, None, "klar", "beslut.docx"],
                header=[*HEADER, "status", "letter file"])
    again = load_workbook(excel.write_results(old, tmp_path / "again.xlsx", {},
                                              ["status", "letter file"])).active
    assert [cell.value for cell in again[1]] == [*HEADER, "Status", "Brevfil"], "old English keys are reused"
    own = excel.write_results(source, tmp_path / "own.xlsx", {2: {"Påminnelse": "skickad"}}, ["Påminnelse"])
    assert load_workbook(own).active["F1"].value == "Påminnelse", "a name with no wording is its own header"


def test_result_cells_find_the_row_by_number_when_the_item_data_is_not_the_row(tmp_path: Path) -> None:
    rows = list(read_rows(decision_register(tmp_path / "b.xlsx"), Decision))
    queued = [ItemResult(result.key, result.outcome, result.position, output=result.output,
                         error=result.error, data={"stored": "as JSON"}) for result in item_results(rows)]
    assert excel.result_cells(queued, "letter_file", "letter", "sv")[7]["error"] == rows[5].error
    cells = excel.result_cells(queued, "letter_file", "letter", "sv", rows=rows)
    assert cells[7]["error"] == SWEDISH_ERRORS[7]


def test_write_table_writes_a_new_workbook_with_a_frozen_bold_header(tmp_path: Path) -> None:
    from datetime import date
    from decimal import Decimal

    path = excel.write_table(tmp_path / "ut" / "register.xlsx", "Fakturor",
                             ["Fakturanummer", "Belopp", "Datum"],
                             [["2026-1", Decimal("12.50"), date(2026, 12, 1)], ["2026-2", 7, None]])
    sheet = load_workbook(path).active
    assert [[cell.value for cell in row] for row in sheet.iter_rows()][:2] == [
        ["Fakturanummer", "Belopp", "Datum"], ["2026-1", 12.5, sheet["C2"].value]]
    assert sheet.title == "Fakturor" and sheet.freeze_panes == "A2" and sheet["A1"].font.bold
    assert sheet["C2"].value.date() == date(2026, 12, 1) and sheet["C3"].value is None
    assert not list(path.parent.glob(".*.part"))
