"""The browser layer: one Chromium per run, a pool of logged-in contexts, evidence on failure.

Built on Playwright's *async* API: one event loop drives one browser and N contexts concurrently
(Playwright's sync API is bound to the thread that started it, so "one browser, N contexts in
parallel" is natural only with asyncio). The pieces:

* :func:`open_browser`: the system Chromium from :class:`~shared.settings.BrowserSettings`, with
  the flags a closed-network machine needs; missing Chromium is a :class:`BrowserNotFoundError`;
* :class:`BrowserPool`: N contexts (locale, time zone, timeouts), each logged in once and reused
  for many items; :meth:`BrowserPool.session` leases one for an item, records a Playwright trace
  chunk while it works, and on failure saves a full-page screenshot and the trace into the run's
  ``artifacts/`` (linked from ``item.artifacts``), maps Playwright errors onto Kansli's error tree
  and, on :class:`SessionExpiredError`, logs that context in again before its next use;
* :func:`goto`, :func:`click_and_wait`, :func:`check_response`: navigation whose 5xx answers,
  timeouts and expired sessions become :class:`TargetUnavailableError` / :class:`SessionExpiredError`;
* :func:`fill_form` (per field, with accessible locators, or ``fast``: every field of a step in one
  browser round trip, firing ``input``/``change`` events) and :func:`field_errors`;
  :func:`submit_step` fills, submits and turns the target's validation errors into an
  :class:`~shared.errors.InputError` naming each field.

Tracing is stopped around every login, so a saved trace never holds the password.
"""

from __future__ import annotations

import asyncio
import os
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from loguru import logger

# The error classes alone: playwright.async_api re-exports these very classes, and importing it costs
# ~50 ms that listing robots (which import this module) must not pay. tests/shared/test_browser.py
# checks they are the same classes.
from playwright._impl._errors import Error as PlaywrightError
from playwright._impl._errors import TimeoutError as PlaywrightTimeoutError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from shared.errors import (
    BrowserNotFoundError,
    InputError,
    KansliError,
    SessionExpiredError,
    TargetError,
    TargetUnavailableError,
    is_retryable,
)
from shared.files import atomic_path
from shared.items import WorkItem
from shared.redaction import redact
from shared.settings import BrowserSettings, RetrySettings

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page, Playwright, Response

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
EXPIRED_LOGIN = re.compile(r"/login\?(?:.*&)?expired=1")

LoginStep = Callable[["Page"], Awaitable[None]]


# -- values for fill_form ----------------------------------------------------------------------


@dataclass(frozen=True)
class Select:
    """Choose an option of a ``<select>`` by its label (or, failing that, its value)."""

    option: str


@dataclass(frozen=True)
class Radio:
    """Check the radio button named ``option`` in the group labelled by the field's label."""

    option: str


@dataclass(frozen=True)
class Upload:
    """Attach a file to a file input."""

    path: Path


#: What :func:`fill_form` accepts per label: text (also dates and textareas), a date, a checkbox
#: state, an option, a radio choice or a file.
FieldValue = str | int | date | bool | Select | Radio | Upload | Path


# -- the browser -------------------------------------------------------------------------------


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
    if settings.block_assets:
        await context.route(BLOCKED_ASSETS, lambda route: route.abort())
    return context


# -- navigation and errors ---------------------------------------------------------------------


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else url


def target_error(error: PlaywrightError, page: Page | None = None, url: str | None = None) -> TargetError:
    """A Playwright timeout or network error as :class:`TargetUnavailableError` (first line only)."""
    lines = str(error).strip().splitlines()
    first = redact(lines[0]) if lines else type(error).__name__
    url = url or (page.url if page is not None else "")
    where = f" at {_where(url)}" if url.startswith("http") else ""
    if isinstance(error, PlaywrightTimeoutError):
        return TargetUnavailableError(f"the e-service did not answer in time{where}: {first}")
    return TargetUnavailableError(f"the e-service failed{where}: {first}")


