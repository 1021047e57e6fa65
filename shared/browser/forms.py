"""Forms filled by label: every field found the same way, filled per field or ``fast``, submitted.

A label the page lacks or a field that cannot take its value is refused before anything is written
(:func:`fill_form`); :func:`submit_step` turns the target's validation errors into an
:class:`~shared.errors.InputError` naming each field. The scripts that run in the page are in
``shared/browser/_form_scripts.py``.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

# The error class alone, not playwright.async_api (see shared.browser.navigation).
from playwright._impl._errors import Error as PlaywrightError

from shared.browser._form_scripts import (
    _FAST_FILL_JS,
    _FIELD_ERRORS_JS,
    _MARK_FIELDS_JS,
    _WAIT_ENABLED_JS,
    _WAIT_OPTION_JS,
)
from shared.browser.chromium import _action_timeout_ms
from shared.browser.navigation import Success, submit_and_wait, target_error
from shared.errors import FormMismatchError, InputError, KansliError
from shared.redaction import redact

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page, Response


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


# -- submits -----------------------------------------------------------------------------------


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
_nonces = itertools.count(1)


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


async def field_errors(page: Page) -> dict[str, str]:
    """The page's field errors as label → message, read from ``aria-invalid`` fields' descriptions.

    Without any invalid field, an alert on the page (``role=alert``) is returned under ``""``.
    """
    try:
        errors: dict[str, str] = await page.evaluate(_FIELD_ERRORS_JS)
    except PlaywrightError as error:
        raise target_error(error, page) from None
    return errors
