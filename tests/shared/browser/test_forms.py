"""The form helpers of shared.browser on pages in many styles, each case in both fill modes.

Every page is static HTML written here and served on 127.0.0.1 by a tiny HTTP server; one Chromium
runs on an event loop in a thread for the whole module, and each case gets a fresh context. Each case
runs per field and with fast fill and must end the same way: the same values in the page, or the
same error. Contexts have long timeouts unless a case needs a short one, so a helper that waited on
a locator instead of failing at once would show as a hung test, not a slow one. The last cases fill
the demo e-service's application, and one page with every kind of field, in a browser of their own.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.async_api import Browser, Page

from demo.site import RunningSite
from shared.browser import (
    BrowserPool,
    FieldValue,
    Radio,
    Select,
    Success,
    Upload,
    field_errors,
    fill_form,
    goto,
    new_context,
    open_browser,
    submit_form,
    submit_step,
)
from shared.errors import (
    FormMismatchError,
    InputError,
    KansliError,
    TargetUnavailableError,
    UncertainSubmitError,
)
from shared.settings import BrowserSettings, load_settings
from tests.shared.browser.conftest import APPLICANT, ERRAND, with_pool

pytestmark = pytest.mark.browser
T = TypeVar("T")
MODES = pytest.mark.parametrize("fast", [False, True], ids=["per-field", "fast"])
#: Longer than any case may take: a helper that waits on a locator hangs the case instead.
LONG = BrowserSettings(timeout_ms=120_000, navigation_timeout_ms=120_000)

READ_BACK = """() => {
  const out = {};
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (!el.id) continue;
    out[el.id] = (el.type === 'checkbox' || el.type === 'radio') ? el.checked
      : el.type === 'file' ? [...el.files].map((f) => f.name).join(',') : el.value;
  }
  out.events = window.seen ? [...new Set(window.seen)].sort().join(' ') : '';
  return out;
}"""
EVENTS = ("<script>window.seen = []; "
          "document.addEventListener('input', (e) => seen.push(e.target.id));</script>")

# -- the pages ---------------------------------------------------------------------------------

LABEL_STYLES = """<form>
<label for=a>Förnamn</label><input id=a>
<label>Efternamn <input id=b></label>
<input aria-label="Mellannamn" id=c>
<span id=dl>Önskat</span> <span id=dl2>startdatum</span><input id=d type=date aria-labelledby="dl dl2">
<input id=e placeholder="Sök ort">
<input id=f title="Kommunkod">
<label for=g>
   E-post
   <span class=required aria-hidden=true>*</span></label><input id=g type=email>
<label for=h>Telefon:</label><input id=h type=tel>
<label for=i>Antal barn</label><input id=i type=number>
<label for=j>Beskrivning *:</label><textarea id=j></textarea>
<label>Ärendetyp
  <select id=k><option value="">Välj</option><option value="fard">Färdtjänst</option>
  <option value="bost">Bostadsanpassning</option></select></label>
<label for=l>Postort</label><input id=l>
<input type=checkbox id=m><label for=m>Jag intygar att uppgifterna är riktiga</label>
<label><input type=checkbox id=n checked> Skicka kopia</label>
<fieldset><legend>Har du färdtjänst i dag?</legend>
  <label><input type=radio name=r id=r1 value=1> Ja</label>
  <label><input type=radio name=r id=r2 value=2> Nej</label></fieldset>
<span id=kl>Kontaktväg</span>
<div role=radiogroup aria-labelledby=kl>
  <input type=radio name=kv id=kv1 value=brev aria-label="Brev">
  <input type=radio name=kv id=kv2 value=epost aria-label="E-brev"></div>
