"""Navigation and submits, with the target's failures as Kansli's errors.

A 5xx answer, a timeout or an expired session is a :class:`~shared.errors.TargetUnavailableError` or
a :class:`~shared.errors.SessionExpiredError` (:func:`target_error`, :func:`check_response`); a
submit waits for a new page or the robot's :class:`Success` sign, and one whose outcome does not
show in time is an :class:`~shared.errors.UncertainSubmitError` (:func:`submit_and_wait`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

# The error classes alone: playwright.async_api re-exports these very classes, and importing it costs
# ~50 ms that listing robots (which import this package) must not pay.
# tests/shared/browser/test_navigation.py checks they are the same classes.
from playwright._impl._errors import Error as PlaywrightError
from playwright._impl._errors import TimeoutError as PlaywrightTimeoutError

from shared.browser.chromium import _navigation_timeout_ms
from shared.errors import (
    FormMismatchError,
    SessionExpiredError,
    TargetError,
    TargetUnavailableError,
    UncertainSubmitError,
)
from shared.redaction import redact

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page, Response

EXPIRED_LOGIN = re.compile(r"/login\?(?:.*&)?expired=1")


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


@dataclass(frozen=True)
class Success:
    """What a successful submit looks like, for a page that may answer without loading a new one.

    Any of: ``url``, a regular expression the page's URL comes to match (a new URL: the one of the
    form does not count); ``selector``, an element that becomes visible; ``response``, a regular
    expression for the URL of the answer the submit gets (its status is then checked like a page's).
    A new page still counts as an answer, as without a :class:`Success`.
    """

    url: str | re.Pattern[str] | None = None
    selector: str | None = None
    response: str | re.Pattern[str] | None = None

    def describe(self) -> str:
        signs = [f"no URL matching {_pattern(self.url).pattern!r}" if self.url is not None else "",
                 f"no {self.selector!r}" if self.selector else "",
                 f"no answer from {_pattern(self.response).pattern!r}" if self.response is not None else ""]
        return ", ".join(sign for sign in signs if sign)


def _pattern(pattern: str | re.Pattern[str] | None) -> re.Pattern[str]:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern or "")


class _Settled(Exception):
    """Leaves ``expect_navigation`` once the submit's outcome is known (cancelling its wait)."""

    def __init__(self, outcome: tuple[str, Any] | None) -> None:
        super().__init__("settled")
        self.outcome = outcome


async def submit_and_wait(
    page: Page, act: Callable[[], Awaitable[Any]], success: Success | None = None, what: str = "the submit"
) -> Response | None:
    """Run ``act`` (a click that submits) and wait for a new page or, with ``success``, its sign.

    The answer is checked (:func:`check_response`); the response is returned when there is one. An
    error in ``act`` itself means nothing was sent (:class:`TargetUnavailableError`); no answer
    within the navigation timeout is an :class:`~shared.errors.UncertainSubmitError`: the submit may
    have been stored, so the robot's reconcile step runs before it is retried.
    """
    timeout = _navigation_timeout_ms(page)
    before = page.url
    if success is not None and success.selector and await page.locator(success.selector).first.is_visible():
        raise FormMismatchError(f"the sign of success {success.selector!r} is on the page before {what} "
                                f"(at {urlsplit(before).path}): it cannot tell that the submit worked")
    waits: list[asyncio.Future[Any]] = []
    if success is not None and success.response is not None:
        answer = _pattern(success.response)
        waits.append(asyncio.ensure_future(page.wait_for_event(
            "response", lambda response: bool(answer.search(response.url)), timeout=timeout)))
        await asyncio.sleep(0)  # the listener is attached once the wait has taken its first step
    try:
        async with page.expect_navigation(wait_until="domcontentloaded", timeout=timeout) as navigation:
            try:
                await act()
            except PlaywrightError as error:
                raise target_error(error, page) from None
            waits.extend(_success_waits(page, success, before, timeout))
            raise _Settled(await _first_outcome(asyncio.ensure_future(navigation.value), waits))
    except _Settled as settled:
        outcome = settled.outcome
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    return _answer(page, outcome, success, what, timeout)


def _success_waits(
    page: Page, success: Success | None, before: str, timeout: int
) -> list[asyncio.Future[Any]]:
    waits: list[asyncio.Future[Any]] = []
    if success is not None and success.url is not None:
        wanted = _pattern(success.url)
        waits.append(asyncio.ensure_future(page.wait_for_url(
            lambda url: url != before and bool(wanted.search(url)), wait_until="commit", timeout=timeout)))
    if success is not None and success.selector:
        waits.append(asyncio.ensure_future(page.wait_for_selector(success.selector, timeout=timeout)))
    return waits


async def _first_outcome(
    navigation: asyncio.Future[Any], waits: list[asyncio.Future[Any]]
) -> tuple[str, Any] | None:
    """("navigation", response) or ("sign", value) for the first wait that succeeds; None if none did
    (a navigation that failed other than by timing out is ("failed", error))."""
    from playwright.async_api import Response  # the class at run time (listing robots imports none)

    pending: set[asyncio.Future[Any]] = {navigation, *waits}
    failure: tuple[str, Any] | None = None
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            answers = [wait for wait in done if wait is not navigation and wait.exception() is None]
            if answers and isinstance(answers[0].result(), Response):
                return "sign", answers[0].result()  # the answer the robot asked for
            if navigation in done and navigation.exception() is None:
                return "navigation", navigation.result()
            for wait in done:
                error = wait.exception()
                if error is None:
                    return "sign", wait.result()
                if wait is navigation and not isinstance(error, PlaywrightTimeoutError):
                    failure = "failed", error
        return failure
    finally:
        navigation.cancel()
        await asyncio.gather(navigation, return_exceptions=True)


def _answer(page: Page, outcome: tuple[str, Any] | None, success: Success | None, what: str,
            timeout: int) -> Response | None:
    if outcome is None:
        signs = f" and {success.describe()}" if success is not None else ""
        raise UncertainSubmitError(
            f"the e-service did not answer in time at {_where(page.url)} after {what}: no new page{signs} "
            f"within {timeout / 1000:g} s; the submit may have been stored")
    kind, value = outcome
    if kind == "failed":
        raise target_error(value, page) from None
    from playwright.async_api import Response

    if isinstance(value, Response):
        return check_response(page, value)
    check_response(page, None)
    return None


async def click_and_wait(page: Page, target: Locator, *, success: Success | None = None) -> Response | None:
    """Click ``target`` (a submit button or link) and wait for its answer (:func:`submit_and_wait`)."""
    return await submit_and_wait(page, target.click, success, "the click")
