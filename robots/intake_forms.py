"""Key paper applications from an Excel register into the e-service, one case per row.

Logs in once per browser context, submits each row (step 1 "Sökande", step 2 "Ärende", review,
"Skicka in"), records the case number, and writes a results workbook: a copy of the register with
``status``, ``case number`` and ``error`` columns. The e-service's own validation messages become
business errors; HTTP 5xx answers, timeouts and expired sessions are retried. A row that may already
have been submitted by an interrupted attempt is first looked up by its reference on the search page,
so no application is ever submitted twice.

``fast`` fills each step in one browser round trip (firing input/change events, as typing would);
the default fills field by field through accessible locators, as a person would.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.browser import (
    BrowserPool,
    FieldValue,
    Select,
    click_button,
    goto,
    open_browser,
    submit_step,
)
from shared.errors import InputError, LoginError
from shared.excel import Row, read_rows, result_cells, row_items, write_results
from shared.files import writable_directory
from shared.items import ItemResult, WorkItem, crash_point
from shared.registry import robot
from shared.settings import EServiceSettings

if TYPE_CHECKING:  # the runner (and SQLAlchemy) is imported when the robot runs, not when it is listed
    from shared.runner import Run

DEFAULT_OUTPUT = Path("var/out/intake_forms")
RESULT_COLUMNS = ("status", "case_number", "error")  # by meaning; headed in the staff language


class Intake(BaseModel):
    """One row of the register. The e-service validates the values; only the reference is ours."""

    model_config = ConfigDict(coerce_numbers_to_str=True, str_strip_whitespace=True)

    referens: str = Field(alias="Referens", min_length=1)
    namn: str = Field(default="", alias="Namn")
    personnummer: str = Field(default="", alias="Personnummer")
    epost: str = Field(default="", alias="E-post")
    telefon: str = Field(default="", alias="Telefon")
    adress: str = Field(default="", alias="Utdelningsadress")
    postnummer: str = Field(default="", alias="Postnummer")
    postort: str = Field(default="", alias="Postort")
    arendetyp: str = Field(default="", alias="Ärendetyp")
    startdatum: date | str = Field(default="", alias="Startdatum")
    beskrivning: str = Field(default="", alias="Beskrivning")

    @field_validator("*", mode="before")
    @classmethod
    def empty_is_blank(cls, value: Any) -> Any:
        return "" if value is None else value


@robot(side_effects=True, tags=["chromium"])
def intake_forms(
    run: Run,
    input: Path,
    output_dir: Path = DEFAULT_OUTPUT,
    workers: int | None = None,
    fast: bool = False,
) -> None:
    """Submit each application of an Excel register to the e-service and record its case number."""

    writable_directory(output_dir)
    rows = list(read_rows(input, Intake))
    count = max(1, min(workers or run.settings.browser.workers, 16))
    logger.info("{}: {} rows, {} worker(s), {} fill", input.name, len(rows), count,
                "fast" if fast else "per-field")
    results = asyncio.run(submit_all(run, rows, count, fast, input))
    destination = output_dir / f"{input.stem}-resultat.xlsx"
    cells = result_cells(results, "case_number", "case_number", run.settings, rows=rows)
    write_results(input, destination, cells, RESULT_COLUMNS, settings=run.settings)
    logger.info("results in {}", destination)


async def submit_all(
    run: Run, rows: list[Row[Intake]], workers: int, fast: bool, input: Path
) -> list[ItemResult]:
    """Open the browser and the logged-in contexts, then submit every row."""
    eservice = run.settings.eservice
    base = eservice.url.rstrip("/")

    async def submit(item: WorkItem) -> dict[str, str]:
        row: Row[Intake] = item.data
        if row.model is None:
            raise InputError(row.error or f"row {row.number}: invalid")
        async with pool.session(item) as page:
            await goto(page, f"{base}/ansokan/steg1")
            where = f"row {row.number}"
            await submit_step(page, applicant(row.model), "Nästa", fast=fast, where=where)
            await submit_step(page, errand(row.model), "Granska", fast=fast, where=where)
            await submit_step(page, {}, "Skicka in", fast=fast, where=where)
            crash_point("submitted")  # the case exists, the ledger does not know yet
            return {"case_number": (await page.locator("#case-number").inner_text()).strip()}

    async def already_submitted(item: WorkItem) -> dict[str, str] | None:
        row: Row[Intake] = item.data
        if row.model is None:
            return None
        async with pool.session(item) as page:
            await goto(page, f"{base}/sok?referens={quote(row.model.referens)}")
            found = [text.strip() for text in await page.locator(".case-number").all_inner_texts()]
        if len(found) > 1:
            logger.warning("reference {} has {} cases already", row.model.referens, len(found))
        return {"case_number": found[0]} if found else None

    from shared.targets import target_limit

    async with open_browser(run.settings.browser) as browser, BrowserPool(
        browser, run.settings.browser, login=lambda page: log_in(page, eservice), size=workers,
        artifacts_dir=run.artifacts_dir, retry=run.settings.retry,
        limit=target_limit(run.settings, run.store, "eservice"),
    ) as pool:
        return await run.process_async(row_items(rows, "Referens", input), submit, total=len(rows),
                                       reconcile=already_submitted, workers=workers)


async def log_in(page: Any, eservice: EServiceSettings) -> None:
    """Log in on the e-service's login page; refused credentials are a :class:`LoginError`."""
    base = eservice.url.rstrip("/")
    await goto(page, f"{base}/login")
    await page.get_by_label("Användarnamn", exact=True).fill(eservice.username)
    await page.get_by_label("Lösenord", exact=True).fill(eservice.password.get_secret_value())
    await click_button(page, "Logga in")
    if "/login" in page.url:
        raise LoginError(f"the e-service at {base} refused the login of user {eservice.username!r}")


def applicant(intake: Intake) -> dict[str, FieldValue]:
    """Step 1, "Sökande", by label."""
    return {
        "Namn": intake.namn, "Personnummer": intake.personnummer, "E-post": intake.epost,
        "Telefon": intake.telefon, "Utdelningsadress": intake.adress,
        "Postnummer": intake.postnummer, "Postort": intake.postort,
    }


def errand(intake: Intake) -> dict[str, FieldValue]:
    """Step 2, "Ärende", by label (the attestation is checked: the paper form is signed)."""
    start = intake.startdatum
    return {
        "Ärendetyp": Select(intake.arendetyp),
        "Önskat startdatum": start.date() if isinstance(start, datetime) else start,
        "Beskrivning": intake.beskrivning, "Er referens": intake.referens,
        "Jag intygar att uppgifterna är riktiga": True,
    }
