"""The HTML run report, opened in real headless Chromium."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from shared.runner import Runner
from tests.conftest import kansli

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def page() -> Iterator[Page]:
    executable = os.environ.get("KANSLI_BROWSER__EXECUTABLE_PATH") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
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