<label for=o>Bilaga</label><input id=o type=file>
</form>""" + EVENTS

MISFITS = """<form>
<label for=a>Namn</label><input id=a>
<label for=b>Adress</label><input id=b>
<label for=c>Adress</label><input id=c>
<label for=d>Ort</label><input id=d><label for=e>ORT</label><input id=e>
<label for=f>Kundnummer</label><input id=f disabled value=K-1>
<label for=g>Handläggare</label><input id=g readonly value=Eva>
<fieldset disabled><label for=h>Bidrag</label><input id=h></fieldset>
<div style="display:none"><label for=i>Gömd</label><input id=i></div>
<div style="display:none"><label for=j>Kommun</label><input id=j></div>
<label for=k>Kommun</label><input id=k>
<input type=checkbox id=l><label for=l>Jag intygar</label>
<label for=m>Typ</label><select id=m><option value=a>Alfa</option><option value=b>Beta</option></select>
<fieldset><legend>Svar</legend><label><input type=radio name=r id=r1 value=yes> Ja</label>
  <label><input type=radio name=r id=r2 value=no> Nej</label></fieldset>
<label for=n>Datum</label><input id=n type=date>
<label for=o>Kod</label><input id=o maxlength=4>
<label for=p>Bilaga</label><input id=p type=file>
<button type=button>Spara</button><button type=button disabled>Låst</button>
</form>""" + EVENTS

LATE = """<form>
<label for=lan>Län</label><select id=lan><option value="">Välj</option><option>Skåne</option>
<option>Uppsala</option></select>
<label for=kommun>Kommun</label><select id=kommun><option value="">Välj län först</option></select>
<div id=later></div>
</form>
<script>
lan.addEventListener('change', () => setTimeout(() => {
  kommun.innerHTML = '<option value="">Välj</option>' +
    (lan.value === 'Skåne' ? '<option>Lund</option><option>Ystad</option>' : '<option>Enköping</option>');
}, 300));
setTimeout(() => { later.innerHTML = '<label for=sen>Referens</label><input id=sen>'; }, 100);
</script>"""

SPA = """<form id=form><label for=n>Namn</label><input id=n required>
<button type=submit>Skicka</button></form>
<p id=kvitto hidden></p><p id=alltid>Välkommen</p>
<script>
const api = new URLSearchParams(location.search).get('api') || '/api/ansokan';
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const answer = await fetch(api, {method: 'POST', body: n.value});
  if (location.search.includes('push')) history.pushState({}, '', '/p/spa-klar');
  kvitto.textContent = 'Ärende ' + await answer.text();
  kvitto.hidden = false;
});
</script>"""

CLASSIC = """<form method=post action=/skicka><label for=n>Namn</label><input id=n name=n>
<button type=submit>Skicka</button></form>"""
DONE = "<h1 id=klar>Tack</h1>"
#: How pages decorate a label (required markers, colons, odd whitespace) and how a field gets one.
DECORATIONS = ["", " *", "*", ":", " :", " *:", ": *", "\u00a0*", "\n  *\n",
               "<span aria-hidden=true> *</span>", "<abbr title=obligatoriskt>*</abbr>:"]
STYLES = {
    "for": "<label for={id}>{text}</label><input id={id}>",
    "wrapping": "<label>{text} <input id={id}></label>",
    "aria-label": "<input id={id} aria-label='{plain}'>",
    "aria-labelledby": "<span id={id}-l>{text}</span><input id={id} aria-labelledby={id}-l>",
    "placeholder": "<input id={id} placeholder='{plain}'>",
}


def decorated_page() -> str:
    fields = []
    for number, template in enumerate(STYLES.values()):
        for index, decoration in enumerate(DECORATIONS):
            plain = f"Fält {number} {index}{re.sub(r'<[^>]+>', '', decoration)}".replace("\n", " ")
            text = f"  Fält  {number} {index}{decoration}"
            fields.append(template.format(id=f"f{number}-{index}", text=text, plain=plain))
    return "<form>" + "\n".join(fields) + "</form>"


PAGES = {"decorated": decorated_page(), "labels": LABEL_STYLES, "misfits": MISFITS, "late": LATE, "spa": SPA,
         "classic": CLASSIC, "klar": DONE, "spa-klar": SPA}


# -- a tiny site and one browser for the module ------------------------------------------------


@dataclass
class Site:
    url: str
    posts: list[tuple[str, str]] = field(default_factory=list)


def serve(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            name = self.path.split("?")[0].removeprefix("/p/")
            if name not in PAGES:
                self.answer(404, "saknas")
                return
            self.answer(200, f"<!doctype html><html lang=sv><meta charset=utf-8><body>{PAGES[name]}")

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            site.posts.append((self.path, body))
            if self.path == "/skicka":
                self.send_response(303)
                self.send_header("Location", "/p/klar")
                self.end_headers()
            elif self.path == "/api/fel":
                self.answer(500, "fel")
            else:
                self.answer(200, f"A-{len(site.posts)}")

        def answer(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


class BrowserThread:
    """One Chromium on an event loop of its own; tests hand it coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack = AsyncExitStack()
        self.browser: Browser = self.run(lambda: self.stack.enter_async_context(open_browser(LONG)))

    def run(self, step: Callable[[], Awaitable[T]]) -> T:
        async def wrapped() -> T:
            return await step()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=300)

    def close(self) -> None:
        self.run(self.stack.aclose)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    found = Site(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = serve(found)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserThread]:
    running = BrowserThread()
    yield running
    running.close()


