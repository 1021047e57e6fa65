"""Write one Word decision letter per application in an Excel register.

Reads the register, checks each row (personnummer check digit, required cells, real dates, a known
decision), renders a letter per valid row from a docxtpl template (with ``pdf``, also as PDF/A-2b
for the archive, through one LibreOffice for the run), and writes a results workbook: a
copy of the register with ``status``, ``letter file`` and ``error`` columns. Bad rows are business
errors naming the row and column; the others go on. Each case (Diarienummer) gets its letter once,
whatever file, folder or output folder it comes from: a grown or re-sorted register writes only the
new cases' letters; a case whose row changed (a corrected decision) gets a new letter, recorded as a
new version of the item.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.documents import DocumentTemplate, format_kronor
from shared.errors import InputError
from shared.excel import Personnummer, Postnummer, Row, read_rows, result_cells, row_items, write_results
from shared.files import writable_directory
from shared.items import WorkItem
from shared.registry import robot

if TYPE_CHECKING:  # the runner (and SQLAlchemy) is imported when the robot runs, not when it is listed
    from shared.runner import Run

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEFAULT_TEMPLATE = DEMO_DIR / "templates" / "beslut.docx"
DEFAULT_OUTPUT = Path("var/out/decision_letters")
RESULT_COLUMNS = ("status", "letter_file", "error")  # by meaning; headed in the staff language
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
    pdf: bool = False,
) -> None:
    """Write one Word decision letter per application in an Excel register (``pdf``: and PDF/A-2b)."""
    letter = DocumentTemplate(template)
    letter.require(LETTER_FIELDS)
    writable_directory(output_dir)
    rows = list(read_rows(input, Application))
    logger.info("{}: {} rows to handle", input.name, len(rows))
    archive = ExitStack()
    convert = archive.enter_context(_pdf_converter(run)) if pdf else None

    def write_letter(item: WorkItem) -> dict[str, str]:
        row: Row[Application] = item.data
        if row.model is None:
            raise InputError(row.error or f"row {row.number}: invalid")
        destination = output_dir / letter_file_name(row.model)
        letter.render(letter_context(row.model), destination)
        if convert is None:
            return {"letter": destination.name}
        return {"letter": destination.name, "pdf": convert(destination, destination.with_suffix(".pdf")).name}

    def letter_written(item: WorkItem) -> dict[str, str] | None:
        """A letter renamed into place before a crash is complete: take it, do not write it again."""
        row: Row[Application] = item.data
        docx = output_dir / letter_file_name(row.model) if row.model else None
        if docx is None or not docx.is_file() or (pdf and not docx.with_suffix(".pdf").is_file()):
            return None
        return {"letter": docx.name, **({"pdf": docx.with_suffix(".pdf").name} if pdf else {})}

    # one letter per case, whatever file or folder: a corrected decision is a new version of its letter
    with archive:
        results = run.process(row_items(rows, "Diarienummer", input), write_letter, total=len(rows),
                              reconcile=letter_written, on_change="redo")
    destination = output_dir / f"{input.stem}-resultat.xlsx"
    cells = result_cells(results, "letter_file", "letter", run.settings, rows=rows)
    write_results(input, destination, cells, RESULT_COLUMNS, settings=run.settings)
    logger.info("letters in {}; results in {}", output_dir, destination)


def _pdf_converter(run: Run) -> AbstractContextManager[Callable[[Path, Path], Path]]:
    from shared.pdf import pdf_converter  # LibreOffice and pypdf only when PDFs are asked for

    return pdf_converter(run)


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