def check_response(page: Page, response: Response | None) -> Response | None:
    """Raise for an expired session (redirect to the login page) or an HTTP 5xx answer."""
    if EXPIRED_LOGIN.search(page.url):
        raise SessionExpiredError(f"the session expired ({_where(page.url)})")
    if response is not None and response.status >= 500:
        where = _where(response.url)
        raise TargetUnavailableError(f"the e-service answered HTTP {response.status} at {where}")
    return response


async def goto(page: Page, url: str) -> Response | None:
    """Open ``url`` and check the answer (see :func:`check_response`)."""
    try:
        response = await page.goto(url)
    except PlaywrightError as error:
        raise target_error(error, page, url) from None
    return check_response(page, response)


async def click_and_wait(page: Page, target: Locator) -> Response | None:
    """Click ``target`` (a submit button or link) and wait for the page it leads to; check it."""
    try:
        async with page.expect_navigation(wait_until="domcontentloaded") as navigation:
            await target.click()
        response = await navigation.value
    except PlaywrightError as error:
        raise target_error(error, page) from None
    return check_response(page, response)


async def click_button(page: Page, name: str) -> Response | None:
    """Click the button with accessible name ``name`` and wait for the next page."""
    return await click_and_wait(page, page.get_by_role("button", name=name, exact=True))


async def submit_form(
    page: Page, values: Mapping[str, FieldValue], button: str, *, fast: bool = False
) -> Response | None:
    """Fill the form (see :func:`fill_form`), press the button named ``button``, wait for the answer.

    ``fast`` fills every field and presses the button in one browser round trip.
    """
    if not fast or any(isinstance(value, Upload | Path) for value in values.values()):
        await fill_form(page, values, fast=fast)
        return await click_button(page, button)
    try:
        async with page.expect_navigation(wait_until="domcontentloaded") as navigation:
            await _fill_fast(page, values, button)
        response = await navigation.value
    except PlaywrightError as error:
        raise target_error(error, page) from None
    return check_response(page, response)


async def submit_step(
    page: Page, values: Mapping[str, FieldValue], button: str, *, fast: bool = False, where: str = ""
) -> Response | None:
    """:func:`submit_form`, with the target's refusal of the values as an :class:`InputError`.

    An answer of HTTP 400 or 422 is validation: the page's field errors (:func:`field_errors`) make
    the message, after ``where`` (say ``"row 12"``), so a bad row ends as a business error.
    """
    prefix = f"{where}: " if where else ""
    try:
        response = await submit_form(page, values, button, fast=fast)
    except InputError as error:
        raise InputError(f"{prefix}{error}") from None
    if response is not None and response.status in (400, 422):
        errors = await field_errors(page)
        described = "; ".join(f"{label}: {text}" if label else text for label, text in errors.items())
        raise InputError(f"{prefix}{described or f'the e-service refused the step ({response.status})'}")
    return response


# -- forms -------------------------------------------------------------------------------------


async def fill_form(page: Page, values: Mapping[str, FieldValue], *, fast: bool = False) -> None:
    """Fill the form on ``page`` from label → value.

    Per field (default) each value goes through an accessible locator (``get_by_label``,
    ``get_by_role``) as a user would; ``fast`` sets every field in one ``page.evaluate`` round trip,
    firing ``input`` and ``change`` events, and uploads files through their locators.
    """
    if fast:
        plain = {label: value for label, value in values.items() if not isinstance(value, Upload | Path)}
        await _fill_fast(page, plain)
        for label, value in values.items():
            if isinstance(value, Upload | Path):
                await _fill_one(page, label, value)
        return
    for label, value in values.items():
        await _fill_one(page, label, value)


async def _fill_one(page: Page, label: str, value: FieldValue) -> None:
    try:
        if isinstance(value, Radio):
            group = page.get_by_role("radiogroup", name=label).or_(page.get_by_role("group", name=label))
            await group.get_by_role("radio", name=value.option, exact=True).check()
            return
        control = page.get_by_label(label, exact=True)
        if isinstance(value, bool):
            await control.set_checked(value)
        elif isinstance(value, Select):
            await _select(control, label, value.option)
        elif isinstance(value, Upload | Path):
            await control.set_input_files(value.path if isinstance(value, Upload) else value)
        else:
            await control.fill(_text(value))
    except PlaywrightError as error:
        raise target_error(error, page) from None


