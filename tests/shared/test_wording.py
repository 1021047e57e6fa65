"""shared.wording: the staff texts, one dict per language, the same keys and fields in each."""

from __future__ import annotations

from string import Formatter

import pytest

from shared.errors import ConfigError
from shared.items import OUTCOMES
from shared.settings import load_settings
from shared.store import ACTIVE_STATUSES, FINAL_STATUSES
from shared.wording import LANGUAGES, STAFF_TEXTS, language_of, normalise_key, staff_text, wording


def fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def test_every_language_has_the_same_keys_and_the_same_fields() -> None:
    swedish = STAFF_TEXTS["sv"]
    for language in LANGUAGES:
        texts = STAFF_TEXTS[language]
        assert set(texts) == set(swedish), f"{language} lacks or adds keys"
        for key, template in texts.items():
            assert template.strip(), f"{language} {key} is empty"
            assert fields_of(template) == fields_of(swedish[key]), f"{language} {key} has other fields"


def test_every_outcome_and_run_status_has_a_name_in_every_language() -> None:
    for language in LANGUAGES:
        words = wording(language)
        for outcome in (*OUTCOMES, "in_progress"):
            assert words.has(f"outcome.{outcome}"), (language, outcome)
        for status in (*FINAL_STATUSES, *ACTIVE_STATUSES):
            assert words.has(f"run_status.{status}"), (language, status)


def test_swedish_is_the_default_and_english_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert language_of(load_settings()) == "sv"
    assert staff_text("run_status.partial") == "delvis klar"
    assert staff_text("outcome.business_error", load_settings()) == "fel i data"
    monkeypatch.setenv("KANSLI_LANGUAGE", "en")
    english = load_settings()
    assert staff_text("run_status.partial", english) == "partly done"
    assert staff_text("column.letter_file", english) == "Letter file"
    monkeypatch.setenv("KANSLI_LANGUAGE", "de")
    with pytest.raises(ConfigError, match="KANSLI_LANGUAGE"):
        load_settings()


def test_labels_are_looked_up_by_meaning_and_unknown_names_stay_as_given() -> None:
    words = wording("sv")
    assert [words.label("column", name) for name in ("status", "letter_file", "letter file", "Case number",
                                                      "error")] == [
        "Status", "Brevfil", "Brevfil", "Ärendenummer", "Fel"]
    assert words.label("column", "påminnelse") == "påminnelse"
    assert words.outcome("something_new") == "something_new"
    assert normalise_key("  Letter  file ") == "letter_file" and normalise_key("case-number") == "case_number"


def test_fields_are_filled_and_a_key_or_language_unknown_is_an_error() -> None:
    assert staff_text("mail.subject", "sv", robot="r", status="misslyckad", run_id="1") == (
        "[kansli] r: misslyckad (körning 1)")
    words = wording("en")
    assert words("report.screenshot", key="SN-1") == "Screenshot of SN-1"
    with pytest.raises(KeyError):
        words("no.such.key")
    with pytest.raises(ValueError, match="unknown staff language 'fi'"):
        wording("fi")  # type: ignore[arg-type]


def test_run_errors_staff_read_leave_out_the_item_summary_and_word_known_ones() -> None:
    words = wording("sv")
    assert words.run_error("2 item(s) failed; first: k1: item k1: bad data") is None
    assert words.run_error(None) is None
    assert words.run_error("cancelled by signal") == "stoppad av en signal (Ctrl-C eller SIGTERM)"
    assert words.run_error("Ärendet kunde inte skapas") == "Ärendet kunde inte skapas"