def on_page(chromium: BrowserThread, url: str, body: Callable[[Page], Awaitable[T]],
            settings: BrowserSettings = LONG) -> T:
    async def main() -> T:
        context = await new_context(chromium.browser, settings)
        try:
            page = await context.new_page()
            await page.goto(url)
            return await body(page)
        finally:
            await context.close()

    return chromium.run(main)


def fill_and_read(chromium: BrowserThread, url: str, values: dict[str, FieldValue], fast: bool,
                  settings: BrowserSettings = LONG) -> dict[str, Any]:
    async def body(page: Page) -> dict[str, Any]:
        await fill_form(page, values, fast=fast)
        result: dict[str, Any] = await page.evaluate(READ_BACK)
        return result

    return on_page(chromium, url, body, settings)


def refused(chromium: BrowserThread, url: str, values: dict[str, FieldValue], fast: bool,
            settings: BrowserSettings = LONG) -> tuple[KansliError, bool]:
    """The error filling ``values`` raises, and whether the page was left exactly as it was."""
    async def body(page: Page) -> tuple[KansliError, bool]:
        before = await page.evaluate(READ_BACK)
        with pytest.raises(KansliError) as caught:
            await fill_form(page, values, fast=fast)
        return caught.value, before == await page.evaluate(READ_BACK)

    return on_page(chromium, url, body, settings)


# -- every label style and field kind ---------------------------------------------------------

STYLE_CASES: list[tuple[str, dict[str, FieldValue], dict[str, Any]]] = [
    ("label for", {"Förnamn": "Åsa"}, {"a": "Åsa"}),
    ("wrapping label", {"Efternamn": "Öberg"}, {"b": "Öberg"}),
    ("aria-label", {"Mellannamn": "Maria"}, {"c": "Maria"}),
    ("aria-labelledby, two ids, a date", {"Önskat startdatum": date(2027, 3, 1)}, {"d": "2027-03-01"}),
    ("placeholder only", {"Sök ort": "Lund"}, {"e": "Lund"}),
    ("title only", {"Kommunkod": "1281"}, {"f": "1281"}),
    ("required marker and line breaks in the label", {"E-post": "asa@exempel.se"}, {"g": "asa@exempel.se"}),
    ("the robot writes the marker", {"E-post *": "asa@exempel.se"}, {"g": "asa@exempel.se"}),
    ("trailing colon", {"Telefon": "070-123 45 67"}, {"h": "070-123 45 67"}),
    ("a number", {"Antal barn": 2}, {"i": "2"}),
    ("marker and colon on a textarea", {"Beskrivning": "Resor\ntill vården"}, {"j": "Resor\ntill vården"}),
    ("select inside its label, by option label", {"Ärendetyp": Select("Färdtjänst")}, {"k": "fard"}),
    ("select by option value", {"Ärendetyp": Select("bost")}, {"k": "bost"}),
    ("case differs, unique", {"postort": "Ystad", "förnamn": "Eva"}, {"l": "Ystad", "a": "Eva"}),
    ("checkbox by label for", {"Jag intygar att uppgifterna är riktiga": True}, {"m": True}),
    ("wrapping label of a checkbox, unchecked", {"Skicka kopia": False}, {"n": False}),
    ("radio group by legend", {"Har du färdtjänst i dag?": Radio("Nej")}, {"r1": False, "r2": True}),
    ("radio choice case differs", {"har du färdtjänst i dag?": Radio("ja")}, {"r1": True, "r2": False}),
    ("radio group by aria-labelledby", {"Kontaktväg": Radio("E-brev")}, {"kv1": False, "kv2": True}),
    ("a single radio by its own label", {"Brev": True}, {"kv1": True}),
]


