"""shared.excel: registers read into pydantic models row by row, and results workbooks written back."""

from __future__ import annotations

import datetime as dt
import os
import warnings
import zipfile
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bench.fuzz_inputs import FuzzRow, mutated, read_outcome, seed_workbook, with_shared_strings
from shared import excel
from shared.errors import InputError
from shared.excel import Personnummer, Postnummer, Row, read_rows
from shared.items import OUTCOMES, ItemResult
from shared.redaction import redact
from shared.wording import staff_text

HEADER = ["Referens", "Personnummer", "Förnamn", "Postnummer", "Belopp"]
PNR = "811218-9876"


@pytest.fixture(autouse=True, params=["fast", "openpyxl"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with both sheet readers: calamine where it may read (a plain sheet),
    and openpyxl alone (tests/shared/test_excel_readers.py shows the two agree)."""
    from shared import _sheets

    monkeypatch.setattr(_sheets, "FAST", request.param == "fast")
    return str(request.param)


class Person(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True, str_strip_whitespace=True)

    referens: str = Field(alias="Referens", min_length=1)
    personnummer: Personnummer = Field(alias="Personnummer")
    fornamn: str = Field(alias="Förnamn", min_length=1)
    postnummer: Postnummer | None = Field(default=None, alias="Postnummer")
    belopp: int | None = Field(default=None, alias="Belopp")


def sheet(path: Path, *rows: list[Any], header: list[Any] | None = None) -> Path:
    workbook = Workbook()
    workbook.active.append(HEADER if header is None else header)
    for cell in workbook.active[1]:
        cell.font = Font(bold=True)
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


def test_good_rows_become_models_with_excel_row_numbers_and_swedish_text(tmp_path: Path) -> None:
    path = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Åsa Öberg-Ärlig", 11434, 12500],
                 [None, "  ", None], ["SN-2", "19121212-1212", "Märta", "702 14", None])
    rows = list(read_rows(path, Person))
    assert [row.number for row in rows] == [2, 4], "the blank row 3 is passed over but still counted"
    first = rows[0].model
    assert first is not None and rows[0].error is None
    assert (first.fornamn, first.postnummer, first.belopp) == ("Åsa Öberg-Ärlig", "114 34", 12500)
    assert rows[0].values["Förnamn"] == "Åsa Öberg-Ärlig" and rows[0].values["Postnummer"] == 11434
    assert rows[1].model is not None and rows[1].model.personnummer == "19121212-1212"


def test_headers_are_trimmed_but_matched_case_sensitively(tmp_path: Path) -> None:
    trimmed = sheet(tmp_path / "trim.xlsx", ["SN-1", PNR, "Bo"],
                    header=["  Referens ", "Personnummer\t", " Förnamn"])
    assert [row.model is not None for row in read_rows(trimmed, Person)] == [True]
    lower = sheet(tmp_path / "lower.xlsx", ["SN-1", PNR, "Bo"], header=["referens", *HEADER[1:3]])
    with pytest.raises(InputError, match=r"lower\.xlsx, sheet 'Sheet': missing required column\(s\) "
                       r"'Referens' \(.*the closest is row 1, which has 'referens': the case differs\)$"):
        list(read_rows(lower, Person))


def test_missing_required_columns_give_one_error_naming_file_and_all_columns(tmp_path: Path) -> None:
    path = sheet(tmp_path / "utan.xlsx", ["SN-1"], header=["Referens", "Postnummer"])
    with pytest.raises(InputError) as caught:
        list(read_rows(path, Person))
    assert str(caught.value) == (f"{path}, sheet 'Sheet': missing required column(s) 'Personnummer', "
                                 "'Förnamn' (no row among the first 20 has them all; the closest is row 1)")


def test_a_bad_cell_fails_only_its_row_naming_row_and_column(tmp_path: Path) -> None:
    path = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo", None, "tre"], ["SN-2", PNR, "   "],
                 ["SN-3", "811218-9875", "Ada", "1234", "x"], ["SN-4", PNR, "Eva"])
    rows = {row.number: row for row in read_rows(path, Person)}
    assert rows[2].error is not None and rows[2].error.startswith("row 2: column 'Belopp': Input should be")
    assert rows[3].error == "row 3: column 'Förnamn': required value is empty"
    assert rows[4].error is not None and rows[4].error.endswith("(and 2 more problems)")
    assert all(rows[n].model is None for n in (2, 3, 4)) and rows[5].model is not None
    assert rows[2].values["Belopp"] == "tre", "the raw values stay on a bad row"


@pytest.mark.parametrize("number", ["811218-9875", "198112189875", "8113189875", "811218-98"])
def test_personnummer_error_names_the_column_but_never_the_number(tmp_path: Path, number: str) -> None:
    path = sheet(tmp_path / "reg.xlsx", ["SN-1", number, "Bo"])
    (row,) = read_rows(path, Person)
    assert row.error == "row 2: column 'Personnummer': not a valid personnummer (format or check digit)"
    assert redact(row.error) == row.error


@pytest.mark.parametrize("number", ["811218-9876", "8112189876", "19811218-9876", "198112189876",
                                    "811218+9876", "811278-9873", "121212-1212", " 121212-1212 "])
def test_personnummer_accepts_10_or_12_digits_and_samordningsnummer(number: str) -> None:
    assert TypeAdapter(Personnummer).validate_python(number) == number.strip()


@pytest.mark.parametrize("number", ["811218-9875", "8113189875", "8112329878", "8112929875", "8100189870",
                                    "18811218-9876", "81121898765", "811218/9876", "ÅÄÖ", ""])
def test_personnummer_rejects_bad_check_digit_date_century_and_format(number: str) -> None:
    with pytest.raises(ValidationError, match="not a valid personnummer"):
        TypeAdapter(Personnummer).validate_python(number)


@pytest.mark.parametrize("raw", ["12345", "123 45", " 1 2345"])
def test_postnummer_is_normalised_to_three_plus_two_digits(raw: str) -> None:
    assert TypeAdapter(Postnummer).validate_python(raw) == "123 45"


@pytest.mark.parametrize("raw", ["1234", "123456", "12a45", "123-45", ""])
def test_postnummer_rejects_anything_but_five_digits(raw: str) -> None:
    with pytest.raises(ValidationError, match="not a valid postnummer"):
        TypeAdapter(Postnummer).validate_python(raw)


@pytest.mark.parametrize("content", [os.urandom(512), b"Referens;Personnummer\nSN-1;x\n", b"",
                                     b"PK\x03\x04 truncated zip"])
def test_a_file_that_is_not_an_xlsx_raises_input_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "register.xlsx"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"register\.xlsx: not an Excel \.xlsx workbook"):
        list(read_rows(path, Person))


def test_missing_file_directory_unknown_or_empty_sheet_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"finns-inte\.xlsx: file not found"):
        list(read_rows(tmp_path / "finns-inte.xlsx", Person))
    with pytest.raises(InputError, match="is a directory"):
        list(read_rows(tmp_path, Person))
    with pytest.raises(InputError, match="no sheet named 'Blad9'"):
        list(read_rows(sheet(tmp_path / "reg.xlsx"), Person, sheet="Blad9"))
    Workbook().save(tmp_path / "tom.xlsx")
    with pytest.raises(InputError, match=r"tom\.xlsx, sheet 'Sheet': the sheet is empty"):
        list(read_rows(tmp_path / "tom.xlsx", Person))
    assert list(read_rows(sheet(tmp_path / "header.xlsx"), Person)) == []


def test_row_key_trims_the_value_and_is_empty_without_one() -> None:
    def key(value: Any, number: int = 7) -> str:
        return excel.row_key(Row(number, {"Referens": value}), "Referens")

    assert (key(" SN-2026-01 "), key(4711), key(None), key("   "), key("", 8)) == (
        "SN-2026-01", "4711", "", "", "")  # never the row number: it changes when the register does
    assert excel.row_key(Row(9, {}), "Saknas") == ""
    assert key("SN-1", 2) == key(" SN-1", 3), "duplicates keep one key, for the item layer to reject"


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


def test_read_rows_is_not_fooled_by_a_wrong_dimension_record(tmp_path: Path) -> None:
    good, stale = sheet(tmp_path / "good.xlsx", ["SN-1", PNR, "Bo"]), tmp_path / "stale.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(stale, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b'<dimension ref="A1:E2"/>', b'<dimension ref="A1"/>')
                assert b'<dimension ref="A1"/>' in data
            target.writestr(info, data)
    assert [row.model is not None for row in read_rows(stale, Person)] == [True]


# ---------------------------------------------------------------------------------------------------
# Results workbooks in the staff language (issue 10.4): headers, outcomes and worded validation
# problems that name the column and quote the value, masked when it is personal data.
# ---------------------------------------------------------------------------------------------------

from datetime import date as _date  # noqa: E402
from typing import Literal as _Literal  # noqa: E402
from uuid import UUID as _UUID  # noqa: E402

from pydantic import field_validator, model_validator  # noqa: E402

from shared.items import describe_error  # noqa: E402
from shared.redaction import register_secret  # noqa: E402
from shared.wording import LANGUAGES, wording  # noqa: E402

STAFF_HEADER = ["Referens", "Personnummer", "Beslut", "Datum", "Belopp", "Antal", "Ort", "Kod"]


class Decision(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True, str_strip_whitespace=True)

    referens: str = Field(alias="Referens", min_length=3)
    personnummer: Personnummer = Field(alias="Personnummer")
    beslut: _Literal["Bifall", "Avslag"] = Field(alias="Beslut")
    datum: _date = Field(alias="Datum")
    belopp: int | None = Field(default=None, alias="Belopp", ge=0)
    antal: int | None = Field(default=None, alias="Antal")
    ort: str | None = Field(default=None, alias="Ort")
    kod: _UUID | None = Field(default=None, alias="Kod")

    @field_validator("ort")
    @classmethod
    def known_town(cls, value: str | None) -> str | None:
        if value is not None and value not in ("Exempelby", "Åby"):
            raise ValueError("okänd ort")
        return value

    @model_validator(mode="after")
    def no_amount_when_refused(self) -> Decision:
        if self.beslut == "Avslag" and self.belopp:
            raise ValueError("Belopp vid avslag")
        return self


GOOD = ["SN-1", PNR, "Bifall", _date(2026, 3, 1), 100, 2, "Åby", None]
BAD_PNR = "811218-9875"  # a wrong check digit: redact() alone would leave it


def decision_register(path: Path) -> Path:
    def variant(**changes: Any) -> list[Any]:
        row = dict(zip(STAFF_HEADER, GOOD, strict=True))
        row.update(changes)
        return list(row.values())

    return sheet(path, GOOD, variant(Referens="AB"), variant(Personnummer=BAD_PNR),
                 variant(Beslut="Kanske"), variant(Datum="2026-13-45"), variant(Belopp=-5),
                 variant(Antal="tre"), variant(Ort="Atlantis"), variant(Kod="xyz"), variant(Beslut=None),
                 variant(Beslut="Avslag"), variant(Referens="A", Personnummer="19811218-98", Beslut="Ja",
                                                   Datum="igår", Belopp=-1, Antal="x", Kod="y"),
                 variant(Antal=PNR), header=STAFF_HEADER)


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


def test_an_unknown_error_type_still_names_the_column_and_quotes_the_value(tmp_path: Path) -> None:
    rows = {row.number: row for row in read_rows(decision_register(tmp_path / "b.xlsx"), Decision)}
    swedish = excel.word_problems(rows[10], wording("sv"))
    assert swedish.startswith("Rad 10: kolumnen ”Kod”: ogiltigt värde ”xyz” (Input should be a valid UUID")
    english = excel.word_problems(rows[10], wording("en"))
    assert english.startswith("Row 10: column “Kod”: invalid value “xyz”")
    missing = excel.CellProblem("Förnamn", "missing", "Field required", {"whole": "row"})
    assert excel.word_problem(missing, wording("sv")) == "kolumnen ”Förnamn”: värde saknas"


def test_the_english_error_line_for_logs_is_unchanged_and_quotes_nothing(tmp_path: Path) -> None:
    rows = {row.number: row for row in read_rows(decision_register(tmp_path / "b.xlsx"), Decision)}
    assert rows[4].error == "row 4: column 'Personnummer': not a valid personnummer (format or check digit)"
    assert rows[8].error is not None and "tre" not in rows[8].error
    assert [problem.column for problem in rows[13].problems] == [
        "Referens", "Personnummer", "Beslut", "Datum", "Belopp", "Antal", "Kod"]
    assert rows[4].problems[0].personal and not rows[8].problems[0].personal


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


class Named(BaseModel):
    namn: str = Field(alias="Namn")
    personnr: str = Field(alias="Personnr")
    typed: Personnummer | None = Field(default=None, alias="Sökande")


def test_personal_columns_are_found_by_type_and_by_name() -> None:
    assert excel.personal_columns(Named) == frozenset({"Personnr", "Sökande"})
    assert excel.personal_columns(Decision) == frozenset({"Personnummer"})


def _problems(model: type[BaseModel], data: dict[str, Any]) -> list[excel.CellProblem]:
    try:
        model.model_validate(data)
    except ValidationError as error:
        return excel.cell_problems(error, model)
    return []


@settings(max_examples=150, deadline=None)
@given(value=st.one_of(st.text(max_size=30), st.from_regex(r"(19|20)?\d{6}[-+]?\d{3,5}", fullmatch=True)))
def test_a_personal_value_is_never_quoted_with_its_digits(value: str) -> None:
    good = dict(zip(STAFF_HEADER, GOOD, strict=True))
    for problem in _problems(Decision, {**good, "Personnummer": value.strip() or None}):
        assert problem.column == "Personnummer"
        for language in LANGUAGES:
            worded = excel.word_problem(problem, wording(language))
            assert not any(char.isdigit() for char in worded), worded
            assert "Personnummer" in worded


CELL_VALUES = st.one_of(st.none(), st.text(max_size=60), st.integers(), st.floats(allow_nan=False),
                        st.dates(), st.datetimes(), st.booleans())


@settings(max_examples=200, deadline=None)
@given(column=st.sampled_from(STAFF_HEADER[2:]), value=CELL_VALUES)
def test_any_bad_value_is_worded_naming_its_column_and_quoting_it_safely(column: str, value: Any) -> None:
    register_secret("hemligt-lösen-42")
    good = dict(zip(STAFF_HEADER, GOOD, strict=True))
    for problem in _problems(Decision, {**good, column: value}):
        for language in LANGUAGES:
            worded = excel.word_problem(problem, wording(language))
            if problem.column:
                assert worded.startswith("kolumnen ”" if language == "sv" else "column “")
                assert problem.column in worded
            assert redact(worded) == worded, "a valid personnummer or a secret in clear"
            assert len(worded) < 400


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


# --- registers in other styles: title rows, several sheets, repeated headers, merged cells, formulas ---

def rewritten(source: Path, target: Path, member: str, change: Any) -> Path:
    """A copy of the zip ``source`` with ``member`` passed through ``change`` (bytes -> bytes)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in original.infolist():
            data = original.read(info.filename)
            copy.writestr(info, change(data) if info.filename == member else data)
    return target


def sheet_xml(path: Path, member: str = "xl/worksheets/sheet1.xml") -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(member)


def test_title_rows_above_the_header_are_passed_over_and_row_numbers_stay_the_sheets(tmp_path: Path) -> None:
    workbook = Workbook()
    worksheet = workbook.active
    worksheet["A1"] = "Ansökningar om bidrag 2026"
    worksheet["A2"] = "Utdrag ur verksamhetssystemet 2026-11-30"
    worksheet.append([])
    worksheet.append(HEADER)  # row 4
    worksheet.append(["SN-1", PNR, "Åsa"])
    worksheet.append([None])
    worksheet.append(["SN-2", PNR, "Bo"])
    workbook.save(tmp_path / "titel.xlsx")
    rows = list(read_rows(tmp_path / "titel.xlsx", Person))
    assert [(row.number, row.values["Referens"]) for row in rows] == [(5, "SN-1"), (7, "SN-2")]
    assert all(row.model is not None for row in rows)
    given = list(read_rows(tmp_path / "titel.xlsx", Person, header_row=4))
    assert [row.number for row in given] == [5, 7]
    with pytest.raises(InputError, match=r"titel\.xlsx, sheet 'Sheet': missing required column\(s\) "
                       r"'Referens', 'Personnummer', 'Förnamn' in the header row 2$"):
        list(read_rows(tmp_path / "titel.xlsx", Person, header_row=2))
    with pytest.raises(InputError, match=r"titel\.xlsx, sheet 'Sheet', row 3: the header row is empty$"):
        list(read_rows(tmp_path / "titel.xlsx", Person, header_row=3))


def test_a_header_below_row_20_is_not_looked_for(tmp_path: Path) -> None:
    workbook = Workbook()
    for number in range(1, 22):
        workbook.active.append([f"Anteckning {number}"])
    workbook.active.append(HEADER)
    workbook.active.append(["SN-1", PNR, "Åsa"])
    workbook.save(tmp_path / "djup.xlsx")
    with pytest.raises(InputError, match=r"djup\.xlsx, sheet 'Sheet': missing required column\(s\) "
                       r"'Referens', 'Personnummer', 'Förnamn' \(no row among the first 20 has them all; "
                       r"the closest is row 1\)"):
        list(read_rows(tmp_path / "djup.xlsx", Person))
    assert [row.number for row in read_rows(tmp_path / "djup.xlsx", Person, header_row=22)] == [23]


def test_the_sheet_is_chosen_by_name_and_an_unknown_name_lists_the_sheets(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.title = "Instruktioner"
    workbook.active["A1"] = "Fyll i bladet Ansökningar"
    data = workbook.create_sheet("Ansökningar")
    data.append(["Rapport"])
    data.append(HEADER)
    data.append(["SN-9", PNR, "Örjan"])
    workbook.save(tmp_path / "blad.xlsx")
    (row,) = read_rows(tmp_path / "blad.xlsx", Person, sheet="Ansökningar")
    assert (row.number, row.model is not None) == (3, True)
    with pytest.raises(InputError, match=r"blad\.xlsx: no sheet named 'Blad1' \(the sheets are "
                       r"'Instruktioner', 'Ansökningar'\)$"):
        list(read_rows(tmp_path / "blad.xlsx", Person, sheet="Blad1"))
    with pytest.raises(InputError, match=r"blad\.xlsx, sheet 'Instruktioner': missing required column"):
        list(read_rows(tmp_path / "blad.xlsx", Person))


def test_a_header_the_model_uses_twice_is_an_error_naming_both_columns(tmp_path: Path) -> None:
    path = sheet(tmp_path / "dubbel.xlsx", ["SN-1", PNR, "Bo", 100, 200],
                 header=["Referens", "Personnummer", "Förnamn", "Belopp", "Belopp"])
    with pytest.raises(InputError) as caught:
        list(read_rows(path, Person))
    assert str(caught.value) == (f"{path}, sheet 'Sheet', row 1: the header 'Belopp' is in 2 columns, "
                                 "D and E: rename or remove all but one of them")
    triple = sheet(tmp_path / "tre.xlsx", ["SN-1", PNR, "Bo"],
                   header=["Referens", "Personnummer", "Förnamn", "Referens", None, "Referens"])
    with pytest.raises(InputError, match=r"the header 'Referens' is in 3 columns, A, D and F"):
        list(read_rows(triple, Person))


def test_a_repeated_header_the_model_does_not_use_is_read_leftmost(tmp_path: Path) -> None:
    path = sheet(tmp_path / "anteckning.xlsx", ["SN-1", PNR, "Bo", "första", "andra"],
                 header=[*HEADER[:3], "Anteckning", "Anteckning"])
    (row,) = read_rows(path, Person)
    assert row.model is not None and row.values["Anteckning"] == "första"


def test_a_formula_without_a_computed_value_is_named_and_one_with_a_value_is_read(tmp_path: Path) -> None:
    path = sheet(tmp_path / "formel.xlsx", ["SN-1", PNR, "Bo", None, "=100*3"], ["SN-2", PNR, "Eva", None, 7],
                 ["SN-3", PNR, "Ada", None, None, "=A4&\"-x\""], header=[*HEADER, "Anteckning"])
    rows = {row.number: row for row in read_rows(path, Person)}
    assert rows[2].error == ("row 2: column 'Belopp': E2 holds a formula with no computed value: "
                             "open and save the file in Excel")
    assert rows[2].model is None and rows[2].values["Belopp"] is None
    assert rows[3].model is not None and rows[3].model.belopp == 7
    assert rows[4].model is not None, "a formula in a column the model does not use is no problem"
    computed = rewritten(path, tmp_path / "beraknad.xlsx", "xl/worksheets/sheet1.xml",
                         lambda xml: xml.replace(b"<f>100*3</f><v></v>", b"<f>100*3</f><v>300</v>"))
    assert b"<v>300</v>" in sheet_xml(computed)
    assert next(read_rows(computed, Person)).model.belopp == 300  # type: ignore[union-attr]


def test_an_excel_error_or_a_date_excel_cannot_show_is_named_not_read_as_text(tmp_path: Path) -> None:
    path = sheet(tmp_path / "fel.xlsx", ["SN-1", PNR, "Bo"], ["SN-2", PNR, "Eva", None, 5],
                 ["SN-3", PNR, "Ada"], header=[*HEADER, "Datum"])
    workbook = load_workbook(path)
    workbook.active["F3"] = dt.date(2026, 12, 1)
    workbook.active["F4"] = dt.date(2026, 12, 2)
    workbook.save(path)

    class Dated(Person):
        datum: dt.date | None = Field(default=None, alias="Datum")

    def damage(xml: bytes) -> bytes:  # a failed VLOOKUP in a name, and a serial number past 9999-12-31
        failed = b'<c r="C2" t="e"><f>VLOOKUP(A2,Blad2!A:B,2,0)</f><v>#N/A</v></c>'
        return xml.replace(cell_xml(xml, "C2"), failed).replace(b"<v>46358</v>", b"<v>2958467</v>")

    assert b"<v>46358</v>" in cell_xml(sheet_xml(path), "F4")
    broken = rewritten(path, tmp_path / "trasig.xlsx", "xl/worksheets/sheet1.xml", damage)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # openpyxl's own warning for the date is not let out
        rows = {row.number: row for row in read_rows(broken, Dated)}
    assert rows[2].error == ("row 2: column 'Förnamn': C2 holds the Excel error #N/A (a failed formula, or a "
                             "date out of range)") and rows[2].values["Förnamn"] == "#N/A"
    assert rows[3].model is not None and rows[3].model.datum == dt.date(2026, 12, 1)
    assert rows[4].error == ("row 4: column 'Datum': F4 holds the Excel error #VALUE! (a failed formula, or "
                             "a date out of range)")


def test_sheet_extensions_of_newer_excel_versions_are_read_past_without_warnings(tmp_path: Path) -> None:
    source = sheet(tmp_path / "reg.xlsx", ["SN-1", PNR, "Bo"])
    extension = (b'<extLst><ext uri="{CCE6A557-97BC-4b89-ADB6-D9C93CAAB3DF}" xmlns:x14="http://schemas.'
                 b'microsoft.com/office/spreadsheetml/2009/9/main"><x14:dataValidations count="0"/></ext>'
                 b"</extLst></worksheet>")
    newer = rewritten(source, tmp_path / "ny.xlsx", "xl/worksheets/sheet1.xml",
                      lambda xml: xml.replace(b"</worksheet>", extension))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [row.model is not None for row in read_rows(newer, Person)] == [True]
        excel.write_results(newer, tmp_path / "res.xlsx", {2: {"status": "klar"}}, ["status"])
    assert load_workbook(tmp_path / "res.xlsx").active["F2"].value == "klar"


class Visit(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)

    referens: str = Field(alias="Referens")
    handlaggare: Annotated[str, excel.MergedTopLeft()] = Field(alias="Handläggare")
    enhet: str = Field(alias="Enhet")


def merged_register(path: Path) -> Path:
    workbook = Workbook()
    worksheet = workbook.active
    worksheet.append(["Referens", "Handläggare", "Enhet"])
    worksheet.append(["SN-1", "Karin Ek", "Norr"])
    worksheet.append(["SN-2", None, "Söder"])
    worksheet.append(["SN-3", None, None])
    worksheet.append(["SN-4", "Lars Björk", "Väster"])
    worksheet.merge_cells("B2:B4")
    worksheet.merge_cells("C3:C4")
    workbook.save(path)
    return path


def test_merged_cells_take_the_top_left_value_only_when_the_model_asks(tmp_path: Path) -> None:
    path = merged_register(tmp_path / "sammanslagen.xlsx")
    rows = {row.number: row for row in read_rows(path, Visit)}
    assert [(rows[n].model.referens, rows[n].model.handlaggare) for n in (2, 3, 5)] == [  # type: ignore[union-attr]
        ("SN-1", "Karin Ek"), ("SN-2", "Karin Ek"), ("SN-4", "Lars Björk")]
    assert rows[4].values["Handläggare"] == "Karin Ek", "the filled value is the row's raw value too"
    take = "mark the field MergedTopLeft() or read with merged='top_left' to take their first value"
    assert rows[4].error == ("row 4: column 'Enhet': required value is empty (C4 is inside the merged "
                             f"cells C3:C4: {take})"), "Enhet is not marked"
    assert rows[3].model is not None and rows[3].model.handlaggare == "Karin Ek"
    everything = {row.number: row.model for row in read_rows(path, Visit, merged="top_left")}
    assert [(m.handlaggare, m.enhet) for m in everything.values() if m] == [
        ("Karin Ek", "Norr"), ("Karin Ek", "Söder"), ("Karin Ek", "Söder"), ("Lars Björk", "Väster")]

    class Plain(BaseModel):
        referens: str = Field(alias="Referens")
        handlaggare: str = Field(alias="Handläggare")

    plain = {row.number: row.error for row in read_rows(path, Plain)}
    hint = ("is inside the merged cells B2:B4: mark the field MergedTopLeft() or read with merged='top_left' "
            "to take their first value)")
    assert plain == {2: None, 3: f"row 3: column 'Handläggare': required value is empty (B3 {hint}",
                     4: f"row 4: column 'Handläggare': required value is empty (B4 {hint}", 5: None}


# --- files that are not what their name says ---

def compound_file(*streams: str) -> bytes:
    """An OLE2 compound file (the container of .xls, .doc and encrypted Office files) with empty streams."""
    end, free = 0xFFFFFFFE, 0xFFFFFFFF
    header = bytearray(512)
    header[:8] = bytes.fromhex("d0cf11e0a1b11ae1")
    header[24:34] = (0x3E).to_bytes(2, "little") + (3).to_bytes(2, "little") + b"\xfe\xff" + \
        (9).to_bytes(2, "little") + (6).to_bytes(2, "little")
    header[44:48] = (1).to_bytes(4, "little")  # one FAT sector
    header[48:52] = (1).to_bytes(4, "little")  # the directory starts at sector 1
    header[56:60] = (4096).to_bytes(4, "little")
    header[60:64] = end.to_bytes(4, "little")
    header[68:72] = end.to_bytes(4, "little")
    header[76:80] = (0).to_bytes(4, "little")  # DIFAT: the FAT is sector 0
    header[80:512] = b"\xff" * 432
    fat = bytearray(b"\xff" * 512)
    fat[0:8] = (0xFFFFFFFD).to_bytes(4, "little") + end.to_bytes(4, "little")
    directory = bytearray()
    for index, name in enumerate(["Root Entry", *streams]):
        encoded = (name + "\0").encode("utf-16-le")
        entry = bytearray(128)
        entry[: len(encoded)] = encoded
        entry[64:66] = len(encoded).to_bytes(2, "little")
        entry[66] = 5 if index == 0 else 2
        child = 1 if index == 0 and streams else free
        entry[68:80] = free.to_bytes(4, "little") * 2 + child.to_bytes(4, "little")
        entry[116:120] = end.to_bytes(4, "little")
        directory += entry
    directory += bytes(512 - len(directory) % 512) if len(directory) % 512 else b""
    return bytes(header + fat + directory)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("gammal.xls", compound_file("Workbook", "\x05SummaryInformation"),
     "an old Excel 97-2003 .xls workbook, which Kansli cannot read: open it in Excel and save it as "
     "'Excel Workbook (.xlsx)'"),
    ("gammal.xlsx", compound_file("Book"), "an old Excel 97-2003 .xls workbook"),
    ("losen.xlsx", compound_file("EncryptionInfo", "EncryptedPackage", "\x06DataSpaces"),
     "the workbook is password-protected (encrypted): save a copy without a password for the robot"),
    ("brev.xls", compound_file("WordDocument", "1Table"), "an old Word .doc document"),
])
def test_ole2_files_say_what_they_are(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        list(read_rows(path, Person))
    assert str(caught.value).startswith(f"{path}: {message}")


def test_ods_and_xlsb_and_word_files_say_what_they_are(tmp_path: Path) -> None:
    ods = tmp_path / "kalkyl.ods"
    with zipfile.ZipFile(ods, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet",
                         compress_type=zipfile.ZIP_STORED)
        archive.writestr("content.xml", "<office:document-content/>")
        archive.writestr("META-INF/manifest.xml", "<manifest:manifest/>")
    xlsb = tmp_path / "binar.xlsb"
    with zipfile.ZipFile(xlsb, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.bin", b"\x83\x01\x00")
        archive.writestr("xl/worksheets/sheet1.bin", b"\x81\x01\x00")
    word = tmp_path / "brev.xlsx"
    from docx import Document

    Document().save(str(word))
    for path, message in [(ods, "an OpenDocument spreadsheet (.ods), not an Excel .xlsx workbook: open it"),
                          (xlsb, "an Excel binary workbook (.xlsb), which Kansli cannot read"),
                          (word, "a Word document, not an Excel .xlsx workbook")]:
        with pytest.raises(InputError) as caught:
            list(read_rows(path, Person))
        assert str(caught.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize("name", ["register.xls", "register.csv", "register", "register.XLSX", "export.txt"])
def test_an_xlsx_under_another_extension_is_read(tmp_path: Path, name: str) -> None:
    path = sheet(tmp_path / "riktig.xlsx", ["SN-1", PNR, "Bo"]).rename(tmp_path / name)
    assert [(row.number, row.model is not None) for row in read_rows(path, Person)] == [(2, True)]


STRICT = {
    b"http://schemas.openxmlformats.org/spreadsheetml/2006/main": b"http://purl.oclc.org/ooxml/spreadsheetml/main",
    b"http://schemas.openxmlformats.org/officeDocument/2006/relationships":
        b"http://purl.oclc.org/ooxml/officeDocument/relationships",
}


def test_a_strict_open_xml_workbook_is_named_as_such(tmp_path: Path) -> None:
    source = sheet(tmp_path / "vanlig.xlsx", ["SN-1", PNR, "Bo"])
    strict = source
    for member in ["xl/workbook.xml", "xl/worksheets/sheet1.xml", "xl/styles.xml"]:
        def to_strict(xml: bytes) -> bytes:
            for transitional, strict_ns in STRICT.items():
                xml = xml.replace(transitional, strict_ns)
            return xml
        strict = rewritten(strict, tmp_path / f"strikt-{len(member)}.xlsx", member, to_strict)
    assert b"purl.oclc.org" in sheet_xml(strict, "xl/workbook.xml")
    with pytest.raises(InputError) as caught:
        list(read_rows(strict, Person))
    assert str(caught.value) == (
        f"{strict}: a Strict Open XML workbook, which Kansli cannot read: open it in Excel and save it as "
        "'Excel Workbook (.xlsx)' (not 'Strict Open XML Spreadsheet')")


# --- damage part-way through a sheet: one InputError naming file, sheet, row and cell ---

def long_register(path: Path, rows: int = 60) -> Path:
    return sheet(path, *[[f"SN-{n}", PNR, f"Namn {n}", "123 45", n] for n in range(1, rows + 1)])


def cell_xml(xml: bytes, reference: str) -> bytes:
    start = xml.index(f'<c r="{reference}"'.encode())
    return xml[start: xml.index(b"</c>", start) + 4]


def test_text_in_a_number_cell_part_way_names_the_cell(tmp_path: Path) -> None:
    source = long_register(tmp_path / "lang.xlsx")
    old = cell_xml(sheet_xml(source), "E41")
    broken = rewritten(source, tmp_path / "trasig.xlsx", "xl/worksheets/sheet1.xml",
                       lambda xml: xml.replace(old, b'<c r="E41" t="n"><v>tolv</v></c>'))
    rows = read_rows(broken, Person)
    assert [next(rows).number for _ in range(39)] == list(range(2, 41)), "rows before the damage come first"
    with pytest.raises(InputError) as caught:
        next(rows)
    assert str(caught.value) == (f"{broken}, sheet 'Sheet', row 41, cell E41: is a number cell holding "
                                 "something that is not a number (a damaged file)")


def test_a_bad_shared_string_index_names_the_cell(tmp_path: Path) -> None:
    source = tmp_path / "excel.xlsx"  # texts in a shared string table, as Excel writes them
    source.write_bytes(with_shared_strings(long_register(tmp_path / "lang.xlsx").read_bytes()))
    assert [row.model is not None for row in read_rows(source, Person)] == [True] * 60
    old = cell_xml(sheet_xml(source), "C30")
    assert b't="s"' in old
    xml = sheet_xml(source)
    row_29 = xml[xml.index(b'<row r="29"'): xml.index(b'<row r="30"')]

    def damage(xml: bytes) -> bytes:  # row 29 gone too: the message takes the row from the cell
        return xml.replace(old, b'<c r="C30" t="s"><v>99999</v></c>').replace(row_29, b"")

    broken = rewritten(source, tmp_path / "trasig.xlsx", "xl/worksheets/sheet1.xml", damage)
    with pytest.raises(InputError, match=r"trasig\.xlsx, sheet 'Sheet', row 30, cell C30: refers to a shared "
                       r"text the file does not have \(a damaged file\)$"):
        list(read_rows(broken, Person))


@pytest.mark.parametrize(("change", "expected"), [
    (lambda xml: xml.replace(b'<c r="B20"', b'<c r="B!x"'), r", row 20, cell B!x: cannot be read \("),
    (lambda xml: xml.replace(b'<row r="33"', b'<row r="drei"'), r": the sheet is damaged after row 32 and"),
    (lambda xml: xml[: xml.index(b'<row r="25"') + 40], r": the sheet is damaged after row 24 and cannot"),
    (lambda xml: xml.replace(b'<row r="12"', b'<row r="12" <<'), r": the sheet is damaged after row 11"),
    (lambda xml: xml.replace(b'<row r="50"', b'<row r="5"'), r": the sheet is damaged after row 49 .*row 5"),
])
def test_a_malformed_sheet_or_cell_is_one_input_error_naming_where(tmp_path: Path, change: Any,
                                                                    expected: str) -> None:
    broken = rewritten(long_register(tmp_path / "lang.xlsx"), tmp_path / "trasig.xlsx",
                       "xl/worksheets/sheet1.xml", change)
    with pytest.raises(InputError, match=r"trasig\.xlsx, sheet 'Sheet'" + expected):
        list(read_rows(broken, Person))


def test_a_damaged_compressed_sheet_is_one_input_error(tmp_path: Path) -> None:
    source = long_register(tmp_path / "lang.xlsx", rows=400)
    content = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    data_start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    middle = data_start + info.compress_size // 2
    content[middle: middle + 16] = bytes(16)
    broken = tmp_path / "trasig.xlsx"
    broken.write_bytes(bytes(content))
    with pytest.raises(InputError, match=r"trasig\.xlsx, sheet 'Sheet': the sheet is damaged after row \d+ "
                       r"and cannot be read \(\w+: .+\)$"):
        list(read_rows(broken, Person))


# --- fuzzing: mutated real workbooks give rows or one InputError, never a traceback (longer: bench/) ---

def test_the_fuzzing_seed_is_a_register_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "frö.xlsx"
    path.write_bytes(seed_workbook())
    rows = list(read_rows(path, FuzzRow, merged="top_left"))
    assert [row.number for row in rows] == list(range(3, 11)) and all(row.model for row in rows)
    assert [row.values["Handläggare"] for row in rows][:5] == ["Karin Ek"] * 4 + [None]
    assert read_outcome(path) == "rows"


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=mutated(seed_workbook()), merged=st.booleans())
def test_mutated_workbooks_give_rows_or_one_input_error(tmp_path: Path, content: bytes, merged: bool) -> None:
    path = tmp_path / "mutated.xlsx"
    path.write_bytes(content)
    assert read_outcome(path, merged=merged) in {"rows", "InputError", "ConfigError"}