#: How long a choice may take to appear in a ``<select>`` before Kansli looks whether it is offered.
SELECT_QUICK_MS = 1000


async def _select(control: Locator, label: str, option: str) -> None:
    """Choose ``option`` by its label or value in one round trip; one the form does not offer is an
    :class:`InputError` (Playwright alone would wait for it until the timeout, then retry the item)."""
    try:
        await control.select_option(option, timeout=SELECT_QUICK_MS)
        return
    except PlaywrightTimeoutError:
        pass
    offered: list[list[str]] = await control.evaluate(
        "(el) => [...el.options].map((o) => [o.label.trim(), o.value])")
    if not any(option in (text, value) for text, value in offered):
        raise InputError(f"no such choice in the form: {label}: {option}")
    await control.select_option(option)  # offered after all (a slow page): the full timeout


def _text(value: str | int | date) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _fast_spec(label: str, value: FieldValue) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"label": label, "kind": "check", "value": value}
    if isinstance(value, Select):
        return {"label": label, "kind": "select", "value": value.option}
    if isinstance(value, Radio):
        return {"label": label, "kind": "radio", "value": value.option}
    assert not isinstance(value, Upload | Path)
    return {"label": label, "kind": "text", "value": _text(value)}


_FAST_FILL_JS = """([fields, button]) => {
  const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
  const byLabel = (text) => {
    for (const label of document.querySelectorAll('label')) {
      if (norm(label.textContent) === text && label.control) return label.control;
    }
    for (const el of document.querySelectorAll('[aria-label]')) {
      if (norm(el.getAttribute('aria-label')) === text) return el;
    }
    for (const legend of document.querySelectorAll('fieldset > legend')) {
      if (norm(legend.textContent) === text) return legend.parentElement;
    }
    return null;
  };
  const setValue = (el, value) => {
    const proto = Object.getPrototypeOf(el);
    const setter = Object.getOwnPropertyDescriptor(proto, 'value');
    if (setter && setter.set) setter.set.call(el, value); else el.value = value;
  };
  const fire = (el) => {
    el.dispatchEvent(new Event('input', {bubbles: true}));
    el.dispatchEvent(new Event('change', {bubbles: true}));
  };
  const missing = [], unknown = [];
  for (const f of fields) {
    const el = byLabel(f.label);
    if (!el) { missing.push(f.label); continue; }
    el.focus && el.focus();
    if (f.kind === 'check') { el.checked = f.value; fire(el); }
    else if (f.kind === 'select') {
      const option = [...el.options].find((o) => norm(o.label) === f.value || o.value === f.value);
      if (!option) { unknown.push(f.label + ': ' + f.value); continue; }
      setValue(el, option.value); fire(el);
    } else if (f.kind === 'radio') {
      const radio = [...el.querySelectorAll('input[type=radio]')].find(
        (r) => [...(r.labels || [])].some((l) => norm(l.textContent) === f.value) || r.value === f.value);
      if (!radio) { unknown.push(f.label + ': ' + f.value); continue; }
      radio.checked = true; fire(radio);
    } else { setValue(el, f.value); fire(el); }
    el.blur && el.blur();
  }
  if (button !== null && !missing.length && !unknown.length) {
    const target = [...document.querySelectorAll('button, input[type=submit]')].find(
      (b) => norm(b.textContent || b.value) === button);
    if (!target) missing.push('button ' + button); else target.click();
  }
  return {missing, unknown};
}"""


async def _fill_fast(page: Page, values: Mapping[str, FieldValue], button: str | None = None) -> None:
    specs = [_fast_spec(label, value) for label, value in values.items()]
    try:
        outcome: dict[str, list[str]] = await page.evaluate(_FAST_FILL_JS, [specs, button])
    except PlaywrightError as error:
        raise target_error(error, page) from None
    if outcome["missing"]:
        raise KansliError(f"the form at {_where(page.url)} has no {', '.join(outcome['missing'])}")
    if outcome["unknown"]:
        raise InputError(f"no such choice in the form: {', '.join(outcome['unknown'])}")


