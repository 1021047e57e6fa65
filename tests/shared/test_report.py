"""The HTML run report, opened in real headless Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, sync_playwright

from shared.browser import chromium_args, chromium_executable
from shared.runner import Runner
from shared.settings import Settings, load_settings
from tests.conftest import kansli


@pytest.fixture
def page(settings: Settings) -> Iterator[Page]:
    """A page of the Chromium the project's browser settings choose, started as the robots start it."""
    browser_settings = settings.browser
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_executable(browser_settings)),
                                             headless=browser_settings.headless, args=chromium_args())
        yield browser.new_page()
        browser.close()


@pytest.mark.browser
def test_report_shows_the_run_and_filters_items(sample_runner: Runner, page: Page) -> None:
    record = sample_runner.run("evidence", {"count": 5}, trigger="test")
    report = Path(record.run_dir or "") / "report.html"
    assert report.is_file(), "the runner did not write the report"
    html = report.read_text(encoding="utf-8")
    assert "811218-9876" not in html and "******-****" in html

    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(report.as_uri())
    assert page.locator("#run-status").inner_text() == "delvis klar"
    assert page.locator("#item-count").inner_text() == "5"
    assert page.locator("tr.item").count() == 5
    assert page.locator("img.screenshot").count() == 2
    assert page.locator("img.screenshot").first.evaluate("image => image.naturalWidth") == 1
    page.get_by_role("button", name="fel i data (1)").click()
    assert page.locator("#item-count").inner_text() == "1"
    assert page.locator("tr.item:not([hidden])").count() == 1
    page.get_by_role("button", name="klar (3)").click()
    assert page.locator("tr.item:not([hidden])").count() == 3
    assert page.get_by_role("link", name="log.txt").get_attribute("href") == "log.txt"
    assert errors == []


def test_report_command_writes_the_page(kansli_env: Path) -> None:
    env = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}
    kansli("run", "evidence", cwd=kansli_env, env=env)
    last = json.loads(kansli("runs", "--json", cwd=kansli_env).stdout)[0]
    run_id, report = last["run_id"], Path(last["run_dir"]) / "report.html"
    report.unlink()
    result = kansli("report", run_id, cwd=kansli_env, env=env)
    assert result.returncode == 0, result.stderr
    assert report.is_file() and str(report) in result.stdout.replace("\n", "")
    assert kansli("report", "nope", cwd=kansli_env).returncode == 2


def local(stored: str, zone: str) -> str:
    """A stored UTC time as the report should show it, worked out here without shared.clock."""
    return datetime.fromisoformat(stored).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


@pytest.mark.browser
@pytest.mark.parametrize(("language", "zone", "status", "labels"), [
    ("sv", "Europe/Stockholm", "delvis klar", ("klar (2)", "fel i data (1)", "Brev", "Ärendenummer")),
    ("en", "America/New_York", "partly done", ("done (2)", "error in data (1)", "Letter", "Case number")),
])
def test_report_in_the_staff_language_with_local_times_and_outputs_as_linked_fields(
    kansli_env: Path, monkeypatch: pytest.MonkeyPatch, page: Page, language: str, zone: str, status: str,
    labels: tuple[str, str, str, str],
) -> None:
    monkeypatch.setenv("KANSLI_LANGUAGE", language)
    monkeypatch.setenv("KANSLI_TIMEZONE", zone)
    out = kansli_env / "brev ut"
    runner = Runner(load_settings(), robots_package="tests.sample_robots")
    record = runner.run("filing", {"output_dir": str(out)}, trigger="test")
    run_dir = Path(record.run_dir or "")
    page.goto((run_dir / "report.html").as_uri())

    assert page.locator("html").get_attribute("lang") == language
    assert page.locator("#run-status").inner_text() == status
    assert page.locator("#run-status").get_attribute("data-status") == "partial"
    started, finished = page.locator("#run-started").inner_text(), page.locator("#run-finished").inner_text()
    assert started == local(record.started_at, zone) and finished == local(record.finished_at or "", zone)
    zone_names = "CET|CEST" if language == "sv" else "EST|EDT"
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d ({zone_names})", started), started
    assert page.locator("#run-started time").get_attribute("datetime") == record.started_at
    counts = "3 totalt, 2 klara, 0 redan klara, 1 fel i data, 0 tekniska fel" if language == "sv" else (
        "3 total, 2 done, 0 already done, 1 errors in data, 0 technical errors")
    assert page.locator("#run-counts").inner_text() == counts
    assert page.locator("#run-error").count() == 0, "the English item summary is shown as the run's error"
    done_label, bad_label, letter_label, case_label = labels
    assert page.get_by_role("button", name=done_label).is_visible()
    page.get_by_role("button", name=bad_label).click()
    assert page.locator("tr.item:not([hidden])").count() == 1
    page.get_by_role("button", name=done_label).click()

    first = page.locator("tr.item", has=page.get_by_role("cell", name="k0", exact=True)).locator("td.result")
    text = first.inner_text()
    assert "{" not in text and '"letter"' not in text, "raw JSON in the result column"
    assert first.locator("dt").all_inner_texts() == [letter_label, "receipt", case_label]
    assert first.locator("dd").nth(2).inner_text() == "KS-0"
    letter = first.get_by_role("link", name="beslut-å-k0.txt")
    assert letter.evaluate("link => link.href") == (out / "beslut-å-k0.txt").resolve().as_uri()
    receipt = first.get_by_role("link", name="kvitto-k0.txt")
    assert receipt.get_attribute("href") == "artifacts/kvitto-k0.txt"
    params = page.locator("#run-params")
    assert params.get_by_role("link", name=str(out)).evaluate("link => link.href") == out.resolve().as_uri()
    receipt.click()
    page.wait_for_url("**/artifacts/kvitto-k0.txt")
    assert page.locator("body").inner_text().strip() == "kvitto k0", "the link does not reach the receipt"


def test_report_command_follows_the_language_setting(kansli_env: Path) -> None:
    env = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}
    kansli("run", "evidence", cwd=kansli_env, env=env)
    last = json.loads(kansli("runs", "--json", cwd=kansli_env).stdout)[0]
    report = Path(last["run_dir"]) / "report.html"
    assert ">delvis klar</span>" in report.read_text(encoding="utf-8")
    english = kansli("report", last["run_id"], cwd=kansli_env, env={**env, "KANSLI_LANGUAGE": "en"})
    assert english.returncode == 0, english.stderr
    html = report.read_text(encoding="utf-8")
    assert '<html lang="en">' in html and ">partly done</span>" in html and "error in data (1)" in html
    assert "Ärenden" not in html and "KS-2026-000000" in html
