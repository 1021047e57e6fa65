"""The pool of logged-in contexts, one lease per item, and the evidence saved when an item fails.

:class:`BrowserPool` logs each context in once and leases it to one item at a time
(:meth:`BrowserPool.session`); an item that fails leaves a full-page screenshot (secrets and identity
numbers masked) and its trace chunk (redacted) in the run's ``artifacts/`` (:func:`save_evidence`).
Tracing is stopped around every login, so a saved trace never holds the password.
"""

from __future__ import annotations

import asyncio
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

# The error class alone, not playwright.async_api (see shared.browser.navigation).
from playwright._impl._errors import Error as PlaywrightError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from shared.browser.chromium import new_context
from shared.browser.navigation import target_error
from shared.errors import LoginError, SessionExpiredError, TargetError, is_retryable
from shared.files import atomic_path
from shared.items import WorkItem
from shared.redaction import redact
from shared.settings import BrowserSettings, RetrySettings

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page

    from shared.targets import TargetLimit

LoginStep = Callable[["Page"], Awaitable[None]]


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
    slot: int | None = None  # its session slot on the target (BrowserPool.limit)


@dataclass
class BrowserPool:
    """N logged-in contexts of one browser; :meth:`session` leases one per item.

    ``login`` logs a page in (raising :class:`~shared.errors.LoginError` when the credentials are
    refused); it runs once per context, and again after a :class:`SessionExpiredError`. A failed
    login costs a context, not the run: the pool goes on with the contexts that logged in and retries
    the others in the background with backoff (a refusal is not retried); it fails only when no
    context could log in. Contexts do
    not share one storage state: a server-side session holds the form being filled in, so each
    context needs its own. With ``trace``, each lease records a trace chunk (actions, errors and
    timings; DOM snapshots and network only with ``trace_snapshots``, which costs ~15% throughput).
    With ``limit`` (:func:`shared.targets.target_limit`), each context holds one of the target's
    session slots from before its first login until the pool closes: the first waits for one (up to
    the target's ``wait_s``), the others that find none free wait in the background and join later.
    """

    browser: Browser
    settings: BrowserSettings
    login: LoginStep
    size: int = 1
    artifacts_dir: Path | None = None
    retry: RetrySettings = field(default_factory=RetrySettings)
    trace: bool = True
    trace_snapshots: bool = False
    limit: TargetLimit | None = None
    _idle: asyncio.Queue[BrowserSession] = field(init=False)
    _sessions: list[BrowserSession] = field(init=False, default_factory=list)
    _serving: set[int] = field(init=False, default_factory=set)
    _revivals: list[asyncio.Future[None]] = field(init=False, default_factory=list)

    async def __aenter__(self) -> BrowserPool:
        self._idle = asyncio.Queue()
        try:
            failed: list[tuple[BrowserSession, TargetError]] = []
            for number in range(1, self.size + 1):
                session = await self._open(number)
                self._sessions.append(session)
                if not await self._claim(session, wait=number == 1):
                    continue  # it waits in the background for a free session on the target
                try:
                    await self._log_in(session)
                except TargetError as error:  # LoginError too: the credentials were refused
                    if isinstance(error, LoginError) and not self.in_use:
                        raise  # trying them again in another context could lock the account
                    failed.append((session, error))
                    continue
                self._serve(session)
            if not self.in_use:
                raise failed[-1][1]
            for session, refusal in failed:
                self._park(session, refusal)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def in_use(self) -> int:
        """How many contexts are logged in and serve items (a context whose login failed does not)."""
        return len(self._serving)

    async def close(self) -> None:
        """Close every context (the browser stays open; :func:`open_browser` owns it)."""
        for revival in self._revivals:
            revival.cancel()
        await asyncio.gather(*self._revivals, return_exceptions=True)
        self._revivals.clear()
        for session in self._sessions:
            try:
                await session.context.close()
            except PlaywrightError:
                pass
        if self.limit is not None:
            for session in self._sessions:
                if session.slot is not None:
                    self.limit.release(session.slot)
                    session.slot = None
        self._sessions.clear()
        self._serving.clear()

    async def _open(self, number: int) -> BrowserSession:
        context = await new_context(self.browser, self.settings)
        return BrowserSession(number, context, await context.new_page())

    async def _claim(self, session: BrowserSession, wait: bool) -> bool:
        """A session slot on the target for ``session`` (always, without a limit); without ``wait``, a
        context that finds none free goes on waiting for one in the background."""
        if self.limit is None:
            return True
        session.slot = await (self.limit.take_async() if wait else self.limit.try_take_async())
        if session.slot is None:
            logger.info("browser context {} waits for a free session on target {} ({} at most)",
                        session.number, self.limit.target, self.limit.limit)
            self._revivals.append(asyncio.ensure_future(self._when_free(session)))
        return session.slot is not None

    async def _when_free(self, session: BrowserSession) -> None:
        assert self.limit is not None
        try:
            session.slot = await self.limit.take_async(float("inf"), quiet=True)
            await self._log_in(session)
        except TargetError as error:
            self._park(session, error)
            return
        except Exception as error:  # noqa: BLE001 - a background task: log, never lose the error
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            logger.warning("browser context {} gave up waiting for a session on target {}: {}",
                           session.number, self.limit.target, redact(first))
            return
        self._serve(session)
        logger.info("browser context {} got a session on target {}: {} of {} context(s) in use",
                    session.number, self.limit.target, self.in_use, self.size)

    def _serve(self, session: BrowserSession) -> None:
        self._serving.add(session.number)
        self._idle.put_nowait(session)

    def _park(self, session: BrowserSession, error: TargetError) -> None:
        """Go on without a context whose login failed; retry it in the background (not a refusal)."""
        again = "" if isinstance(error, LoginError) else "; its login is retried in the background"
        logger.warning("browser context {} could not log in ({}): going on with {} of {} context(s){}",
                       session.number, error, self.in_use, self.size, again)
        if not isinstance(error, LoginError):
            self._revivals.append(asyncio.ensure_future(self._revive(session)))

    async def _revive(self, session: BrowserSession) -> None:
        """Log a parked context in after a growing pause, up to ``retry.attempts`` rounds."""
        for round_number in range(self.retry.attempts):
            pause = self.retry.backoff_initial * 2 ** (round_number + 1)
            await asyncio.sleep(min(self.retry.backoff_max, pause))
            try:
                await self._log_in(session)
            except TargetError as error:
                logger.debug("browser context {} still cannot log in: {}", session.number, error)
                if isinstance(error, LoginError):
                    return
                continue
            except Exception as error:  # noqa: BLE001 - a background task: log, never lose the error
                logger.warning("browser context {} gave up logging in: {}", session.number,
                               redact(str(error).splitlines()[0] if str(error) else type(error).__name__))
                return
            self._serve(session)
            logger.info("browser context {} logged in after all: {} of {} in use", session.number,
                        self.in_use, self.size)
            return
        logger.warning("browser context {} could not log in; the run goes on with {} of {} context(s)",
                       session.number, self.in_use, self.size)

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
