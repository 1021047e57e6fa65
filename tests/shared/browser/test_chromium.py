"""Chromium and its contexts: the executable, its flags, a context's viewport, locale and time zone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shared.browser import chromium_args, chromium_executable, open_browser
from shared.errors import BrowserNotFoundError
from shared.settings import BrowserSettings

pytestmark = pytest.mark.browser


def test_chromium_missing_says_how_to_install_or_configure(tmp_path: Path) -> None:
    with pytest.raises(BrowserNotFoundError) as caught:
        chromium_executable(BrowserSettings(executable_path=tmp_path / "chromium"))
    assert "apt-get install chromium" in str(caught.value)
    assert "KANSLI_BROWSER__EXECUTABLE_PATH" in str(caught.value)
    assert "--disable-quic" in chromium_args() and "--no-first-run" in chromium_args()


def test_contexts_get_the_configured_viewport_locale_and_time_zone() -> None:
    from shared.browser import new_context

    settings = BrowserSettings(viewport="640x400")

    async def main() -> Any:
        async with open_browser(settings) as browser:
            page = await (await new_context(browser, settings)).new_page()
            return await page.evaluate("""() => [innerWidth, innerHeight, navigator.language,
                                                 Intl.DateTimeFormat().resolvedOptions().timeZone]""")

    assert asyncio.run(main()) == [640, 400, "sv-SE", "Europe/Stockholm"]