@MODES
@pytest.mark.parametrize(("values", "expected"), [case[1:] for case in STYLE_CASES],
                         ids=[case[0] for case in STYLE_CASES])
def test_every_label_style_and_field_kind(
    chromium: BrowserThread, site: Site, fast: bool, values: dict[str, FieldValue], expected: dict[str, Any]
) -> None:
    state = fill_and_read(chromium, f"{site.url}/p/labels", values, fast)
    assert {key: state[key] for key in expected} == expected
    typed = [key for key, value in expected.items() if isinstance(value, str)]
    assert set(typed) <= set(state["events"].split()), "no input event for a typed field"


@MODES
def test_a_whole_form_at_once_and_an_upload(chromium: BrowserThread, site: Site, tmp_path: Path,
                                            fast: bool) -> None:
    attachment = tmp_path / "läkarintyg.pdf"
    attachment.write_bytes(b"%PDF-1.4")
    cases = [case for name, case, _ in STYLE_CASES[:13] if name != "the robot writes the marker"]
    values: dict[str, FieldValue] = {label: value for case in cases for label, value in case.items()}
    values.update({"Bilaga": Upload(attachment), "Jag intygar att uppgifterna är riktiga": True})
    state = fill_and_read(chromium, f"{site.url}/p/labels", values, fast)
    assert (state["a"], state["d"], state["j"], state["k"], state["m"]) == (
        "Åsa", "2027-03-01", "Resor\ntill vården", "bost", True)
    assert state["o"] == "läkarintyg.pdf"


@MODES
@pytest.mark.parametrize("robot_writes", ["as shown", "lower case", "with a marker", "with a colon"])
def test_every_label_decoration_in_every_style(chromium: BrowserThread, site: Site, fast: bool,
                                               robot_writes: str) -> None:
    suffix = {"with a marker": " *", "with a colon": ":"}.get(robot_writes, "")
    values: dict[str, FieldValue] = {}
    for number in range(len(STYLES)):
        for index in range(len(DECORATIONS)):
            label = f"Fält {number} {index}{suffix}"
            values[label.lower() if robot_writes == "lower case" else label] = f"v{number}.{index}"
    state = fill_and_read(chromium, f"{site.url}/p/decorated", values, fast)
    assert {key: value for key, value in state.items() if key.startswith("f")} == {
        f"f{number}-{index}": f"v{number}.{index}" for number in range(len(STYLES))
        for index in range(len(DECORATIONS))}


# -- what does not fit: one clear error, nothing written -------------------------------------

MISFIT_CASES: list[tuple[str, dict[str, FieldValue], type[KansliError], str]] = [
    ("a typo names the closest labels", {"Namn": "Åsa", "Adres": "x"}, FormMismatchError,
     r"the form at /p/misfits has no field 'Adres'; closest on the page: 'Adress'"),
    ("two fields share a label", {"Adress": "Storgatan 1"}, FormMismatchError,
     r"2 fields on the page are labelled 'Adress'"),
    ("case-insensitive match not unique", {"ort": "Lund"}, FormMismatchError,
     r"2 fields on the page are labelled 'ort'"),
    ("two labels of the mapping name one field", {"Namn": "Åsa", "namn:": "Eva"}, FormMismatchError,
     r"'namn:' and 'Namn' name the same field"),
    ("disabled", {"Namn": "Åsa", "Kundnummer": "K-2"}, FormMismatchError, r"'Kundnummer' is disabled"),
    ("read-only", {"Handläggare": "Per"}, FormMismatchError, r"'Handläggare' is read-only"),
    ("inside a disabled fieldset", {"Bidrag": "100"}, FormMismatchError, r"'Bidrag' is disabled"),
    ("hidden", {"Gömd": "x"}, FormMismatchError, r"'Gömd' is not visible"),
    ("text to a checkbox", {"Jag intygar": "ja"}, FormMismatchError,
     r"'Jag intygar' is a checkbox, which takes True or False"),
    ("a bool to a text field", {"Namn": True}, FormMismatchError,
     r"'Namn' is a text field, which takes text"),
    ("Select to a text field", {"Namn": Select("Åsa")}, FormMismatchError, r"'Namn' is a text field"),
    ("text to a select", {"Typ": "Alfa"}, FormMismatchError, r"'Typ' is a choice list, which takes Select"),
    ("Radio to a text field", {"Namn": Radio("Ja")}, FormMismatchError, r"'Namn' is a text field"),
    ("text to a radio group", {"Svar": "Ja"}, FormMismatchError,
     r"'Svar' is a radio group, which takes Radio"),
    ("radio by value", {"Svar": Radio("no")}, FormMismatchError,
     r"'Svar': 'no' is the value of the choice labelled 'Nej'; give its label"),
    ("a radio choice that is not there", {"Svar": Radio("Kanske")}, InputError,
     r"no such choice in the form: Svar: Kanske \(it offers 'Ja', 'Nej'\)"),
    ("a date the field cannot take", {"Datum": "1/3 2027"}, InputError,
     r"Datum: the value is not a valid date for the field"),
    ("longer than maxlength", {"Kod": "12345"}, InputError,
     r"Kod: the value is 5 characters long; the field takes at most 4"),
]