_FIELD_ERRORS_JS = """() => {
  const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
  const errors = {};
  for (const el of document.querySelectorAll('[aria-invalid="true"]')) {
    const label = norm(el.labels && el.labels[0] ? el.labels[0].textContent
                                                 : el.getAttribute('aria-label') || el.name || el.id);
    const described = (el.getAttribute('aria-describedby') || '').split(/\\s+/)
      .map((id) => id && document.getElementById(id)).filter(Boolean);
    const errorish = described.filter((d) => /error|fel|invalid/i.test(d.id + ' ' + d.className));
    errors[label] = (errorish.length ? errorish : described).map((d) => norm(d.textContent)).join(' ');
  }
  if (!Object.keys(errors).length) {
    const alert = document.querySelector('[role=alert]');
    if (alert) errors[''] = norm(alert.textContent);
  }
  return errors;
}"""


async def field_errors(page: Page) -> dict[str, str]:
    """The page's field errors as label → message, read from ``aria-invalid`` fields' descriptions.

    Without any invalid field, an alert on the page (``role=alert``) is returned under ``""``.
    """
    try:
        errors: dict[str, str] = await page.evaluate(_FIELD_ERRORS_JS)
    except PlaywrightError as error:
        raise target_error(error, page) from None
    return errors


# -- the pool ----------------------------------------------------------------------------------


@dataclass
class BrowserSession:
    """One context with its page, logged in once and reused for many items."""

    number: int
    context: BrowserContext
    page: Page
    logged_in: bool = False
    tracing: bool = False
    leases: int = 0  # items on this page so far


