"""Write one Word decision letter per application in an Excel register.

Reads the register, checks each row (personnummer check digit, required cells, real dates, a known
decision), renders a letter per valid row from a docxtpl template, and writes a results workbook: a
copy of the register with ``status``, ``letter file`` and ``error`` columns. Bad rows are business
errors naming the row and column; the others go on. A re-run on the same register skips the letters
already written.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.documents import DocumentTemplate, format_kronor
from shared.errors import InputError
from shared.excel import Personnummer, Postnummer, Row, read_rows, result_cells, row_key, write_results
from shared.files import writable_directory
from shared.items import WorkItem
from shared.registry import robot

if TYPE_CHECKING:  # the runner (and SQLAlchemy) is imported when the robot runs, not when it is listed
    from shared.runner import Run

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEFAULT_TEMPLATE = DEMO_DIR / "templates" / "beslut.docx"
DEFAULT_OUTPUT = Path("var/out/decision_letters")
RESULT_COLUMNS = ("status", "letter file", "error")
KOMMUN = "Exempelby kommun"
FORVALTNING_BY_CASE_TYPE = {
    "Bostadsanpassningsbidrag": "Samhällsbyggnadsförvaltningen",
    "Färdtjänst": "Tekniska förvaltningen",
    "Parkeringstillstånd för rörelsehindrade": "Tekniska förvaltningen",
    "Ekonomiskt bistånd": "Socialförvaltningen",
    "Serveringstillstånd": "Socialförvaltningen",
}
LETTER_FIELDS = frozenset({
    "kommun", "forvaltning", "mottagare", "diarienummer", "arendetyp", "beslut", "beslutsdatum",
    "ansokningsdatum", "handlaggare", "belopp", "motivering", "atgarder",
})


class Application(BaseModel):
    """One row of the applications register."""

    model_config = ConfigDict(coerce_numbers_to_str=True, str_strip_whitespace=True)

    diarienummer: str = Field(alias="Diarienummer", min_length=1)
    personnummer: Personnummer = Field(alias="Personnummer")
    fornamn: str = Field(alias="Förnamn", min_length=1)
    efternamn: str = Field(alias="Efternamn", min_length=1)
    adress: str = Field(alias="Utdelningsadress", min_length=1)
    postnummer: Postnummer = Field(alias="Postnummer")
    postort: str = Field(alias="Postort", min_length=1)
    arendetyp: str = Field(alias="Ärendetyp", min_length=1)
    ansokningsdatum: date = Field(alias="Ansökningsdatum")
    beslut: Literal["Bifall", "Delvis bifall", "Avslag"] = Field(alias="Beslut")
    beslutsdatum: date = Field(alias="Beslutsdatum")
    handlaggare: str = Field(alias="Handläggare", min_length=1)
    atgarder: str | None = Field(default=None, alias="Åtgärder")
    belopp: int | None = Field(default=None, alias="Beviljat belopp", ge=0)
    motivering: str | None = Field(default=None, alias="Motivering")

    @model_validator(mode="after")
    def decided_after_applied(self) -> Application:
        if self.beslutsdatum < self.ansokningsdatum:
            raise ValueError("Beslutsdatum is before Ansökningsdatum")
        return self


@robot()
def decision_letters(
    run: Run,
    input: Path,
    template: Path = DEFAULT_TEMPLATE,
    output_dir: Path = DEFAULT_OUTPUT,
) -> None:
    """Write one Word decision letter per application in an Excel register."""
    from shared.runner import file_batch

    letter = DocumentTemplate(template)
    letter.require(LETTER_FIELDS)
    writable_directory(output_dir)
    rows = list(read_rows(input, Application))
    logger.info("{}: {} rows to handle", input.name, len(rows))

    def write_letter(item: WorkItem) -> dict[str, str]:
        row: Row[Application] = item.data
        if row.model is None:
            raise InputError(row.error or f"row {row.number}: invalid")
        destination = output_dir / letter_file_name(row.model)
        letter.render(letter_context(row.model), destination)
        return {"letter": destination.name}

    def letter_written(item: WorkItem) -> dict[str, str] | None:
        """A letter renamed into place before a crash is complete: take it, do not write it again."""
        row: Row[Application] = item.data
        done = row.model is not None and (output_dir / letter_file_name(row.model)).is_file()
        return {"letter": letter_file_name(row.model)} if done and row.model else None

    items = (WorkItem(key=row_key(row, "Diarienummer"), data=row, position=row.number) for row in rows)
    results = run.process(items, write_letter, reconcile=letter_written, total=len(rows),
                          batch=file_batch(input, output_dir.resolve()))
    destination = output_dir / f"{input.stem}-resultat.xlsx"
    write_results(input, destination, result_cells(results, "letter file", "letter"), RESULT_COLUMNS)
    logger.info("letters in {}; results in {}", output_dir, destination)


def letter_file_name(application: Application) -> str:
    safe = re.sub(r"[^\w.-]+", "_", application.diarienummer)
    return f"beslut-{safe}.docx"


def letter_context(application: Application) -> dict[str, Any]:
    """The template's fields for one application."""
    measures = [m.strip() for m in (application.atgarder or "").split(";") if m.strip()]
    return {
        "kommun": KOMMUN,
        "forvaltning": FORVALTNING_BY_CASE_TYPE.get(application.arendetyp, "Kommunstyrelseförvaltningen"),
        "mottagare": {
            "namn": f"{application.fornamn} {application.efternamn}",
            "adress": application.adress,
            "postnummer": application.postnummer,
            "postort": application.postort,
        },
        "diarienummer": application.diarienummer,
        "arendetyp": application.arendetyp,
        "beslut": application.beslut,
        "beslutsdatum": application.beslutsdatum.isoformat(),
        "ansokningsdatum": application.ansokningsdatum.isoformat(),
        "handlaggare": application.handlaggare,
        "belopp": format_kronor(application.belopp) if application.beslut != "Avslag" else "",
        "motivering": application.motivering or "",
        "atgarder": [
            {"namn": name, "beslut": measure_verdict(application.beslut, last=index == len(measures) - 1)}
            for index, name in enumerate(measures)
        ],
    }


def measure_verdict(decision: str, *, last: bool) -> str:
    """Per measure: all granted, all refused, or (partly granted) the last one refused."""
    if decision == "Delvis bifall":
        return "Avslås" if last else "Beviljas"
    return "Beviljas" if decision == "Bifall" else "Avslås"