@MODES
@pytest.mark.parametrize(("values", "error", "message"), [case[1:] for case in MISFIT_CASES],
                         ids=[case[0] for case in MISFIT_CASES])
def test_what_does_not_fit_is_one_clear_error_and_nothing_is_written(
    chromium: BrowserThread, site: Site, fast: bool, values: dict[str, FieldValue],
    error: type[KansliError], message: str,
) -> None:
    raised, untouched = refused(chromium, f"{site.url}/p/misfits", values, fast)
    assert type(raised) is error and re.search(message, str(raised)), str(raised)
    assert untouched, "a field was written although the form was refused"


@MODES
def test_a_mismatch_names_label_path_and_closest(chromium: BrowserThread, site: Site, fast: bool) -> None:
    raised, _ = refused(chromium, f"{site.url}/p/misfits?rad=7", {"Kommun": "Lund", "namn ": "x",
                                                                  "Handlägare": "Eva"}, fast)
    assert isinstance(raised, FormMismatchError)
    assert (raised.label, raised.path, raised.closest) == ("Handlägare", "/p/misfits", ("Handläggare",))


@MODES
def test_of_two_fields_sharing_a_label_the_visible_one_is_filled(chromium: BrowserThread, site: Site,
                                                                 fast: bool) -> None:
    state = fill_and_read(chromium, f"{site.url}/p/misfits", {"Kommun": "Lund"}, fast)
    assert (state["j"], state["k"]) == ("", "Lund")


@MODES
def test_a_missing_upload_file_is_an_input_error_naming_it(chromium: BrowserThread, site: Site,
                                                           tmp_path: Path, fast: bool) -> None:
    missing = tmp_path / "intyg-saknas.pdf"
    raised, untouched = refused(chromium, f"{site.url}/p/misfits", {"Namn": "Åsa", "Bilaga": missing}, fast)
    assert type(raised) is InputError and str(missing) in str(raised) and "does not exist" in str(raised)
    assert untouched


@MODES
def test_a_missing_button_is_a_mismatch_naming_the_buttons(chromium: BrowserThread, site: Site,
                                                           fast: bool) -> None:
    async def body(page: Page) -> KansliError:
        with pytest.raises(FormMismatchError) as caught:
            await submit_form(page, {"Namn": "Åsa"}, "Spar", fast=fast)
        assert await page.input_value("#a") == ""
        return caught.value

    raised = on_page(chromium, f"{site.url}/p/misfits", body)
    assert "has no button 'Spar'; closest on the page: 'Spara'" in str(raised)


@MODES
def test_a_button_that_stays_disabled_is_a_mismatch_after_the_action_timeout(
    chromium: BrowserThread, site: Site, fast: bool
) -> None:
    async def body(page: Page) -> KansliError:
        with pytest.raises(FormMismatchError) as caught:
            await submit_form(page, {"Namn": "Åsa"}, "Låst", fast=fast)
        return caught.value

    raised = on_page(chromium, f"{site.url}/p/misfits", body, BrowserSettings(timeout_ms=500))
    assert str(raised) == "the button 'Låst' stays disabled once the form is filled in (at /p/misfits)"


