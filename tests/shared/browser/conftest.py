"""What the browser tests on the demo e-service share: an applicant, an errand, a logged-in pool."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from robots.intake_forms import log_in
from shared.browser import BrowserPool, Select, open_browser
from shared.settings import Settings

APPLICANT = {
    "Namn": "Åsa Öberg", "Personnummer": "19811218-9876", "E-post": "asa@exempel.se",
    "Telefon": "070-123 45 67", "Utdelningsadress": "Storgatan 1", "Postnummer": "123 45",
    "Postort": "Exempelby",
}
ERRAND: dict[str, Any] = {
    "Ärendetyp": Select("Färdtjänst"), "Önskat startdatum": "2027-03-01", "Beskrivning": "Resor.",
    "Er referens": "T-1", "Jag intygar att uppgifterna är riktiga": True,
}


def with_pool(settings: Settings, body: Callable[[BrowserPool], Awaitable[Any]],
              artifacts: Path | None = None) -> Any:
    async def main() -> Any:
        async with open_browser(settings.browser) as browser, BrowserPool(
            browser, settings.browser, login=lambda page: log_in(page, settings.eservice),
            artifacts_dir=artifacts, retry=settings.retry,
        ) as pool:
            return await body(pool)

    return asyncio.run(main())
