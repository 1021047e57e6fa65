"""shared.excel.validation: a bad cell fails only its row, Personnummer and Postnummer, and the
problems of a bad row worded naming the column and quoting the value safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from shared import excel
from shared.excel import Personnummer, Postnummer, read_rows
from shared.redaction import redact, register_secret
from shared.wording import LANGUAGES, wording
from tests.shared.excel.conftest import GOOD, PNR, STAFF_HEADER, Decision, Person, decision_register, sheet


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