# -- pages that change while they are filled -------------------------------------------------


@MODES
def test_late_choices_and_a_late_field_are_waited_for(chromium: BrowserThread, site: Site,
                                                      fast: bool) -> None:
    values: dict[str, FieldValue] = {"Län": Select("Skåne"), "Kommun": Select("Ystad"), "Referens": "R-1"}
    state = fill_and_read(chromium, f"{site.url}/p/late", values, fast)
    assert (state["lan"], state["kommun"], state["sen"]) == ("Skåne", "Ystad", "R-1")


@MODES
def test_a_choice_that_never_comes_is_an_input_error_after_the_action_timeout(
    chromium: BrowserThread, site: Site, fast: bool
) -> None:
    short = BrowserSettings(timeout_ms=1500, navigation_timeout_ms=120_000)
    values: dict[str, FieldValue] = {"Län": Select("Uppsala"), "Kommun": Select("Lund")}
    raised, _ = refused(chromium, f"{site.url}/p/late", values, fast, short)
    assert type(raised) is InputError
    assert "no such choice in the form: Kommun: Lund" in str(raised)


# -- submits that do not navigate --------------------------------------------------------------

SHORT_NAVIGATION = BrowserSettings(timeout_ms=120_000, navigation_timeout_ms=1000)


@MODES
@pytest.mark.parametrize("success", [Success(selector="#kvitto"), Success(response=r"/api/ansokan$"),
                                     Success(url=r"/p/spa-klar$")], ids=["selector", "response", "url"])
def test_a_form_that_updates_in_place_succeeds_on_its_sign(chromium: BrowserThread, site: Site, fast: bool,
                                                           success: Success) -> None:
    async def body(page: Page) -> tuple[int | None, str]:
        response = await submit_form(page, {"Namn": f"Åsa {fast} {success}"}, "Skicka", fast=fast,
                                     success=success)
        await page.locator("#kvitto").wait_for()
        return (response.status if response else None), await page.inner_text("#kvitto")

    status, receipt = on_page(chromium, f"{site.url}/p/spa?push=1", body)
    assert receipt.startswith("Ärende A-")
    assert status == (200 if success.response else None)
    assert site.posts.count(("/api/ansokan", f"Åsa {fast} {success}")) == 1


@MODES
def test_a_submit_with_no_visible_outcome_is_uncertain_not_plain_unavailable(
    chromium: BrowserThread, site: Site, fast: bool
) -> None:
    async def body(page: Page) -> UncertainSubmitError:
        with pytest.raises(UncertainSubmitError) as caught:
            await submit_form(page, {"Namn": f"Eva {fast}"}, "Skicka", fast=fast)
        return caught.value

    raised = on_page(chromium, f"{site.url}/p/spa", body, SHORT_NAVIGATION)
    assert raised.needs_reconcile and "the submit may have been stored" in str(raised)
    assert "after pressing 'Skicka'" in str(raised) and "within 1 s" in str(raised)  # the context's timeout
    assert ("/api/ansokan", f"Eva {fast}") in site.posts  # it was sent: only reconcile can tell


@MODES
def test_a_sign_on_the_page_before_the_submit_is_refused_and_a_5xx_answer_is_unavailable(
    chromium: BrowserThread, site: Site, fast: bool
) -> None:
    async def body(page: Page) -> None:
        with pytest.raises(FormMismatchError, match="is on the page before pressing 'Skicka'"):
            await submit_form(page, {"Namn": "x"}, "Skicka", fast=fast, success=Success(selector="#alltid"))
        with pytest.raises(TargetUnavailableError, match="HTTP 500"):
            await submit_step(page, {"Namn": "y"}, "Skicka", fast=fast, success=Success(response="/api/fel"))

    on_page(chromium, f"{site.url}/p/spa?api=/api/fel", body)
    assert ("/api/fel", "x") not in site.posts


