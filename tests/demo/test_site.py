"""The demo e-service, driven over real HTTP on 127.0.0.1 (uvicorn in a background thread)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.site import FaultConfig, RunningSite, SiteConfig
from demo.site.faults import FaultInjector
from demo.site.forms import luhn_valid, personnummer_error
from demo.site.server import main

USERNAME = "handlaggare"
PASSWORD = "demo-lösenord-2026"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CASE_NUMBER = re.compile(r'id="case-number">(KS-\d{4}-\d{6})<')

APPLICANT = {
    "namn": "Åsa Öberg",
    "personnummer": "19811218-9876",
    "epost": "asa.oberg@exempel.se",
    "telefon": "070-123 45 67",
    "adress": "Storgatan 12 B",
    "postnummer": "123 45",
    "postort": "Exempelby",
}
ERRAND = {
    "arendetyp": "Färdtjänst",
    "startdatum": "2027-03-01",
    "beskrivning": "Behöver färdtjänst till och från dagverksamheten.",
    "referens": "PA-2026-0001",
    "intygande": "ja",
}


def make_config(tmp_path: Path, faults: FaultConfig | None = None, ttl: int = 1800) -> SiteConfig:
    return SiteConfig(
        db_path=tmp_path / "eservice.db",
        username=USERNAME,
        password=PASSWORD,
        faults=faults or FaultConfig(),
        session_ttl_seconds=ttl,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    with RunningSite(make_config(tmp_path_factory.mktemp("site"))) as running:
        yield running


def client_for(site: RunningSite) -> httpx.Client:
    return httpx.Client(base_url=site.url, follow_redirects=False, trust_env=False, timeout=10)


def csrf_of(response: httpx.Response) -> str:
    match = CSRF.search(response.text)
    assert match, response.text
    return match.group(1)


def login(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    token = csrf_of(client.get("/login"))
    form = {"csrf_token": token, "username": USERNAME, "password": password}
    return client.post("/login", data=form)


def fill_in(client: httpx.Client, reference: str = "PA-2026-0001") -> str:
    """Log in, fill both steps and return the CSRF token of the review page."""
    assert login(client).status_code == 303
    token = csrf_of(client.get("/ansokan/steg1"))
    response = client.post("/ansokan/steg1", data={**APPLICANT, "csrf_token": token})
    assert response.headers["location"] == "/ansokan/steg2", response.text
    errand = {**ERRAND, "referens": reference, "csrf_token": token}
    files = {"bilaga": ("läkarintyg.pdf", b"%PDF-1.4 demo", "application/pdf")}
    response = client.post("/ansokan/steg2", data=errand, files=files)
    assert response.headers["location"] == "/ansokan/granska", response.text
    review = client.get("/ansokan/granska")
    assert review.status_code == 200
    return csrf_of(review)


def submit(client: httpx.Client, reference: str = "PA-2026-0001") -> str:
    token = fill_in(client, reference)
    response = client.post("/ansokan/skicka", data={"csrf_token": token})
    assert response.status_code == 303, response.text
    receipt = client.get(response.headers["location"])
    match = CASE_NUMBER.search(receipt.text)
    assert match and "Tack! Din ansökan har tagits emot." in receipt.text
    return match.group(1)


# -- login, sessions, CSRF -----------------------------------------------------------------------


def test_health_and_login_page(site: RunningSite) -> None:
    with client_for(site) as client:
        assert client.get("/health").text == "ok"
        page = client.get("/login")
        assert page.status_code == 200
        assert "E-tjänst: Ansökan om kommunalt stöd" in page.text
        assert '<label for="username">Användarnamn</label>' in page.text
        assert page.headers["content-type"] == "text/html; charset=utf-8"


def test_login_ok_redirects_to_step1(site: RunningSite) -> None:
    with client_for(site) as client:
        response = login(client)
        assert response.status_code == 303
        assert response.headers["location"] == "/ansokan/steg1"
        page = client.get("/ansokan/steg1")
        assert page.status_code == 200 and "<h1>Sökande</h1>" in page.text


def test_wrong_password_is_401_in_swedish(site: RunningSite) -> None:
    with client_for(site) as client:
        response = login(client, password="fel")
        assert response.status_code == 401
        assert "Fel användarnamn eller lösenord." in response.text
        assert client.get("/ansokan/steg1").status_code == 303


def test_missing_or_bad_csrf_token_is_403(site: RunningSite) -> None:
    with client_for(site) as client:
        client.get("/login")
        assert client.post("/login", data={"username": USERNAME, "password": PASSWORD}).status_code == 403
        login(client)
        assert client.post("/ansokan/steg1", data=APPLICANT).status_code == 403
        bad = {**APPLICANT, "csrf_token": "förfalskad"}
        response = client.post("/ansokan/steg1", data=bad)
        assert response.status_code == 403 and "säkerhetstoken" in response.text


def test_protected_pages_need_login(site: RunningSite) -> None:
    with client_for(site) as client:
        for path in ("/ansokan/steg1", "/ansokan/steg2", "/ansokan/granska", "/sok"):
            response = client.get(path)
            assert (response.status_code, response.headers["location"]) == (303, "/login")
        client.cookies.set("eservice_session", "unknown-token")
        assert client.get("/ansokan/steg1").headers["location"] == "/login?expired=1"
        page = client.get("/login?expired=1")
        assert "Din session har gått ut. Logga in igen." in page.text


def test_session_older_than_ttl_expires(tmp_path: Path) -> None:
    with RunningSite(make_config(tmp_path, ttl=0)) as running, client_for(running) as client:
        assert login(client).status_code == 303
        assert client.get("/ansokan/steg1").headers["location"] == "/login?expired=1"


# -- the form ------------------------------------------------------------------------------------


def test_full_flow_gives_a_case_number(site: RunningSite) -> None:
    with client_for(site) as client:
        token = fill_in(client, reference="PA-FLOW-1")
        review = client.get("/ansokan/granska").text
        for text in ("Åsa Öberg", "19811218-9876", "Färdtjänst", "PA-FLOW-1", "läkarintyg.pdf"):
            assert text in review
        assert '<button type="submit" class="primary">Skicka in</button>' in review
        assert ">Ändra</a>" in review
        response = client.post("/ansokan/skicka", data={"csrf_token": token})
        assert response.headers["location"].startswith("/kvitto/KS-")
        receipt = client.get(response.headers["location"])
        number = CASE_NUMBER.search(receipt.text)
        assert number and re.fullmatch(rf"KS-{date.today().year}-\d{{6}}", number.group(1))
        # The form state is gone: a second submit cannot create a duplicate.
        again = client.post("/ansokan/skicka", data={"csrf_token": token})
        assert again.headers["location"] == "/ansokan/steg1"
    stored = [case for case in site.cases() if case["reference"] == "PA-FLOW-1"]
    assert len(stored) == 1 and stored[0]["case_number"] == number.group(1)
    assert stored[0]["attachment_name"] == "läkarintyg.pdf"


def test_case_numbers_are_sequential(site: RunningSite) -> None:
    with client_for(site) as client:
        first = submit(client, "PA-SEQ-1")
        second = submit(client, "PA-SEQ-2")
    assert int(second[-6:]) == int(first[-6:]) + 1


def test_concurrent_submits_get_distinct_numbers(site: RunningSite) -> None:
    numbers: list[str] = []

    def worker(index: int) -> None:
        with client_for(site) as client:
            numbers.append(submit(client, f"PA-PAR-{index}"))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(numbers) == 6 and len(set(numbers)) == 6


def test_step1_validation_rerenders_with_swedish_errors(site: RunningSite) -> None:
    with client_for(site) as client:
        login(client)
        token = csrf_of(client.get("/ansokan/steg1"))
        bad = {**APPLICANT, "namn": "", "personnummer": "19811218-9875", "epost": "asa.exempel.se"}
        response = client.post(
            "/ansokan/steg1", data={**bad, "postnummer": "12A 45", "csrf_token": token}
        )
    page = response.text
    assert response.status_code == 422
    assert 'role="alert"' in page and "Formuläret innehåller fel" in page
    assert '<p class="field-error" id="namn-error">Ange namn.</p>' in page
    assert "Personnumret har fel kontrollsiffra" in page
    assert "Ange en giltig e-postadress" in page
    assert '<p class="field-error" id="postnummer-error">' in page
    assert re.search(r'id="epost"[^>]*aria-describedby="epost-error" aria-invalid="true"', page)
    assert 'value="asa.exempel.se"' in page and 'value="Storgatan 12 B"' in page
    assert "telefon-error" not in page


def test_step2_validation(site: RunningSite) -> None:
    with client_for(site) as client:
        login(client)
        token = csrf_of(client.get("/ansokan/steg1"))
        client.post("/ansokan/steg1", data={**APPLICANT, "csrf_token": token})
        past = (date.today() - timedelta(days=400)).isoformat()
        bad = {**ERRAND, "arendetyp": "Bygglov", "startdatum": past, "csrf_token": token}
        del bad["intygande"]
        response = client.post("/ansokan/steg2", data=bad)
    assert response.status_code == 422
    assert "Välj en ärendetyp i listan." in response.text
    assert "mer än ett år bakåt i tiden" in response.text
    assert 'id="intygande-error">Du måste intyga att uppgifterna är riktiga.' in response.text
    assert "<option value=\"Färdtjänst\">" in response.text


def test_steps_cannot_be_skipped(site: RunningSite) -> None:
    with client_for(site) as client:
        login(client)
        assert client.get("/ansokan/steg2").headers["location"] == "/ansokan/steg1"
        assert client.get("/ansokan/granska").headers["location"] == "/ansokan/steg1"


def test_personnummer_rules() -> None:
    assert luhn_valid("8112189876")
    assert personnummer_error("19811218-9876") is None
    assert personnummer_error("811218+9876") is None
    assert personnummer_error("198112189876") is None
    assert personnummer_error("19811218-9875") is not None
    assert personnummer_error("1981-12-18") is not None
    assert personnummer_error("19811318-9876") is not None


# -- search and admin ----------------------------------------------------------------------------


def test_search_by_reference(site: RunningSite) -> None:
    with client_for(site) as client:
        number = submit(client, "PA-SÖK-1")
        found = client.get("/sok", params={"referens": "PA-SÖK-1"})
        assert f'class="case-number" href="/kvitto/{number}">{number}</a>' in found.text
        missing = client.get("/sok", params={"referens": "PA-FINNS-INTE"})
        assert "Inga ärenden hittades." in missing.text and "case-number" not in missing.text


def test_admin_listing_needs_basic_auth(site: RunningSite) -> None:
    with client_for(site) as client:
        number = submit(client, "PA-ADMIN-1")
        assert client.get("/admin/cases.json").status_code == 401
        assert client.get("/admin/cases.json", auth=(USERNAME, "fel")).status_code == 401
        response = client.get("/admin/cases.json", auth=(USERNAME, PASSWORD))
    assert response.status_code == 200
    cases = response.json()
    listed = [case for case in cases if case["case_number"] == number]
    assert listed == [
        {
            "case_number": number,
            "reference": "PA-ADMIN-1",
            "created_at": listed[0]["created_at"],
            "applicant_name": "Åsa Öberg",
            "case_type": "Färdtjänst",
        }
    ]
    assert "19811218" not in response.text


# -- faults --------------------------------------------------------------------------------------


def test_fault_spec_parsing() -> None:
    spec = "error_rate=0.1,slow_rate=0.05,slow_seconds=3,latency_ms=0,expire_after=20"
    faults = FaultConfig.parse(spec)
    assert faults == FaultConfig(error_rate=0.1, slow_rate=0.05, slow_seconds=3, expire_after=20)
    assert FaultConfig.parse("") == FaultConfig() and not FaultConfig().active
    with pytest.raises(ValueError, match="unknown fault key 'eror_rate'"):
        FaultConfig.parse("eror_rate=0.1")
    with pytest.raises(ValueError, match="'slow_seconds' needs a number"):
        FaultConfig.parse("slow_seconds=tre")
    with pytest.raises(ValueError, match="error_rate must be between 0 and 1"):
        FaultConfig.parse("error_rate=1.5")
    with pytest.raises(ValueError, match="'latency_ms' is not key=value"):
        FaultConfig.parse("latency_ms")


def test_fault_dice_are_deterministic() -> None:
    config = FaultConfig(error_rate=0.3, slow_rate=0.3)
    first, second = FaultInjector(config, seed=7), FaultInjector(config, seed=7)
    assert [first.for_request() for _ in range(50)] == [second.for_request() for _ in range(50)]


def test_error_rate_one_fails_every_page_and_stores_nothing(tmp_path: Path) -> None:
    faults = FaultConfig(error_rate=1.0)
    with RunningSite(make_config(tmp_path, faults)) as running, client_for(running) as client:
        for path in ("/login", "/ansokan/steg1", "/sok"):
            response = client.get(path)
            assert response.status_code == 500 and "Tekniskt fel" in response.text
        assert client.post("/ansokan/skicka", data={}).status_code == 500
        assert client.get("/health").status_code == 200
        assert client.get("/admin/cases.json", auth=(USERNAME, PASSWORD)).json() == []
        assert running.cases() == []


def test_error_on_submit_happens_before_the_store(tmp_path: Path) -> None:
    with RunningSite(make_config(tmp_path)) as running, client_for(running) as client:
        token = fill_in(client, "PA-500")
        running.set_faults(FaultConfig(error_rate=1.0))
        assert client.post("/ansokan/skicka", data={"csrf_token": token}).status_code == 500
        assert running.cases() == []
        running.set_faults(FaultConfig())
        response = client.post("/ansokan/skicka", data={"csrf_token": token})
        assert response.headers["location"].startswith("/kvitto/")
        assert len(running.cases()) == 1


def test_fail_after_store_keeps_the_case(tmp_path: Path) -> None:
    faults = FaultConfig(fail_after_store_rate=1.0)
    with RunningSite(make_config(tmp_path, faults)) as running, client_for(running) as client:
        token = fill_in(client, "PA-STORED")
        response = client.post("/ansokan/skicka", data={"csrf_token": token})
        assert response.status_code == 500 and "Tekniskt fel" in response.text
        found = client.get("/sok", params={"referens": "PA-STORED"})
        assert 'class="case-number"' in found.text
        assert [case["reference"] for case in running.cases()] == ["PA-STORED"]


def test_slow_answers_and_latency(tmp_path: Path) -> None:
    faults = FaultConfig(slow_rate=1.0, slow_seconds=0.4, latency_ms=100)
    with RunningSite(make_config(tmp_path, faults)) as running, client_for(running) as client:
        started = time.monotonic()
        assert client.get("/login").status_code == 200
        assert time.monotonic() - started >= 0.5
        started = time.monotonic()
        assert client.get("/health").status_code == 200
        assert time.monotonic() - started < 0.3


def test_expire_after_forces_one_new_login(tmp_path: Path) -> None:
    faults = FaultConfig(expire_after=1)
    with RunningSite(make_config(tmp_path, faults)) as running, client_for(running) as client:
        submit(client, "PA-EXP-1")  # the receipt is still shown
        response = client.get("/ansokan/steg1")
        assert response.headers["location"] == "/login?expired=1"
        assert "Din session har gått ut. Logga in igen." in client.get(response.headers["location"]).text
        submit(client, "PA-EXP-2")  # logs in again; no second forced expiry
        assert client.get("/ansokan/steg1").status_code == 200
        assert len(running.cases()) == 2


# -- command line --------------------------------------------------------------------------------


def test_cli_rejects_a_bad_fault_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--faults", "error_rate=0.1,nonsense=1"]) == 2
    assert "unknown fault key 'nonsense'" in capsys.readouterr().err


# -- the intake register -------------------------------------------------------------------------


def test_intake_workbook_matches_the_site() -> None:
    from openpyxl import load_workbook

    from demo.build_intake_demo import BAD_ROWS, HEADERS, INTAKE_PATH
    from demo.site.forms import validate_applicant, validate_errand

    sheet = load_workbook(INTAKE_PATH, read_only=True)["Inkomna ansökningar"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == HEADERS == (
        "Referens", "Namn", "Personnummer", "E-post", "Telefon", "Utdelningsadress",
        "Postnummer", "Postort", "Ärendetyp", "Startdatum", "Beskrivning",
    )  # fmt: skip
    assert len(rows) == 101 and len({row[0] for row in rows[1:]}) == 100
    rejected: set[int] = set()
    for excel_row, row in enumerate(rows[1:], start=2):
        pairs = zip(HEADERS, row, strict=True)
        item: dict[str, Any] = {key: "" if value is None else value for key, value in pairs}
        assert item["Startdatum"].year == 2027
        _, applicant_errors = validate_applicant({
            "namn": item["Namn"], "personnummer": item["Personnummer"], "epost": item["E-post"],
            "telefon": item["Telefon"], "adress": item["Utdelningsadress"],
            "postnummer": item["Postnummer"], "postort": item["Postort"],
        })  # fmt: skip
        _, errand_errors = validate_errand({
            "arendetyp": item["Ärendetyp"], "startdatum": item["Startdatum"].date().isoformat(),
            "beskrivning": item["Beskrivning"], "referens": item["Referens"], "intygande": "ja",
        })  # fmt: skip
        if applicant_errors or errand_errors:
            assert len(applicant_errors) + len(errand_errors) == 1, (excel_row, row)
            rejected.add(excel_row)
    assert rejected == set(BAD_ROWS)
