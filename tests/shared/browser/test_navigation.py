"""Navigation against the demo e-service: 5xx answers and expired sessions as Kansli's errors."""

from __future__ import annotations

import pytest

from demo.site import FaultConfig, RunningSite
from shared.browser import BrowserPool, goto, submit_form
from shared.errors import SessionExpiredError, TargetUnavailableError
from shared.settings import load_settings
from tests.shared.browser.conftest import APPLICANT, ERRAND, with_pool

pytestmark = pytest.mark.browser


def test_5xx_and_expired_sessions_map_to_retryable_errors(eservice: RunningSite) -> None:
    settings = load_settings()
    url = settings.eservice.url

    async def body(pool: BrowserPool) -> list[str]:
        seen = []
        eservice.set_faults(FaultConfig(error_rate=1.0))
        with pytest.raises(TargetUnavailableError, match="HTTP 500"):
            async with pool.session() as page:
                await goto(page, f"{url}/ansokan/steg1")
        eservice.set_faults(FaultConfig(expire_after=1))
        async with pool.session() as page:
            await goto(page, f"{url}/ansokan/steg1")
            await submit_form(page, APPLICANT, "Nästa")
            await submit_form(page, ERRAND, "Granska")
            await submit_form(page, {}, "Skicka in")
        with pytest.raises(SessionExpiredError):
            async with pool.session() as page:
                await goto(page, f"{url}/ansokan/steg1")
        async with pool.session() as page:  # logged in again
            await goto(page, f"{url}/ansokan/steg1")
            seen.append(await page.title())
        return seen

    assert with_pool(settings, body)[0].startswith("Steg 1 av 3")


def test_the_error_classes_caught_are_playwrights_public_ones() -> None:
    """shared.browser takes them from playwright._impl._errors (cheap to import): they must stay the
    very classes playwright.async_api raises, or a Playwright error would escape the mapping."""
    import playwright.async_api

    import shared.browser

    assert shared.browser.PlaywrightError is playwright.async_api.Error
    assert shared.browser.PlaywrightTimeoutError is playwright.async_api.TimeoutError
