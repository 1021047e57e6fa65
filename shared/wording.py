"""The words of staff-facing outputs: results workbooks, run reports and failure mails.

Staff read Swedish by default; ``KANSLI_LANGUAGE=en`` switches these outputs to English. The CLI and
the logs are for operators and stay English: they never come through here.

Every text is a key in :data:`STAFF_TEXTS`, one dict per language with the same keys. Keys are grouped
by a prefix: ``outcome.`` (an item's outcome), ``run_status.``, ``column.`` (a results workbook's added
columns, by meaning), ``field.`` (an item output's fields), ``report.``, ``mail.`` and ``validation.``
(a bad cell, by pydantic error type). Texts may hold ``{name}`` fields, filled by :func:`staff_text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.store import RunRecord

Language = Literal["sv", "en"]
LANGUAGES: tuple[Language, ...] = ("sv", "en")

_SWEDISH: dict[str, str] = {
    # an item's outcome (workbook status cells, report badges and filters, mails)
    "outcome.done": "klar",
    "outcome.skipped": "redan klar",
    "outcome.business_error": "fel i data",
    "outcome.app_error": "tekniskt fel",
    "outcome.in_progress": "avbruten",
    # an item the queue refused before any work (shared.items)
    "note.done before": "gjordes tidigare",
    "note.done before, data changed": "gjordes tidigare; uppgifterna har ändrats sedan dess",
    "note.version": "version {version}",
    "item_problem.no_key": "Rad {row}: nyckel saknas",
    "item_problem.duplicate_key": "Nyckeln ”{key}” finns två gånger i underlaget: rad {first} och rad {row}; "
                                  "rad {row} gjordes inte",
    "item_problem.data_changed": "Gjordes tidigare; uppgifterna har ändrats sedan dess (gjordes inte om)",
    # a run's status
    "run_status.running": "pågår",
    "run_status.succeeded": "klar",
    "run_status.failed": "misslyckad",
    "run_status.partial": "delvis klar",
    "run_status.skipped": "inte startad",
    "run_status.cancelled": "stoppad",
    "run_status.timeout": "tidsgränsen nådd",
    "run_status.missed": "missad",
    "run_status.interrupted": "avbruten",
    # a results workbook's added columns
    "column.status": "Status",
    "column.error": "Fel",
    "column.letter_file": "Brevfil",
    "column.case_number": "Ärendenummer",
    # an item output's fields
    "field.letter": "Brev",
    "field.letter_file": "Brevfil",
    "field.case_number": "Ärendenummer",
    "field.value": "Värde",
    # a run's item counts, and run errors staff are told in their words
    "run_error.cancelled": "stoppad av en signal (Ctrl-C eller SIGTERM)",
    # the run report
    "report.title": "Körning {run_id} – {robot}",
    "report.heading": "{robot} – körning {run_id}",
    "report.status": "Status",
    "report.actor": "Startad av",
    "report.trigger": "Utlösare",
    "report.started": "Start",
    "report.finished": "Slut",
    "report.params": "Parametrar",
    "report.error": "Fel",
    "report.counts": "Ärenden",
    "report.log": "Logg",
    "report.items": "Ärenden",
    "report.filter": "Filtrera på utfall",
    "report.all": "Alla",
    "report.position": "#",
    "report.key": "Nyckel",
    "report.outcome": "Utfall",
    "report.attempts": "Försök",
    "report.result": "Resultat / fel",
    "report.screenshot": "Skärmbild av {key}",
    "report.none": "–",
    # the failure mail
    "mail.subject": "[kansli] {robot}: {status} (körning {run_id})",
    "mail.intro": "Roboten {robot} slutade med status {status}.",
    "mail.run_id": "Körning",
    "mail.schedule": "Schema",
    "mail.trigger": "Utlösare",
    "mail.started": "Start",
    "mail.finished": "Slut",
    "mail.items": "Ärenden",
    "counts": "{total} totalt, {done} klara, {skipped} redan klara, {business_error} fel i data, "
                   "{app_error} tekniska fel",
    "mail.error": "Fel",
    "mail.failed_items": "De första ärendena som inte gick igenom ({shown} av {total}):",
    "mail.failed_item": "  - {key} ({outcome}, {attempts} försök): {error}",
    "mail.see_log": "Se loggen med:",
    "mail.see_run": "och körningen med:",
    "mail.signature": "Kanslis schemaläggare (automatiskt meddelande)",
    # a bad cell in a register
    "validation.row": "Rad {row}: {problems}",
    "validation.column": "kolumnen {column}: {problem}",
    "validation.more": "och {count} fel till",
    "validation.quote": "”{text}”",
    "validation.missing": "värde saknas",
    "validation.string_too_short": "för kort värde {value} (minst {min_length} tecken)",
    "validation.string_too_long": "för långt värde {value} (högst {max_length} tecken)",
    "validation.string_type": "{value} är ingen text",
    "validation.string_pattern_mismatch": "fel form på {value}",
    "validation.date_parsing": "ogiltigt datum {value} (skriv ÅÅÅÅ-MM-DD)",
    "validation.datetime_parsing": "ogiltig tidpunkt {value} (skriv ÅÅÅÅ-MM-DD TT:MM)",
    "validation.int_parsing": "{value} är inget heltal",
    "validation.int_from_float": "{value} är inget heltal",
    "validation.float_parsing": "{value} är inget tal",
    "validation.decimal_parsing": "{value} är inget tal",
    "validation.bool_parsing": "{value} är varken ja eller nej",
    "validation.literal_error": "ogiltigt värde {value} (tillåtet: {expected})",
    "validation.enum": "ogiltigt värde {value} (tillåtet: {expected})",
    "validation.greater_than_equal": "för litet värde {value} (minst {ge})",
    "validation.greater_than": "för litet värde {value} (måste vara större än {gt})",
    "validation.less_than_equal": "för stort värde {value} (högst {le})",
    "validation.less_than": "för stort värde {value} (måste vara mindre än {lt})",
    "validation.personnummer": "ogiltigt personnummer {value} (fel form eller kontrollsiffra)",
    "validation.postnummer": "ogiltigt postnummer {value} (fem siffror, t.ex. 123 45)",
    "validation.value_error": "ogiltigt värde {value} ({message})",
    "validation.model": "{message}",
    "validation.other": "ogiltigt värde {value} ({message})",
    "validation.or": "eller",
}

_ENGLISH: dict[str, str] = {
    "outcome.done": "done",
    "outcome.skipped": "already done",
    "outcome.business_error": "error in data",
    "outcome.app_error": "technical error",
    "outcome.in_progress": "interrupted",
    "note.done before": "done before",
    "note.done before, data changed": "done before; its data has changed since",
    "note.version": "version {version}",
    "item_problem.no_key": "Row {row}: the key is missing",
    "item_problem.duplicate_key": "Key “{key}” appears twice in the input: rows {first} and {row}; "
                                  "row {row} was not done",
    "item_problem.data_changed": "Done before; its data has changed since (not done again)",
    "run_status.running": "running",
    "run_status.succeeded": "succeeded",
    "run_status.failed": "failed",
    "run_status.partial": "partly done",
    "run_status.skipped": "not started",
    "run_status.cancelled": "stopped",
    "run_status.timeout": "timed out",
    "run_status.missed": "missed",
    "run_status.interrupted": "interrupted",
    "column.status": "Status",
    "column.error": "Error",
    "column.letter_file": "Letter file",
    "column.case_number": "Case number",
    "field.letter": "Letter",
    "field.letter_file": "Letter file",
    "field.case_number": "Case number",
    "field.value": "Value",
    "run_error.cancelled": "stopped by a signal (Ctrl-C or SIGTERM)",
    "report.title": "Run {run_id} – {robot}",
    "report.heading": "{robot} – run {run_id}",
    "report.status": "Status",
    "report.actor": "Started by",
    "report.trigger": "Trigger",
    "report.started": "Started",
    "report.finished": "Finished",
    "report.params": "Parameters",
    "report.error": "Error",
    "report.counts": "Items",
    "report.log": "Log",
    "report.items": "Items",
    "report.filter": "Filter by outcome",
    "report.all": "All",
    "report.position": "#",
    "report.key": "Key",
    "report.outcome": "Outcome",
    "report.attempts": "Attempts",
    "report.result": "Result / error",
    "report.screenshot": "Screenshot of {key}",
    "report.none": "–",
    "mail.subject": "[kansli] {robot}: {status} (run {run_id})",
    "mail.intro": "The robot {robot} ended with status {status}.",
    "mail.run_id": "Run id",
    "mail.schedule": "Schedule",
    "mail.trigger": "Trigger",
    "mail.started": "Started",
    "mail.finished": "Finished",
    "mail.items": "Items",
    "counts": "{total} total, {done} done, {skipped} already done, {business_error} errors in data, "
                   "{app_error} technical errors",
    "mail.error": "Error",
    "mail.failed_items": "First failed items ({shown} of {total}):",
    "mail.failed_item": "  - {key} ({outcome}, {attempts} attempt(s)): {error}",
    "mail.see_log": "See the log with:",
    "mail.see_run": "and the run with:",
    "mail.signature": "Kansli scheduler (automatic message)",
    "validation.row": "Row {row}: {problems}",
    "validation.column": "column {column}: {problem}",
    "validation.more": "and {count} more problem(s)",
    "validation.quote": "“{text}”",
    "validation.missing": "required value is empty",
    "validation.string_too_short": "value {value} is too short (at least {min_length} characters)",
    "validation.string_too_long": "value {value} is too long (at most {max_length} characters)",
    "validation.string_type": "{value} is not text",
    "validation.string_pattern_mismatch": "value {value} has the wrong form",
    "validation.date_parsing": "invalid date {value} (write YYYY-MM-DD)",
    "validation.datetime_parsing": "invalid date and time {value} (write YYYY-MM-DD HH:MM)",
    "validation.int_parsing": "{value} is not a whole number",
    "validation.int_from_float": "{value} is not a whole number",
    "validation.float_parsing": "{value} is not a number",
    "validation.decimal_parsing": "{value} is not a number",
    "validation.bool_parsing": "{value} is neither yes nor no",
    "validation.literal_error": "invalid value {value} (allowed: {expected})",
    "validation.enum": "invalid value {value} (allowed: {expected})",
    "validation.greater_than_equal": "value {value} is too small (at least {ge})",
    "validation.greater_than": "value {value} is too small (must be greater than {gt})",
    "validation.less_than_equal": "value {value} is too large (at most {le})",
    "validation.less_than": "value {value} is too large (must be less than {lt})",
    "validation.personnummer": "invalid personnummer {value} (format or check digit)",
    "validation.postnummer": "invalid postnummer {value} (five digits, e.g. 123 45)",
    "validation.value_error": "invalid value {value} ({message})",
    "validation.model": "{message}",
    "validation.other": "invalid value {value} ({message})",
    "validation.or": "or",
}

#: Every staff text, by language and key.
STAFF_TEXTS: dict[Language, dict[str, str]] = {"sv": _SWEDISH, "en": _ENGLISH}

#: Pydantic error types worded as another type (their wording is the same for staff).
VALIDATION_ALIASES = {
    "date_from_datetime_parsing": "date_parsing", "date_from_datetime_inexact": "date_parsing",
    "date_type": "date_parsing", "datetime_from_date_parsing": "datetime_parsing",
    "datetime_type": "datetime_parsing", "int_type": "int_parsing", "float_type": "float_parsing",
    "bool_type": "bool_parsing", "too_short": "string_too_short", "too_long": "string_too_long",
}


#: A run's error as :mod:`shared.runner` records it when items failed: the report and the mail show
#: the counts and the failed items instead, in the staff language.
ITEMS_FAILED_ERROR = re.compile(r"^\d+ item\(s\) failed; first: ")
#: Run errors recorded in fixed English words, and the key of their staff wording.
KNOWN_RUN_ERRORS = {"cancelled by signal": "run_error.cancelled"}


def language_of(settings: Settings | None = None) -> Language:
    """The staff language of ``settings`` (the process-wide settings when None)."""
    if settings is None:
        from shared.settings import get_settings

        settings = get_settings()
    return settings.language


@dataclass(frozen=True)
class Wording:
    """The staff texts of one language; calling it is :meth:`text` (as templates do)."""

    language: Language

    def text(self, key: str, /, **fields: Any) -> str:
        """The text of ``key`` with its ``{name}`` fields filled (an unknown key is a KeyError)."""
        template = STAFF_TEXTS[self.language][key]
        return template.format(**fields) if fields else template

    def __call__(self, key: str, /, **fields: Any) -> str:
        return self.text(key, **fields)

    def note(self, note: str) -> str:
        """An item's queue note (``done before``, ``version 2``, ...) in these words."""
        if note.startswith("version "):
            return self.text("note.version", version=note.removeprefix("version "))
        return self.text(f"note.{note}") if self.has(f"note.{note}") else note

    def has(self, key: str) -> bool:
        return key in STAFF_TEXTS[self.language]

    def label(self, group: str, name: str) -> str:
        """``group.name``'s text (``letter file`` is looked up as ``letter_file``), else ``name``."""
        key = f"{group}.{normalise_key(name)}"
        return self.text(key) if self.has(key) else name

    def outcome(self, outcome: str) -> str:
        return self.label("outcome", outcome)

    def run_status(self, status: str) -> str:
        return self.label("run_status", status)

    def quote(self, text: str) -> str:
        return self.text("validation.quote", text=text)

    def counts(self, record: RunRecord) -> str:
        """``3 totalt, 1 klara, ...``: a run's items by outcome."""
        return self.text("counts", total=record.items_total, done=record.items_done,
                         skipped=record.items_skipped, business_error=record.items_business_error,
                         app_error=record.items_app_error)

    def run_error(self, error: str | None) -> str | None:
        """A run's error for staff: None when it only sums up failed items (shown item by item)."""
        if not error or ITEMS_FAILED_ERROR.match(error):
            return None
        key = KNOWN_RUN_ERRORS.get(error)
        return self.text(key) if key else error


def normalise_key(name: str) -> str:
    """``Letter file`` → ``letter_file``: the key a name is looked up by."""
    return re.sub(r"[\s-]+", "_", name.strip()).lower()


def wording(settings: Settings | Language | None = None) -> Wording:
    """The staff wording of ``settings`` (or of a language code; None: the process settings)."""
    if isinstance(settings, str):
        if settings not in LANGUAGES:
            raise ValueError(f"unknown staff language {settings!r} (one of {', '.join(LANGUAGES)})")
        return Wording(cast(Language, settings))
    return Wording(language_of(settings))


def staff_text(key: str, settings: Settings | Language | None = None, /, **fields: Any) -> str:
    """One staff text in the language of ``settings``: ``staff_text("outcome.done")`` → ``klar``."""
    return wording(settings).text(key, **fields)
