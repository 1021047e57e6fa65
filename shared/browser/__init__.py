"""The browser layer: one Chromium per run, a pool of logged-in contexts, evidence on failure.

Built on Playwright's *async* API: one event loop drives one browser and N contexts concurrently
(Playwright's sync API is bound to the thread that started it, so "one browser, N contexts in
parallel" is natural only with asyncio). The pieces:

* :func:`open_browser`: the system Chromium from :class:`~shared.settings.BrowserSettings`, with
  the flags a closed-network machine needs; missing Chromium is a :class:`BrowserNotFoundError`;
* :class:`BrowserPool`: N contexts (locale, time zone, timeouts), each logged in once and reused
  for many items (a context whose login fails is retried in the background; the pool fails only
  when none logs in); :meth:`BrowserPool.session` leases one for an item, records a Playwright trace
  chunk while it works, and on failure saves a full-page screenshot and the trace into the run's
  ``artifacts/`` (linked from ``item.artifacts``), maps Playwright errors onto Kansli's error tree
  and, on :class:`SessionExpiredError`, logs that context in again before its next use;
* :func:`goto`, :func:`click_and_wait`, :func:`check_response`: navigation whose 5xx answers,
  timeouts and expired sessions become :class:`TargetUnavailableError` / :class:`SessionExpiredError`;
  :func:`submit_and_wait`: a submit waits for a new page or the robot's :class:`Success` sign (a
  URL, an element, an answer); no outcome in time is an :class:`UncertainSubmitError`;
* :func:`fill_form` and :func:`submit_form` find every field the same way in both modes (label,
  ARIA name, then placeholder or title: one evaluation of the page, no locator waits), refuse what
  does not fit with a :class:`~shared.errors.FormMismatchError` before writing anything, then fill
  per field through Playwright's actions or ``fast``: every field of a step in one browser round
  trip, firing ``input``/``change`` events; :func:`field_errors`;
  :func:`submit_step` fills, submits and turns the target's validation errors into an
  :class:`~shared.errors.InputError` naming each field.

Tracing is stopped around every login, so a saved trace never holds the password.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import os
import re
import weakref
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
    FormMismatchError,
    InputError,
    KansliError,
    LoginError,
    SessionExpiredError,
    TargetError,
    TargetUnavailableError,
    UncertainSubmitError,
    is_retryable,
)
from shared.files import atomic_path
from shared.items import WorkItem
from shared.redaction import redact
from shared.settings import BrowserSettings, RetrySettings

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page, Playwright, Response

    from shared.targets import TargetLimit

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
    """Choose an option of a ``<select>`` by its label (or, failing that, its value; then by its
    label ignoring case, when that is unique). A choice that loads late is waited for up to the
    action timeout; one that never comes is an :class:`~shared.errors.InputError`."""

    option: str


@dataclass(frozen=True)
class Radio:
    """Check the radio button labelled ``option`` in the group the field's label names (a
    ``<fieldset>``'s legend or a ``radiogroup``'s ARIA name). Its label, not its ``value``: a value
    is a :class:`~shared.errors.FormMismatchError` naming the label to give."""

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
    _timeouts[context] = (settings.timeout_ms, settings.navigation_timeout_ms)
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


async def click_button(page: Page, name: str, *, success: Success | None = None) -> Response | None:
    """Click the button named ``name`` (found as fields are: at once, or a
    :class:`~shared.errors.FormMismatchError` naming the page's buttons) and wait for its answer."""
    target = await _fill(page, {}, name, fast=False, press=False)
    assert target is not None
    return await submit_and_wait(page, target.click, success, f"pressing {name!r}")


async def submit_form(
    page: Page, values: Mapping[str, FieldValue], button: str, *, fast: bool = False,
    success: Success | None = None,
) -> Response | None:
    """Fill the form (see :func:`fill_form`), press the button named ``button``, wait for the answer
    (a new page or, with ``success``, its sign: see :func:`submit_and_wait`).

    ``fast`` fills every field and presses the button in one browser round trip.
    """
    what = f"pressing {button!r}"
    if fast and not any(isinstance(value, Upload | Path) for value in values.values()):
        return await submit_and_wait(
            page, lambda: _fill(page, values, button, fast=True, press=True), success, what)
    target = await _fill(page, values, button, fast=fast, press=False)
    assert target is not None
    return await submit_and_wait(page, target.click, success, what)


async def submit_step(
    page: Page, values: Mapping[str, FieldValue], button: str, *, fast: bool = False, where: str = "",
    success: Success | None = None,
) -> Response | None:
    """:func:`submit_form`, with the target's refusal of the values as an :class:`InputError`.

    An answer of HTTP 400 or 422 is validation: the page's field errors (:func:`field_errors`) make
    the message, after ``where`` (say ``"row 12"``), so a bad row ends as a business error.
    """
    prefix = f"{where}: " if where else ""
    try:
        response = await submit_form(page, values, button, fast=fast, success=success)
    except InputError as error:
        raise InputError(f"{prefix}{error}") from None
    if response is not None and response.status in (400, 422):
        errors = await field_errors(page)
        described = "; ".join(f"{label}: {text}" if label else text for label, text in errors.items())
        raise InputError(f"{prefix}{described or f'the e-service refused the step ({response.status})'}")
    return response


# -- forms -------------------------------------------------------------------------------------

#: How long a field that is not (yet) there, or not yet fillable, may take to appear before the form
#: is declared a mismatch: long enough for a script to finish rendering, short enough to fail fast.
MISMATCH_GRACE_MS = 750
_DEFAULT_TIMEOUTS = BrowserSettings()
_timeouts: weakref.WeakKeyDictionary[BrowserContext, tuple[int, int]] = weakref.WeakKeyDictionary()
_nonces = itertools.count(1)


def _action_timeout_ms(page: Page) -> int:
    return _timeouts.get(page.context, (_DEFAULT_TIMEOUTS.timeout_ms,))[0]


def _navigation_timeout_ms(page: Page) -> int:
    default = (0, _DEFAULT_TIMEOUTS.navigation_timeout_ms)
    return _timeouts.get(page.context, default)[1]


async def fill_form(page: Page, values: Mapping[str, FieldValue], *, fast: bool = False) -> None:
    """Fill the form on ``page`` from label → value.

    Every field is first found by its label in one browser round trip, the same way in both modes
    (see :data:`_FORM_HELPERS_JS`): a label the page lacks or has twice, a disabled, read-only or
    hidden field, or a value of the wrong kind for the field (text for a checkbox, ``True`` for a
    text field, :class:`Select` for anything but a ``<select>``) is a
    :class:`~shared.errors.FormMismatchError` before anything is written. A field that only appears
    (or is enabled) once another one is filled belongs in a later call; a field the page renders a
    moment late is waited for up to :data:`MISMATCH_GRACE_MS`. Hidden fields (``display: none``, also
    the input of a custom-styled checkbox) are refused: Playwright cannot act on them either.

    Per field (default) each value then goes through Playwright's actions (``fill``, ``set_checked``,
    ``select_option``) as a user would; ``fast`` sets every field in the same round trip, firing
    ``input`` and ``change`` events. Files are attached through Playwright in both modes.
    """
    await _fill(page, values, None, fast=fast, press=False)


async def _fill(page: Page, values: Mapping[str, FieldValue], button: str | None, *, fast: bool,
                press: bool) -> Locator | None:
    """Find, check and fill every field; the button's locator (unpressed unless ``fast``+``press``)."""
    specs = [_spec(label, value) for label, value in values.items()]
    nonce = f"k{next(_nonces)}"
    options = {"nonce": nonce, "graceMs": MISMATCH_GRACE_MS, "waitMs": _action_timeout_ms(page), "fast": fast,
               "press": press and not any(spec["kind"] == "file" for spec in specs)}
    script = _FAST_FILL_JS if fast else _MARK_FIELDS_JS
    try:
        outcome: dict[str, Any] = await page.evaluate(script, [specs, button, options])
    except PlaywrightError as error:
        raise target_error(error, page) from None
    if outcome["problems"]:
        raise _form_error(page, outcome)

    def marked(index: int | str) -> Locator:
        return page.locator(f'[data-kansli-field="{nonce}-{index}"]')

    try:
        for index, (spec, value) in enumerate(zip(specs, values.values(), strict=True)):
            if spec["kind"] == "file":
                await marked(index).set_input_files(_upload_path(value))
            elif not fast:
                await _fill_marked(marked(index), spec, outcome["fields"][index]["option"], page)
    except PlaywrightError as error:
        raise target_error(error, page) from None
    if button is None:
        return None
    target = marked("button")
    if not fast and outcome["buttonDisabled"]:
        if not await target.evaluate(_WAIT_ENABLED_JS, _action_timeout_ms(page)):
            raise _form_error(page, {"problems": [{"label": button, "button": True, "problem": "disabled"}]})
    return target


async def _fill_marked(control: Locator, spec: dict[str, Any], option: str | None, page: Page) -> None:
    kind, value = spec["kind"], spec["value"]
    if kind == "text":
        await control.fill(value)
    elif kind == "check":
        await control.set_checked(value)
    elif kind == "radio":
        await control.check()
    else:
        if option is None:  # a choice that loads late: wait for it up to the action timeout
            found: dict[str, Any] = await control.evaluate(_WAIT_OPTION_JS, [value, _action_timeout_ms(page)])
            if "problem" in found:
                raise _form_error(page, {"problems": [{**found, "label": spec["label"], "value": value}]})
            option = str(found["value"])
        await control.select_option(value=option)


def _spec(label: str, value: FieldValue) -> dict[str, Any]:
    """What the form scripts need of one value: its label, its kind and its text."""
    if isinstance(value, bool):
        return {"label": label, "kind": "check", "value": value}
    if isinstance(value, Select):
        return {"label": label, "kind": "select", "value": value.option}
    if isinstance(value, Radio):
        return {"label": label, "kind": "radio", "value": value.option}
    if isinstance(value, Upload | Path):
        path = _upload_path(value)
        if not path.is_file():
            raise InputError(redact(f"{label}: the file to upload does not exist: {path}"))
        return {"label": label, "kind": "file", "value": ""}
    if isinstance(value, str | int | date):
        return {"label": label, "kind": "text", "value": _text(value)}
    raise FormMismatchError(f"{label}: Kansli cannot fill a field with a {type(value).__name__}",
                            label=label)


def _upload_path(value: FieldValue) -> Path:
    return value.path if isinstance(value, Upload) else Path(str(value))


def _text(value: str | int | date) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


#: Why a field does not fit, by the problem the form scripts report.
_MISMATCH = {
    "ambiguous": "{count} fields on the page are labelled {label!r}",
    "disabled": "the field {label!r} is disabled on the page (one that another field enables belongs "
                "in a later fill_form call)",
    "read-only": "the field {label!r} is read-only on the page",
    "hidden": "the field {label!r} is not visible on the page",
    "kind": "the field {label!r} is a {shown}, which takes {wants}",
    "choice by value": "{label!r}: {value!r} is the value of the choice labelled {detail!r}; give its label",
    "ambiguous choice": "{label!r} offers more than one choice named {value!r}",
    "same field": "{label!r} and {detail!r} name the same field",
}
_WANTS = {"text": "text", "checkbox": "True or False", "radio": "True (checked)", "select": "Select(...)",
          "radio group": "Radio(...)", "file": "Upload(...)"}
_SHOWN = {"text": "text field", "checkbox": "checkbox", "radio": "radio button", "select": "choice list",
          "radio group": "radio group", "file": "file field"}


def _form_error(page: Page, outcome: Mapping[str, Any]) -> KansliError:
    """The first problem the form scripts found, as the error it is."""
    problem = outcome["problems"][0]
    label, kind = str(problem["label"]), str(problem["problem"])
    path = urlsplit(page.url).path or page.url
    what = f"the button {label!r}" if problem.get("button") else f"the field {label!r}"
    if kind == "no choice":
        offered = ", ".join(repr(text) for text in (problem.get("offered") or [])[:12])
        return InputError(f"no such choice in the form: {label}: {problem.get('value')} "
                          f"(it offers {offered or 'none'})")
    if kind == "value":
        return InputError(f"{label}: the value {problem['detail']}")
    if kind == "missing":
        names: list[str] = outcome.get("buttons" if problem.get("button") else "labels") or []
        closest = tuple(_closest(label, names))
        hint = (f"; closest on the page: {', '.join(map(repr, closest))}" if closest
                else f"; the page offers: {', '.join(map(repr, names[:8]))}" if names else "")
        return FormMismatchError(f"the form at {path} has no {what.removeprefix('the ')}{hint}",
                                 label=label, path=path, closest=closest)
    message = _MISMATCH.get(kind, "{label!r}: " + kind).format(
        label=label, count=problem.get("detail"), detail=problem.get("detail"),
        shown=_SHOWN.get(str(problem.get("detail")), problem.get("detail")),
        wants=_WANTS.get(str(problem.get("detail")), "another kind of value"), value=problem.get("value"))
    if problem.get("button"):
        message = (f"the button {label!r} stays disabled once the form is filled in" if kind == "disabled"
                   else message.replace("the field", "the button"))
    return FormMismatchError(f"{message} (at {path})", label=label, path=path)


def _closest(label: str, offered: list[str]) -> list[str]:
    """The page's labels nearest to ``label`` (case and trailing markers ignored)."""
    def plain(text: str) -> str:
        return re.sub(r"[\s*:]+$", "", " ".join(text.split())).casefold()

    by_plain = {plain(text): text for text in offered}
    nearest = difflib.get_close_matches(plain(label), list(by_plain), n=3, cutoff=0.6)
    return [by_plain[near] for near in nearest]


#: The one way Kansli finds a form's fields, shared by both fill modes (inserted into each script).
#: A field is named by its ``<label>`` (``for`` or wrapping, without the text of controls inside it),
#: ``aria-label`` or ``aria-labelledby``; failing any such match, by its placeholder or title. Names
#: match after collapsing whitespace and dropping a trailing required marker (``*``) and colon; an
#: exact match wins, a case-insensitive one counts only when it is unique. Radio groups are named by
#: a ``<fieldset>``'s legend or a ``role=radiogroup``/``group`` element's ARIA name.
_FORM_HELPERS_JS = """
  const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
  const key = (s) => norm(s).replace(/[\\s*:]+$/, '');
  const folded = (s) => s.toLowerCase();
  const INNER = 'input, select, textarea, button';
  const text = (el) => {
    if (!el.querySelector(INNER)) return el.textContent;
    const copy = el.cloneNode(true);
    copy.querySelectorAll(INNER).forEach((inner) => inner.remove());
    return copy.textContent;
  };
  const labelledBy = (el) => (el.getAttribute('aria-labelledby') || '').split(/\\s+/)
    .map((id) => id && document.getElementById(id)).filter(Boolean).map(text).join(' ');
  const visible = (el) => {  // from the computed style alone where the browser can: no forced layout
    if (el.checkVisibility) return el.checkVisibility({visibilityProperty: true});
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== 'hidden';
  };
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const until = async (probe, ms) => {
    const end = Date.now() + ms;
    for (;;) {
      const found = probe();
      if (found || Date.now() >= end) return found;
      await sleep(25);
    }
  };
  const names = (el) => [
    [...(el.labels || [])].map(text).concat([el.getAttribute('aria-label'), labelledBy(el)]),
    [el.getAttribute('placeholder'), el.getAttribute('title')]];
  const NOT_FIELDS = new Set(['hidden', 'submit', 'button', 'reset', 'image']);
  const fieldsOnPage = () => {
    const found = [];
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.tagName !== 'INPUT' || !NOT_FIELDS.has(el.type)) found.push({el, names: names(el)});
    }
    for (const group of document.querySelectorAll('fieldset, [role=radiogroup], [role=group]')) {
      if (!group.querySelector('input[type=radio]')) continue;
      const legend = group.tagName === 'FIELDSET' ? group.querySelector(':scope > legend') : null;
      found.push({el: group, names: [[legend && text(legend), group.getAttribute('aria-label'),
                                       labelledBy(group)], [group.getAttribute('title')]]});
    }
    return found;
  };
  const buttonsOnPage = () => [...document.querySelectorAll(
    'button, input[type=submit], input[type=button], input[type=image], [role=button]')].map((el) => ({
      el, names: [[el.getAttribute('aria-label'), labelledBy(el),
                   el.tagName === 'INPUT' ? el.value || el.alt : text(el)], [el.getAttribute('title')]]}));
  const keyed = (found) => {
    for (const c of found) c.keys = c.names.map((tier) => tier.map(key).filter(Boolean));
    return found;
  };
  const match = (found, wanted) => {
    const exact = key(wanted), loose = folded(exact);
    for (const tier of [0, 1]) {
      const same = new Set(), similar = new Set();
      for (const c of found) {
        for (const k of c.keys[tier]) {
          if (k === exact) same.add(c.el); else if (folded(k) === loose) similar.add(c.el);
        }
      }
      for (const hits of [same, similar]) {
        if (!hits.size) continue;
        const all = [...hits], shown = all.length > 1 ? all.filter(visible) : all;
        return shown.length === 1 ? shown : all;
      }
    }
    return [];
  };
  const kindOf = (el) => {
    if (el.tagName === 'SELECT') return 'select';
    if (el.tagName === 'TEXTAREA') return 'text';
    if (el.tagName !== 'INPUT') return 'radio group';
    return {checkbox: 'checkbox', radio: 'radio', file: 'file'}[el.type] || 'text';
  };
  const option = (el, wanted) => {
    const offered = [...el.options].filter((o) => !o.disabled), exact = norm(wanted);
    for (const test of [(o) => norm(o.label) === exact, (o) => o.value === wanted,
                        (o) => folded(norm(o.label)) === folded(exact)]) {
      const hits = offered.filter(test);
      if (hits.length) return hits.length === 1 ? hits[0] : 'ambiguous';
    }
    return null;
  };
  const offeredOptions = (el) => [...el.options].filter((o) => !o.disabled).map((o) => norm(o.label));
"""

_RESOLVE_JS = """
  const ACCEPTS = {text: ['text'], check: ['checkbox', 'radio'], select: ['select'],
                   radio: ['radio group'], file: ['file']};
  const SANITIZED = new Set(['date', 'datetime-local', 'month', 'week', 'time', 'number', 'range',
                             'color']);
  const radioOf = (group, wanted) => {
    const radios = [...group.querySelectorAll('input[type=radio]')];
    const keyed = radios.map((r) => ({el: r, names: [names(r)[0], []]}));
    for (const c of keyed) c.keys = c.names.map((tier) => tier.map(key).filter(Boolean));
    const hits = match(keyed, wanted);
    if (hits.length === 1) return {el: hits[0]};
    if (hits.length) return {problem: 'ambiguous choice', detail: hits.length};
    const byValue = keyed.find((c) => c.el.value === wanted);
    if (byValue) return {problem: 'choice by value', detail: byValue.keys[0][0] || ''};
    return {problem: 'no choice', offered: keyed.map((c) => c.keys[0][0] || c.el.value)};
  };
  const refused = (el) => {
    if (el.matches(':disabled') || el.getAttribute('aria-disabled') === 'true') return 'disabled';
    if (el.readOnly || el.getAttribute('aria-readonly') === 'true') return 'read-only';
    return null;
  };
  const valueProblem = (el, value) => {
    if (el.maxLength >= 0 && value.length > el.maxLength) {
      return `is ${value.length} characters long; the field takes at most ${el.maxLength}`;
    }
    if (el.tagName === 'INPUT' && SANITIZED.has(el.type)) {
      const probe = document.createElement('input');
      probe.type = el.type;
      probe.value = value;
      if (probe.value !== value) return `is not a valid ${el.type} for the field`;
    }
    return null;
  };
  const checkField = (f, el) => {
    const kind = kindOf(el);
    if (!ACCEPTS[f.kind].includes(kind) || (kind === 'radio' && f.value !== true)) {
      return {problem: 'kind', detail: kind};
    }
    const target = kind === 'radio group' ? radioOf(el, f.value) : {el};
    if (target.problem) return target;
    const why = refused(el) || (target.el !== el && refused(target.el));
    if (why) return {problem: why};
    if (kind !== 'file' && !visible(target.el)) return {problem: 'hidden'};
    if (f.kind === 'text') {
      const detail = valueProblem(el, f.value);
      if (detail) return {problem: 'value', detail};
    }
    if (f.kind === 'select') {
      const chosen = option(el, f.value);
      if (chosen === 'ambiguous') return {problem: 'ambiguous choice'};
      return {el, option: chosen ? chosen.value : null};
    }
    return target;
  };
  const resolveAll = () => {
    const found = keyed(fieldsOnPage());
    const named = new Map();
    const resolved = fields.map((f) => {
      const hits = match(found, f.label);
      if (!hits.length) return {problem: 'missing'};
      if (hits.length > 1) return {problem: 'ambiguous', detail: hits.length};
      if (named.has(hits[0])) return {problem: 'same field', detail: named.get(hits[0])};
      named.set(hits[0], f.label);
      return checkField(f, hits[0]);
    });
    let pressed = null;
    if (button !== null) {
      const hits = match(keyed(buttonsOnPage()), button);
      pressed = hits.length === 1 ? {el: hits[0]}
        : {problem: hits.length ? 'ambiguous' : 'missing', detail: hits.length};
    }
    return {resolved, pressed, found};
  };
  const WAIT_FOR = new Set(['missing', 'ambiguous', 'disabled', 'read-only', 'hidden']);
  const waitable = (state) => [...state.resolved, state.pressed].some((r) => r && WAIT_FOR.has(r.problem));
  const stuck = (state) => [...state.resolved, state.pressed].some((r) => r && r.problem);
  let state = resolveAll();
  const end = Date.now() + options.graceMs;
  while (waitable(state) && Date.now() < end) {
    await sleep(50);
    state = resolveAll();
  }
  const report = (r, f, isButton) => ({label: isButton ? button : f.label, button: isButton,
    problem: r.problem, detail: r.detail, offered: r.offered,
    value: !isButton && r.problem.includes('choice') ? f.value : undefined});
  if (stuck(state)) {
    const problems = state.resolved.map((r, i) => r.problem ? report(r, fields[i], false) : null)
      .filter(Boolean);
    if (state.pressed && state.pressed.problem) problems.push(report(state.pressed, null, true));
    const missing = problems.filter((p) => p.problem === 'missing');
    const labels = missing.some((p) => !p.button) ? state.found.flatMap((c) => c.names.flat()) : [];
    const buttons = missing.some((p) => p.button) ? buttonsOnPage().flatMap((c) => c.names.flat()) : [];
    return {problems, labels: [...new Set(labels.map(norm).filter(Boolean))],
            buttons: [...new Set(buttons.map(norm).filter(Boolean))]};
  }
  document.querySelectorAll('[data-kansli-field]').forEach((el) => el.removeAttribute('data-kansli-field'));
  const mark = (el, name) => el.setAttribute('data-kansli-field', `${options.nonce}-${name}`);
  state.resolved.forEach((r, i) => {  // fast fill marks only the fields Playwright fills: files
    if (!options.fast || fields[i].kind === 'file') mark(r.el, i);
  });
  if (state.pressed && !options.press) mark(state.pressed.el, 'button');
"""

#: Per-field fill: find and mark every field (and the button) in one round trip; the caller fills.
_MARK_FIELDS_JS = ("async ([fields, button, options]) => {" + _FORM_HELPERS_JS + _RESOLVE_JS + """
  return {problems: [],
          fields: state.resolved.map((r) => ({option: r.option === undefined ? null : r.option})),
          buttonDisabled: state.pressed ? state.pressed.el.disabled === true : false};
}""")

#: Fast fill: find every field as above, then set them all (and press the button) in the same trip.
_FAST_FILL_JS = ("async ([fields, button, options]) => {" + _FORM_HELPERS_JS + _RESOLVE_JS + """
  const setValue = (el, value) => {
    const own = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(el), 'value');
    if (own && own.set) own.set.call(el, value); else el.value = value;
  };
  const fire = (el) => {
    el.dispatchEvent(new Event('input', {bubbles: true}));
    el.dispatchEvent(new Event('change', {bubbles: true}));
  };
  for (const [i, f] of fields.entries()) {
    const el = state.resolved[i].el;
    if (f.kind === 'file') continue;
    el.focus && el.focus();
    if (f.kind === 'check') {
      if (el.checked !== f.value) { el.checked = f.value; fire(el); }
    } else if (f.kind === 'select') {
      const chosen = await until(() => option(el, f.value), options.waitMs);
      if (!chosen || chosen === 'ambiguous') {
        return {problems: [{label: f.label, problem: chosen ? 'ambiguous choice' : 'no choice',
                            value: f.value, offered: offeredOptions(el)}]};
      }
      setValue(el, chosen.value); fire(el);
    } else if (f.kind === 'radio') {
      if (!el.checked) { el.checked = true; fire(el); }
    } else { setValue(el, f.value); fire(el); }
    el.blur && el.blur();
  }
  if (state.pressed && options.press) {
    const target = state.pressed.el;
    if (!await until(() => !target.disabled, options.waitMs)) {
      return {problems: [{label: button, button: true, problem: 'disabled'}]};
    }
    target.click();
  }
  return {problems: []};
}""")

#: Per-field fill of a late choice: wait for the option, then say its value (or why not).
_WAIT_OPTION_JS = ("async (el, [wanted, ms]) => {" + _FORM_HELPERS_JS + """
  const chosen = await until(() => option(el, wanted), ms);
  if (chosen && chosen !== 'ambiguous') return {value: chosen.value};
  return {problem: chosen ? 'ambiguous choice' : 'no choice', offered: offeredOptions(el)};
}""")

_WAIT_ENABLED_JS = ("async (el, ms) => {" + _FORM_HELPERS_JS + """
  return !!(await until(() => !el.disabled, ms));
}""")


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