@dataclass
class BrowserPool:
    """N logged-in contexts of one browser; :meth:`session` leases one per item.

    ``login`` logs a page in (raising :class:`~shared.errors.LoginError` when the credentials are
    refused); it runs once per context, and again after a :class:`SessionExpiredError`. Contexts do
    not share one storage state: a server-side session holds the form being filled in, so each
    context needs its own. With ``trace``, each lease records a trace chunk (actions, errors and
    timings; DOM snapshots and network only with ``trace_snapshots``, which costs ~15% throughput).
    """

    browser: Browser
    settings: BrowserSettings
    login: LoginStep
    size: int = 1
    artifacts_dir: Path | None = None
    retry: RetrySettings = field(default_factory=RetrySettings)
    trace: bool = True
    trace_snapshots: bool = False
    _idle: asyncio.Queue[BrowserSession] = field(init=False)
    _sessions: list[BrowserSession] = field(init=False, default_factory=list)

    async def __aenter__(self) -> BrowserPool:
        self._idle = asyncio.Queue()
        try:
            for number in range(1, self.size + 1):
                session = await self._open(number)
                self._sessions.append(session)
                self._idle.put_nowait(session)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every context (the browser stays open; :func:`open_browser` owns it)."""
        for session in self._sessions:
            try:
                await session.context.close()
            except PlaywrightError:
                pass
        self._sessions.clear()

    async def _open(self, number: int) -> BrowserSession:
        context = await new_context(self.browser, self.settings)
        session = BrowserSession(number, context, await context.new_page())
        await self._log_in(session)
        return session

    async def _log_in(self, session: BrowserSession) -> None:
        """Log in (with retries for an unavailable target), with tracing stopped meanwhile."""
        if session.tracing:
            await session.context.tracing.stop()
            session.tracing = False
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential(multiplier=self.retry.backoff_initial, max=self.retry.backoff_max),
            retry=retry_if_exception(is_retryable), reraise=True, sleep=asyncio.sleep,
        )
        async for attempt in retrying:
            with attempt:
                await self._guarded_login(session.page)
        session.logged_in = True
        logger.debug("browser context {} logged in", session.number)
        if self.trace:
            await session.context.tracing.start(
                snapshots=self.trace_snapshots, screenshots=False, sources=False)
            session.tracing = True

    async def _guarded_login(self, page: Page) -> None:
        try:
            await self.login(page)
        except PlaywrightError as error:
            raise target_error(error, page) from None

    @asynccontextmanager
    async def session(self, item: WorkItem | None = None) -> AsyncIterator[Page]:
        """A logged-in page for one item; evidence is saved and errors are mapped on failure."""
        session = await self._idle.get()
        try:
            if self.settings.page_items and session.leases >= self.settings.page_items:
                await self._fresh_page(session)
            session.leases += 1
            if not session.logged_in:
                await self._log_in(session)
            if session.tracing:
                await session.context.tracing.start_chunk(title=item.key if item else None)
            try:
                yield session.page
            except PlaywrightError as error:
                raise target_error(error, session.page) from None
        except BaseException as error:
            await self._failed(session, item, error)
            raise
        else:
            if session.tracing:
                await session.context.tracing.stop_chunk()
        finally:
            self._idle.put_nowait(session)

    async def _fresh_page(self, session: BrowserSession) -> None:
        """Replace a page that served ``page_items`` items: a tab's history and memory grow with
        every page load and slow it down (~10% after 150 forms); the context keeps the login."""
        page = await session.context.new_page()
        old, session.page, session.leases = session.page, page, 0
        await _quietly(old.close())

    async def _failed(self, session: BrowserSession, item: WorkItem | None, error: BaseException) -> None:
        if isinstance(error, SessionExpiredError):
            session.logged_in = False
        if item is not None and self.artifacts_dir is not None and isinstance(error, Exception):
            await save_evidence(session, item, self.artifacts_dir)
        elif session.tracing:
            await _quietly(session.context.tracing.stop_chunk())


async def _quietly(step: Awaitable[Any]) -> None:
    try:
        await step
    except PlaywrightError as error:
        logger.debug("could not save evidence: {}", redact(str(error).splitlines()[0] if str(error) else ""))


#: Marks password fields, and fields and text that look like identity numbers, for masking.
_MARK_SENSITIVE = """(pattern) => {
  const looks = new RegExp(pattern);
  for (const field of document.querySelectorAll("input, textarea, select")) {
    if (field.type === "password" || looks.test(field.value || "")) field.dataset.kansliMask = "";
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (looks.test(node.textContent || "") && node.parentElement) node.parentElement.dataset.kansliMask = "";
  }
}"""
_IDENTITY_LIKE = r"(^|\D)((19|20)?\d{6}[-+]?\d{4})(\D|$)"


async def _mark_sensitive(page: Page) -> list[Locator]:
    """Locators to black out in a screenshot: secrets and anything shaped like a personnummer."""
    try:
        await page.evaluate(_MARK_SENSITIVE, _IDENTITY_LIKE)
    except PlaywrightError:
        return []
    return [page.locator("[data-kansli-mask]")]


def redact_zip(path: Path) -> None:
    """Rewrite a zip (a Playwright trace) with every text member passed through the redaction."""
    with atomic_path(path) as temporary:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(
            temporary, "w", zipfile.ZIP_DEFLATED
        ) as target:
            for info in source.infolist():
                data = source.read(info)
                try:
                    data = redact(data.decode("utf-8")).encode("utf-8")
                except UnicodeDecodeError:
                    pass  # images and other binary resources
                target.writestr(info, data)


def evidence_name(item: WorkItem) -> str:
    """``<key>-attempt<N>``, made safe for a file name."""
    safe = re.sub(r"[^\w.-]+", "_", item.key)[:80] or "item"
    return f"{safe}-attempt{item.attempt}"


async def save_evidence(session: BrowserSession, item: WorkItem, artifacts_dir: Path) -> None:
    """A full-page screenshot and the item's trace chunk, linked from ``item.artifacts``."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    base = evidence_name(item)
    screenshot = artifacts_dir / f"{base}.png"
    trace = artifacts_dir / f"{base}-trace.zip"
    masked = await _mark_sensitive(session.page)
    await _quietly(session.page.screenshot(path=screenshot, full_page=True, timeout=5000,
                                           mask=masked, mask_color="#1d2430"))
    if session.tracing:
        await _quietly(session.context.tracing.stop_chunk(path=trace))
        if trace.is_file():
            redact_zip(trace)
    for path in (screenshot, trace):
        if path.is_file():
            item.artifacts.append(f"{artifacts_dir.name}/{path.name}")
