"""Forms per second on the demo e-service: Kansli's ``intake_forms`` against plain Playwright scripts.

Every variant submits the same valid rows (login, step 1, step 2, review, "Skicka in", read the case
number) to one demo e-service running in its own process, and is timed from start to end, browser
start and login included:

* ``plain loop``: a plain sync Playwright script, one browser, one reused page, ``get_by_label().fill``
  per field (the floor of what is possible per field);
* ``naive``: a script that starts a browser and logs in for every row (what many RPA scripts do);
  measured on at most 30 rows, its rate does not depend on the batch size;
* ``kansli``: the ``intake_forms`` robot through the in-process runner (Excel in and out, the SQLite
  ledger, traces per item), per-field and ``fast`` fill, with 1, 2 and 4 workers.

Every variant uses the Chromium that Kansli's settings find (the headless shell when installed), or
the one given with ``--chromium``. "cores busy" is the machine's CPU time over the variant's wall
time: near the core count, more workers have nothing left to use.

    .venv/bin/python bench/forms.py [--rows 200] [--quick] [--chromium PATH] [--also /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from demo.scale import scaled_register  # noqa: E402
from robots.intake_forms import Intake, applicant, errand  # noqa: E402
from shared.browser import Select, chromium_args, chromium_executable  # noqa: E402
from shared.excel import read_rows  # noqa: E402
from shared.settings import BrowserSettings, EServiceSettings  # noqa: E402

INTAKE = REPO / "demo" / "data" / "intake.xlsx"
BAD_ROWS = {14, 33, 52, 71, 90}
NAIVE_MAX_ROWS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_site(work: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    command = [sys.executable, "-m", "demo.site", "--port", str(port), "--db", str(work / "site.db")]
    site = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert site.stdout is not None
    line = site.stdout.readline()
    if "ready at" not in line:
        site.kill()
        raise SystemExit(f"the demo e-service did not start: {line!r}")
    return site, line.rsplit(" ", 1)[-1].strip()


# -- plain Playwright ----------------------------------------------------------------------------


def plain_submit(page: Page, url: str, intake: Intake) -> str:
    page.goto(f"{url}/ansokan/steg1")
    for label, value in applicant(intake).items():
        page.get_by_label(label, exact=True).fill(str(value))
    with page.expect_navigation():
        page.get_by_role("button", name="Nästa").click()
    for label, value in errand(intake).items():
        field = page.get_by_label(label, exact=True)
        if isinstance(value, Select):
            field.select_option(label=value.option)
        elif isinstance(value, bool):
            field.check()
        else:
            field.fill(str(value))
    with page.expect_navigation():
        page.get_by_role("button", name="Granska").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Skicka in").click()
    return page.locator("#case-number").inner_text()


def plain_login(page: Page, url: str, eservice: EServiceSettings) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Användarnamn").fill(eservice.username)
    page.get_by_label("Lösenord").fill(eservice.password.get_secret_value())
    with page.expect_navigation():
        page.get_by_role("button", name="Logga in").click()


def plain_loop(url: str, rows: list[Intake]) -> float:
    browser_settings, eservice = BrowserSettings(), EServiceSettings()
    started = time.perf_counter()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(browser_settings),
                                             args=chromium_args())
        page = browser.new_page()
        plain_login(page, url, eservice)
        for intake in rows:
            plain_submit(page, url, intake)
        browser.close()
    return time.perf_counter() - started


def naive(url: str, rows: list[Intake]) -> float:
    browser_settings, eservice = BrowserSettings(), EServiceSettings()
    started = time.perf_counter()
    with sync_playwright() as playwright:
        for intake in rows:
            browser = playwright.chromium.launch(
                executable_path=chromium_executable(browser_settings), args=chromium_args())
            page = browser.new_page()
            plain_login(page, url, eservice)
            plain_submit(page, url, intake)
            browser.close()
    return time.perf_counter() - started


# -- Kansli --------------------------------------------------------------------------------------


def kansli(url: str, register: Path, work: Path, workers: int, fast: bool,
           chromium: Path | None = None) -> float:
    from shared.runner import Runner
    from shared.settings import reset_settings

    run_dir = Path(tempfile.mkdtemp(dir=work))
    os.environ.update({"KANSLI_DATA_DIR": str(run_dir / "data"), "KANSLI_LOG_DIR": str(run_dir / "log"),
                       "KANSLI_ESERVICE__URL": url})
    default_chromium = os.environ.get("KANSLI_BROWSER__EXECUTABLE_PATH")
    if chromium is not None:
        os.environ["KANSLI_BROWSER__EXECUTABLE_PATH"] = str(chromium)
    reset_settings()
    runner = Runner()
    params = {"input": str(register), "output_dir": str(run_dir / "out"), "workers": workers,
              "fast": fast}
    started = time.perf_counter()
    record = runner.run("intake_forms", params, trigger="bench")
    elapsed = time.perf_counter() - started
    os.environ.pop("KANSLI_BROWSER__EXECUTABLE_PATH", None)
    if default_chromium is not None:
        os.environ["KANSLI_BROWSER__EXECUTABLE_PATH"] = default_chromium
    assert record.status == "succeeded", record.error
    return elapsed


def _kansli_job(url: str, register: Path, work: Path, workers: int, fast: bool,
                chromium: Path | None = None) -> Callable[[], float]:
    return lambda: kansli(url, register, work, workers, fast, chromium)


# -- the table -----------------------------------------------------------------------------------


def busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def measure(name: str, rows: int, job: Callable[[], float], table: list[tuple[str, float]]) -> None:
    busy = busy_seconds()
    elapsed = job()
    cores = (busy_seconds() - busy) / elapsed
    rate = rows / elapsed
    table.append((name, rate))
    print(f"  {name:<36} {rows:>4} rows in {elapsed:6.1f} s = {rate:5.2f} forms/s, "
          f"{cores:.2f} cores busy", flush=True)


def print_table(table: list[tuple[str, float]]) -> None:
    rates = dict(table)
    plain, naive_rate = rates["plain loop (1 page)"], rates["naive (browser per row)"]
    one = {fill: rates[f"kansli {fill}, 1 worker"] for fill in ("per-field", "fast")}
    print(f"\n{'variant':<36} {'forms/s':>8} {'x plain':>8} {'x naive':>8} {'x 1 worker':>10}")
    for name, rate in table:
        same = rates.get(re.sub(r"\d+ workers?", "1 worker", name))
        vs_one = f"{rate / same:10.2f}" if name.startswith("kansli") and same else f"{'':>10}"
        print(f"{name:<36} {rate:8.2f} {rate / plain:8.2f} {rate / naive_rate:8.2f} {vs_one}")
    checks = [
        ("per-field 1 worker >= 0.9 x plain", one["per-field"] / plain, 0.9),
        ("fast 1 worker >= 1.3 x plain", one["fast"] / plain, 1.3),
        ("fast 1 worker >= 3 x naive", one["fast"] / naive_rate, 3.0),
    ]
    for fill in ("per-field", "fast"):
        two = rates[f"kansli {fill}, 2 workers"]
        checks.append((f"{fill} 2 workers >= 1.2 x 1 worker", two / one[fill], 1.2))
    print(f"\nmachine: {os.cpu_count()} cores; Chromium: {chromium_executable(BrowserSettings())}")
    for text, ratio, target in checks:
        print(f"  {'ok  ' if ratio >= target else 'MISS'} {text}: {ratio:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200, help="rows per variant (default 200)")
    parser.add_argument("--quick", action="store_true", help="40 rows, workers 1 and 2 only")
    parser.add_argument("--chromium", type=Path, help="this Chromium instead of the one detected")
    parser.add_argument("--also", type=Path, metavar="CHROMIUM",
                        help="also run Kansli fast fill with 1 and 2 workers on this Chromium")
    args = parser.parse_args(argv)
    if args.chromium:
        os.environ["KANSLI_BROWSER__EXECUTABLE_PATH"] = str(args.chromium)
    count = 40 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="kansli-bench-") as temporary:
        work = Path(temporary)
        valid = {number for number in range(2, 102) if number not in BAD_ROWS}
        register = scaled_register(work / "intake.xlsx", count, source=INTAKE, key_column="Referens",
                                   valid=valid)
        rows = [row.model for row in read_rows(register, Intake) if row.model is not None]
        site, url = start_site(work)
        table: list[tuple[str, float]] = []
        try:
            print(f"{count} forms on the demo e-service at {url}, "
                  f"Chromium {chromium_executable(BrowserSettings())}:")
            measure("plain loop (1 page)", count, lambda: plain_loop(url, rows), table)
            few = rows[: min(count, NAIVE_MAX_ROWS)]
            measure("naive (browser per row)", len(few), lambda: naive(url, few), table)
            variants = [("kansli per-field, 1 worker", 1, False), ("kansli per-field, 2 workers", 2, False)]
            workers = (1, 2) if args.quick else (1, 2, 4)
            variants += [(f"kansli fast, {n} worker{'s' if n > 1 else ''}", n, True) for n in workers]
            for name, n, fast in variants:
                measure(name, count, _kansli_job(url, register, work, n, fast), table)
            for n in (1, 2) if args.also else ():
                name = f"kansli fast, {n} worker{'s' if n > 1 else ''} [{args.also.name}]"
                measure(name, count, _kansli_job(url, register, work, n, True, args.also), table)
        finally:
            site.terminate()
            site.wait(timeout=10)
        print_table(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