@MODES
def test_a_classic_form_still_answers_with_its_new_page(chromium: BrowserThread, site: Site,
                                                        fast: bool) -> None:
    async def body(page: Page) -> tuple[int, str]:
        response = await submit_form(page, {"Namn": "Åsa"}, "Skicka", fast=fast,
                                     success=Success(selector="#kvitto-finns-inte"))
        assert response is not None
        return response.status, page.url

    status, url = on_page(chromium, f"{site.url}/p/classic", body)
    assert (status, url) == (200, f"{site.url}/p/klar")


# -- on the demo e-service, and a page with every kind of field --------------------------------


@pytest.mark.parametrize("fast", [False, True], ids=["per-field", "fast"])
def test_fill_submit_and_read_field_errors(eservice: RunningSite, fast: bool) -> None:
    settings = load_settings()
    url = settings.eservice.url

    async def body(pool: BrowserPool) -> tuple[dict[str, str], str, str]:
        async with pool.session() as page:
            await goto(page, f"{url}/ansokan/steg1")
            bad = {**APPLICANT, "Personnummer": "19811218-9870", "E-post": "utan-snabel-a"}
            response = await submit_form(page, bad, "Nästa", fast=fast)
            assert response is not None and response.status == 422
            errors = await field_errors(page)
            with pytest.raises(InputError) as refused:  # the same, as a business error
                await submit_step(page, bad, "Nästa", fast=fast, where="row 7")
            assert str(refused.value).startswith("row 7: Personnummer: Personnumret har fel kontrollsiffra")
            assert "E-post: Ange en giltig e-postadress" in str(refused.value)
            await submit_step(page, APPLICANT, "Nästa", fast=fast)
            await submit_form(page, ERRAND, "Granska", fast=fast)
            review = await page.locator("#review-arendetyp").inner_text()
            await submit_form(page, {}, "Skicka in", fast=fast)
            return errors, review, await page.locator("#case-number").inner_text()

    errors, review, case_number = with_pool(settings, body)
    assert errors == {
        "Personnummer": "Personnumret har fel kontrollsiffra. Kontrollera numret.",
        "E-post": "Ange en giltig e-postadress, t.ex. namn@exempel.se.",
    }
    assert review == "Färdtjänst"
    assert [case["case_number"] for case in eservice.cases()] == [case_number]
    assert eservice.cases()[0]["start_date"] == "2027-03-01"


FORM = """<form><label for=n>Namn</label><input id=n>
<label for=d>Datum</label><input id=d type=date>
<label for=t>Typ</label><select id=t><option value="">Välj</option><option value="a">Alfa</option></select>
<input type=checkbox id=c><label for=c>Jag intygar</label>
<fieldset><legend>Svar</legend><input type=radio name=r id=r1 value=ja><label for=r1>Ja</label>
<input type=radio name=r id=r2 value=nej><label for=r2>Nej</label></fieldset>
<label for=f>Bilaga</label><input id=f type=file></form>
<script>window.seen = []; document.addEventListener('input', (e) => seen.push(e.target.id));</script>"""


@pytest.mark.parametrize("fast", [False, True], ids=["per-field", "fast"])
def test_fill_form_handles_every_kind_of_field(tmp_path: Path, fast: bool) -> None:
    from datetime import date

    from shared.browser import Radio, Upload, fill_form, new_context
    from shared.errors import InputError

    attachment = tmp_path / "intyg.txt"
    attachment.write_text("intyg")
    values: dict[str, Any] = {"Namn": "Åsa", "Datum": date(2027, 3, 1), "Typ": Select("Alfa"),
                              "Jag intygar": True, "Svar": Radio("Nej"), "Bilaga": Upload(attachment)}
    settings = BrowserSettings()

    async def main() -> Any:
        async with open_browser(settings) as browser:
            context = await new_context(browser, settings)
            page = await context.new_page()
            await page.set_content(FORM)
            await fill_form(page, values, fast=fast)
            with pytest.raises(InputError, match="Typ: Beta"):
                await fill_form(page, {"Typ": Select("Beta")}, fast=fast)
            return await page.evaluate("""() => [n.value, d.value, t.value, c.checked, r2.checked,
                                                 f.files[0].name, seen.includes('n')]""")

    assert asyncio.run(main()) == ["Åsa", "2027-03-01", "a", True, True, "intyg.txt", True]
