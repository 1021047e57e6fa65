"""Starting the system Chromium and opening its contexts.

:func:`open_browser` starts the Chromium of :class:`~shared.settings.BrowserSettings` with the flags
a closed-network machine needs; a missing one is a :class:`~shared.errors.BrowserNotFoundError`
saying how to get one. :func:`new_context` opens a context with the settings' locale, time zone,
viewport and timeouts, which the navigation and form helpers read back for their own waits.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

# The error class alone, not playwright.async_api (see shared.browser.navigation).
from playwright._impl._errors import Error as PlaywrightError

from shared.errors import BrowserNotFoundError
from shared.settings import BrowserSettings

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright

#: Flags for a locked-down machine without internet: no phoning home, no GPU, no first-run UI.
CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
)
INSTALL_HINT = (
    "install it (sudo apt-get install chromium chromium-headless-shell) "
    "or set KANSLI_BROWSER__EXECUTABLE_PATH to the Chromium executable"
)
BLOCKED_ASSETS = re.compile(r"\.(png|jpe?g|gif|webp|svg|ico|woff2?|ttf|otf|eot)(\?.*)?$", re.I)

# The timeouts new_context gave each context (the defaults for one it did not open): the navigation
# and form helpers' own waits follow them.
_DEFAULT_TIMEOUTS = BrowserSettings()
_timeouts: weakref.WeakKeyDictionary[BrowserContext, tuple[int, int]] = weakref.WeakKeyDictionary()


def chromium_executable(settings: BrowserSettings) -> Path:
    """The Chromium to start, or :class:`BrowserNotFoundError` saying how to get one."""
    path = settings.chromium_path()
    if path is None:
        raise BrowserNotFoundError(f"Chromium not found on PATH: {INSTALL_HINT}")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BrowserNotFoundError(f"Chromium not found at {path}: {INSTALL_HINT}")
    return path


def chromium_args() -> list[str]:
    """Chromium's command-line flags; ``--no-sandbox`` only when running as root."""
    args = list(CHROMIUM_FLAGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


@asynccontextmanager
async def open_browser(settings: BrowserSettings) -> AsyncIterator[Browser]:
    """Start Playwright and the system Chromium; both are closed on the way out."""
    from playwright.async_api import async_playwright

    executable = chromium_executable(settings)
    async with async_playwright() as playwright:
        browser = await _launch(playwright, executable, settings)
        logger.debug("Chromium {} started from {}", browser.version, executable)
        try:
            yield browser
        finally:
            await browser.close()


async def _launch(playwright: Playwright, executable: Path, settings: BrowserSettings) -> Browser:
    try:
        return await playwright.chromium.launch(
            executable_path=executable, headless=settings.headless, args=chromium_args(),
            timeout=max(settings.navigation_timeout_ms, 30_000),
        )
    except PlaywrightError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        message = f"Chromium at {executable} did not start ({first}); {INSTALL_HINT}"
        raise BrowserNotFoundError(message) from None


async def new_context(browser: Browser, settings: BrowserSettings) -> BrowserContext:
    """A fresh context: Swedish locale and time zone, the viewport, the default timeouts, optional asset
    blocking (which routes every request through Playwright's driver: it pays only on heavy pages)."""
    from playwright.async_api import ViewportSize

    width, height = settings.viewport_size
    context = await browser.new_context(
        locale=settings.locale, timezone_id=settings.timezone, accept_downloads=False,
        service_workers="block", viewport=ViewportSize(width=width, height=height),
    )
    context.set_default_timeout(settings.timeout_ms)
    context.set_default_navigation_timeout(settings.navigation_timeout_ms)
    _timeouts[context] = (settings.timeout_ms, settings.navigation_timeout_ms)
    if settings.block_assets:
        await context.route(BLOCKED_ASSETS, lambda route: route.abort())
    return context


def _action_timeout_ms(page: Page) -> int:
    return _timeouts.get(page.context, (_DEFAULT_TIMEOUTS.timeout_ms,))[0]


def _navigation_timeout_ms(page: Page) -> int:
    default = (0, _DEFAULT_TIMEOUTS.navigation_timeout_ms)
    return _timeouts.get(page.context, default)[1]
