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

Everything public is importable from ``shared.browser``; it lives in :mod:`shared.browser.chromium`
(Chromium and its contexts), :mod:`shared.browser.pool` (the pool, its leases and the evidence),
:mod:`shared.browser.navigation` (navigation, submits and their errors) and
:mod:`shared.browser.forms` (filling forms by label). Importing it does not import
``playwright.async_api`` (~50 ms that listing robots must not pay): a function that needs it imports
it when it runs.
"""

from __future__ import annotations

# The very classes the submodules catch (see shared.browser.navigation).
from playwright._impl._errors import Error as PlaywrightError
from playwright._impl._errors import TimeoutError as PlaywrightTimeoutError

from shared.browser.chromium import (
    BLOCKED_ASSETS,
    CHROMIUM_FLAGS,
    INSTALL_HINT,
    chromium_args,
    chromium_executable,
    new_context,
    open_browser,
)
from shared.browser.forms import (
    MISMATCH_GRACE_MS,
    FieldValue,
    Radio,
    Select,
    Upload,
    click_button,
    field_errors,
    fill_form,
    submit_form,
    submit_step,
)
from shared.browser.navigation import (
    EXPIRED_LOGIN,
    Success,
    check_response,
    click_and_wait,
    goto,
    submit_and_wait,
    target_error,
)
from shared.browser.pool import (
    BrowserPool,
    BrowserSession,
    LoginStep,
    evidence_name,
    redact_zip,
    save_evidence,
)

__all__ = [
    "BLOCKED_ASSETS",
    "CHROMIUM_FLAGS",
    "EXPIRED_LOGIN",
    "INSTALL_HINT",
    "MISMATCH_GRACE_MS",
    "BrowserPool",
    "BrowserSession",
    "FieldValue",
    "LoginStep",
    "PlaywrightError",
    "PlaywrightTimeoutError",
    "Radio",
    "Select",
    "Success",
    "Upload",
    "check_response",
    "chromium_args",
    "chromium_executable",
    "click_and_wait",
    "click_button",
    "evidence_name",
    "field_errors",
    "fill_form",
    "goto",
    "new_context",
    "open_browser",
    "redact_zip",
    "save_evidence",
    "submit_and_wait",
    "submit_form",
    "submit_step",
    "target_error",
]
