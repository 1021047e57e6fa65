"""The intake_forms robot in real headless Chromium against the demo e-service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from demo.site import FaultConfig, RunningSite
from shared.runner import Runner
from tests.conftest import ESERVICE_PASSWORD, KANSLI, REPO, kansli

pytestmark = pytest.mark.browser

INTAKE = REPO / "demo" / "data" / "intake.xlsx"
BAD_ROWS = {14: "Personnumret har fel kontrollsiffra", 33: "Ange en giltig e-postadress",
            52: "Ärendetyp: Bygglov", 71: "Ange namn.", 90: "Ange postnummer med fem siffror"}


def reference(row: int) -> str:
    return f"PA-2026-{row - 1:04d}"


def register(path: Path, rows: list[int]) -> Path:
    """A copy of the demo register with only ``rows`` (original Excel row numbers), in order."""
    workbook = load_workbook(INTAKE)
    sheet = workbook.worksheets[0]
    for number in range(sheet.max_row, 1, -1):
        if number not in rows:
            sheet.delete_rows(number)
    workbook.save(path)
    return path


def one_case_per_valid_row(site: RunningSite, rows: list[int]) -> None:
    counts = Counter(case["reference"] for case in site.cases())
    expected = {reference(row): 1 for row in rows if row not in BAD_ROWS}
    assert dict(counts) == expected


def test_happy_path_and_validation_errors(eservice: RunningSite, kansli_env: Path) -> None:
    rows = [*range(2, 8), *BAD_ROWS]
    source = register(kansli_env / "inkomna.xlsx", rows)
    out = kansli_env / "ut"
    record = Runner().run("intake_forms", {"input": str(source), "output_dir": str(out)})
    assert record.status == "partial", record.error
    assert (record.items_done, record.items_business_error, record.items_app_error) == (6, 5, 0)
    one_case_per_valid_row(eservice, rows)
    items = {item.key: item for item in Runner().store.list_items(record.run_id)}
    for row, message in BAD_ROWS.items():
        item = items[reference(row)]
        assert item.outcome == "business_error" and item.attempts == 1
        assert message in (item.error or ""), item.error
        assert item.artifacts and all((Path(record.run_dir or "") / a).is_file() for a in item.artifacts)
    cases = {case["reference"]: case["case_number"] for case in eservice.cases()}
    assert items[reference(2)].output == {"case_number": cases[reference(2)]}

    sheet = load_workbook(out / "inkomna-resultat.xlsx").worksheets[0]
    header = [cell.value for cell in sheet[1]]
    assert header[-3:] == ["Status", "Ärendenummer", "Fel"]
    by_reference = {r[0]: r[-3:] for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert by_reference[reference(2)] == ("klar", cases[reference(2)], None)
    assert by_reference[reference(14)][0] == "fel i data"


def test_faults_retries_and_one_case_per_valid_row(
    eservice: RunningSite, kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A form is 7-9 requests and every request may fail (10% 500, 5% slow), so one attempt succeeds
    # only about 1 time in 4: 40 attempts make an item that never gets through (0.77^40 = 3e-5)
    # practically impossible, where 15 left a ~1% chance per item (seen once in CI).
    monkeypatch.setenv("KANSLI_RETRY__ATTEMPTS", "40")
    monkeypatch.setenv("KANSLI_BROWSER__TIMEOUT_MS", "1500")  # "slow" answers come 2 s late
    monkeypatch.setenv("KANSLI_BROWSER__NAVIGATION_TIMEOUT_MS", "1500")
    rows = [*range(2, 16), 33, 52]
    source = register(kansli_env / "inkomna.xlsx", rows)
    eservice.set_faults(FaultConfig(error_rate=0.1, slow_rate=0.05, slow_seconds=2, expire_after=5,
                                    seed=7))
    result = kansli("run", "intake_forms", "-p", f"input={source}", "-p", "workers=2",
                    "-p", "fast=true", "-p", f"output_dir={kansli_env / 'ut'}", cwd=kansli_env,
                    timeout=240)
    assert result.returncode == 3, result.stdout + result.stderr
    one_case_per_valid_row(eservice, rows)
    record = Runner().store.list_runs(robot="intake_forms")[0]
    assert (record.items_done, record.items_business_error) == (len(rows) - 3, 3)
    items = Runner().store.list_items(record.run_id)
    assert sum(item.attempts for item in items) > len(items), "no fault was retried"

    run_dir = Path(record.run_dir or "")
    log = (run_dir / "log.txt").read_text(encoding="utf-8")
    assert "the session expired" in log and "HTTP 500" in log, "the faults did not happen"
    traces = list((run_dir / "artifacts").glob("*-trace.zip"))
    assert traces and list((run_dir / "artifacts").glob("*.png"))
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert_no_password(path)


def assert_no_password(path: Path) -> None:
    needles = (ESERVICE_PASSWORD.encode(), ESERVICE_PASSWORD.encode("unicode_escape"))
    contents = [path.read_bytes()]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None
            contents += [archive.read(name) for name in archive.namelist()]
    for content in contents:
        for needle in needles:
            assert needle not in content, f"the password is in {path}"


def test_sigkill_at_several_points_then_rerun_submits_each_row_once(
    eservice: RunningSite, kansli_env: Path
) -> None:
    rows = list(range(2, 26))
    source = register(kansli_env / "inkomna.xlsx", rows)
    command = [*KANSLI, "run", "intake_forms", "-p", f"input={source}", "-p", "workers=2",
               "-p", "fast=true", "-p", f"output_dir={kansli_env / 'ut'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    # 1: the robot kills itself right after the 3rd "Skicka in" was answered (case stored, not ledgered)
    hook = subprocess.run(command, cwd=kansli_env, env={**env, "KANSLI_TEST_CRASH_AT": "submitted:3"},
                          capture_output=True, timeout=120)
    assert hook.returncode == -signal.SIGKILL
    # 2 and 3: killed from outside once the site holds 10, then 18 cases
    for cases in (8, 14):
        process = subprocess.Popen(command, cwd=kansli_env, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(eservice.cases()) < cases:
            assert process.poll() is None and time.monotonic() < deadline, "the run ended too soon"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert len(eservice.cases()) < len(rows) - 1

    final = subprocess.run(command, cwd=kansli_env, env=env, capture_output=True, text=True,
                           timeout=180)
    assert final.returncode == 3, final.stdout + final.stderr
    one_case_per_valid_row(eservice, rows)
    runs = Runner().store.list_runs(robot="intake_forms")
    assert [run.status for run in runs] == ["partial", "interrupted", "interrupted", "interrupted"]
    items = Runner().store.list_items(runs[0].run_id)
    assert any(item.outcome == "skipped" for item in items)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("case", ["wrong_password", "unreachable", "chromium_missing"])
def test_bad_setup_gives_one_clear_line(eservice: RunningSite, kansli_env: Path, case: str) -> None:
    source = register(kansli_env / "inkomna.xlsx", [2, 3])
    env = {"wrong_password": {"KANSLI_ESERVICE__PASSWORD": "fel-lösenord"},
           "unreachable": {"KANSLI_ESERVICE__URL": f"http://127.0.0.1:{_closed_port()}"},
           "chromium_missing": {"KANSLI_BROWSER__EXECUTABLE_PATH": str(kansli_env / "no-chromium")}}[case]
    expected = {"wrong_password": "refused the login of user 'handlaggare'",
                "unreachable": env.get("KANSLI_ESERVICE__URL", ""),
                "chromium_missing": "apt-get install chromium"}[case]
    started = time.monotonic()
    result = kansli("run", "intake_forms", "-p", f"input={source}", cwd=kansli_env, env=env)
    assert result.returncode == (4 if case == "chromium_missing" else 1), result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("kansli: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert result.stderr.strip() == errors[0], "more than one line on stderr"
    assert eservice.cases() == []
    record = Runner().store.list_runs(robot="intake_forms")[0]
    assert record.status == "failed" and record.items_total == 0
    if case == "wrong_password":
        assert time.monotonic() - started < 30, "a login refusal must not be retried"
        assert "fel-lösenord" not in result.stderr + result.stdout


def test_a_register_that_grows_is_sorted_moved_and_edited_gives_one_case_per_key(
    eservice: RunningSite, kansli_env: Path, database_url: str
) -> None:
    """The work-queue promise: the same key is never keyed twice, whatever happens to the file."""
    def run(source: Path) -> list[tuple[str, str, str | None]]:
        record = Runner().run("intake_forms", {"input": str(source), "fast": True,
                                               "output_dir": str(kansli_env / "ut")})
        items = Runner().store.list_items(record.run_id)
        return sorted((item.key, item.outcome, item.note) for item in items)

    first_rows = [2, 3, 4, 14]
    source = register(kansli_env / "inkomna.xlsx", first_rows)
    first = run(source)
    assert [outcome for _, outcome, _ in first] == ["done", "done", "done", "business_error"]
    one_case_per_valid_row(eservice, first_rows)

    grown = register(kansli_env / "inkomna.xlsx", [*first_rows, 5, 6])  # two rows added at the end
    assert [o for k, o, _ in run(grown) if k in (reference(5), reference(6))] == ["done", "done"]
    one_case_per_valid_row(eservice, [*first_rows, 5, 6])

    workbook = load_workbook(grown)  # re-sorted (newest first), renamed, in another folder
    sheet = workbook.worksheets[0]
    rows = [[cell.value for cell in row] for row in sheet.iter_rows(min_row=2)]
    for index, values in enumerate(reversed(rows), start=2):
        for column, value in enumerate(values, start=1):
            sheet.cell(index, column, value)
    (kansli_env / "arkiv").mkdir()
    moved = kansli_env / "arkiv" / "register-sorterat.xlsx"
    workbook.save(moved)
    source.unlink()
    again = run(moved)
    assert {outcome for key, outcome, _ in again if key != reference(14)} == {"skipped"}
    one_case_per_valid_row(eservice, [*first_rows, 5, 6])

    header = [cell.value for cell in sheet[1]]
    [row_of_3] = [row for row in range(2, sheet.max_row + 1)
                  if sheet.cell(row, header.index("Referens") + 1).value == reference(3)]
    sheet.cell(row_of_3, header.index("Beskrivning") + 1, "Ändrad beskrivning")
    workbook.save(moved)  # a non-key cell of a done row edited: reported, never keyed twice
    edited = run(moved)
    assert [key for key, _, note in edited if note == "done before, data changed"] == [reference(3)]
    one_case_per_valid_row(eservice, [*first_rows, 5, 6])


def test_rerun_all_reconciles_every_row_instead_of_submitting_it_again(
    eservice: RunningSite, kansli_env: Path
) -> None:
    rows = [2, 3, 4]
    source = register(kansli_env / "inkomna.xlsx", rows)
    assert kansli("run", "intake_forms", "-p", f"input={source}", cwd=kansli_env).returncode == 0
    rerun = kansli("run", "intake_forms", "-p", f"input={source}", "--rerun-all", cwd=kansli_env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    one_case_per_valid_row(eservice, rows)  # redo means "do again what is not there"
    record = Runner().store.list_runs(robot="intake_forms")[0]
    assert all(item.outcome == "done" for item in Runner().store.list_items(record.run_id))
    resubmitted = kansli("run", "intake_forms", "-p", f"input={source}", "--resubmit", cwd=kansli_env)
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert Counter(case["reference"] for case in eservice.cases()) == {reference(r): 2 for r in rows}
    assert "run.resubmit" in kansli("audit", "search", "--json", cwd=kansli_env).stdout


def test_the_site_going_down_stops_the_run_early_and_a_rerun_finishes_the_rest(
    eservice: RunningSite, kansli_env: Path
) -> None:
    rows = list(range(2, 32))
    source = register(kansli_env / "inkomna.xlsx", rows)
    command = [*KANSLI, "run", "intake_forms", "-p", f"input={source}", "-p", "fast=true"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "KANSLI_QUEUE__STOP_AFTER_FAILURES": "3"}
    process = subprocess.Popen(command, cwd=kansli_env, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(eservice.cases()) < 5:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended too soon"
        time.sleep(0.005)
    port = int(eservice.url.rsplit(":", 1)[1])
    eservice.stop()  # the e-service goes down in the middle of the run
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, out + err
    assert "stopped early: 3 items in a row failed with" in err + out
    stopped = Runner().store.list_runs(robot="intake_forms")[0]
    assert stopped.status == "failed" and stopped.items_app_error == 3
    assert stopped.items_done + stopped.items_business_error + 3 < len(rows)  # not every row tried

    eservice.port = port
    eservice.start()
    again = kansli("run", "intake_forms", "-p", f"input={source}", "-p", "fast=true", cwd=kansli_env)
    assert again.returncode == 3, again.stdout + again.stderr  # 1 bad row (14) of 30
    one_case_per_valid_row(eservice, rows)


def test_a_label_typo_in_the_robot_ends_each_row_at_once_naming_the_label(
    eservice: RunningSite, kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import robots.intake_forms as intake_forms

    monkeypatch.setenv("KANSLI_BROWSER__TIMEOUT_MS", "120000")  # a locator wait would hang the test
    real_errand = intake_forms.errand

    def errand_with_typo(intake: intake_forms.Intake) -> dict[str, Any]:
        values = real_errand(intake)
        values["Er referns"] = values.pop("Er referens")
        return values

    monkeypatch.setattr(intake_forms, "errand", errand_with_typo)
    from demo.scale import scaled_register

    scaled = scaled_register(kansli_env / "inkomna.xlsx", 100, source=INTAKE, key_column="Referens",
                             valid_only=False)
    for fast, source in ((False, INTAKE), (True, scaled)):  # the 100-row demo register; other keys
        started = time.monotonic()
        record = Runner().run("intake_forms", {"input": str(source), "output_dir": str(kansli_env / "ut"),
                                               "fast": fast})
        took = time.monotonic() - started
        assert record.status == "failed" and record.items_app_error == 5, record.error  # stopped early
        assert "stopped early: 5 items in a row failed with FormMismatchError" in (record.error or "")
        assert "'Er referns'" in (record.error or "")
        failed = [item for item in Runner().store.list_items(record.run_id) if item.outcome == "app_error"]
        for item in failed:
            assert item.attempts == 1 and item.error_class == "FormMismatchError", item
            assert "the form at /ansokan/steg2 has no field 'Er referns'" in (item.error or "")
            assert "closest on the page: 'Er referens'" in (item.error or "")
        assert took < 60, f"{took:.0f} s: the typo was waited on or retried"  # was 31.5 s a row
    assert eservice.cases() == []


def test_a_failed_login_of_one_context_costs_that_context_not_the_run(
    kansli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.shared.browser.test_pool import seeded_site

    # With this seed, of the first 76 requests only the 4th to 6th fail (5% of requests fail after
    # that): the first context logs in (GET /login, POST /login, GET /ansokan/steg1), the second
    # context's three login attempts (GET /login) all fail, every row goes through.
    rows = list(range(2, 7))
    source = register(kansli_env / "inkomna.xlsx", rows)
    with seeded_site(tmp_path, monkeypatch, FaultConfig(error_rate=0.05, seed=1225119)) as eservice:
        record = Runner().run("intake_forms", {"input": str(source), "output_dir": str(kansli_env / "ut"),
                                               "workers": 2})
        assert record.status == "succeeded", record.error
        assert record.items_done == len(rows)
        one_case_per_valid_row(eservice, rows)
    log = (Path(record.run_dir or "") / "log.txt").read_text(encoding="utf-8")
    assert "browser context 2 could not log in" in log and "HTTP 500" in log, log


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_worker_killed_in_the_middle_leaves_the_register_to_another_host_one_case_per_row(
    eservice: RunningSite, database_url: str, tmp_path: Path
) -> None:
    from tests.shared.test_worker import Cluster, wait_until

    rows = list(range(2, 26))
    source = register(tmp_path / "inkomna.xlsx", rows)
    cluster = Cluster(tmp_path / "hosts", database_url, robots_package="robots")
    try:
        cluster.start_worker("robot-1", "--robots", "intake_forms", "--tags", "chromium")
        cluster.start_worker("robot-2", "--robots", "intake_forms", "--tags", "chromium")
        run_id = cluster.queue("intake_forms", input=source, fast="true", output_dir=tmp_path / "ut")
        store = cluster.store()

        def keyed_some() -> bool:
            record = store.get_run(run_id)
            assert record is not None and record.status in ("queued", "running"), record
            return len(eservice.cases()) >= 6

        wait_until(keyed_some, 180, "the first host to key some rows")
        os.killpg(cluster.workers[cluster.host_of(run_id)].pid, signal.SIGKILL)  # it dies, with its run
        finished = wait_until(lambda: [r for r in store.list_runs(robot="intake_forms")
                                       if r.run_id != run_id and r.status not in ("queued", "running")],
                              240, "another host to finish the register")
        assert finished[0].status == "partial"  # the five bad rows of the demo register
        one_case_per_valid_row(eservice, rows)
        killed = store.get_run(run_id)
        assert killed is not None and killed.status == "interrupted"
        assert cluster.host_of(finished[0].run_id) != cluster.host_of(run_id)
    finally:
        cluster.stop()
