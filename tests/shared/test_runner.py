"""The runner: records, statuses, the robot lock, signals, and the items ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.errors import AlreadyRunningError
from shared.runner import Runner
from shared.settings import Settings
from tests.conftest import REPO

SAMPLE_ENV = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}


def test_a_run_gets_a_record_a_folder_and_logs(sample_runner: Runner) -> None:
    record = sample_runner.run("counting", {"count": 3}, trigger="test")
    assert record.status == "succeeded" and record.items_done == 3 and record.finished_at
    run_dir = Path(record.run_dir or "")
    assert (run_dir / "artifacts").is_dir()
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert lines, "the JSONL log is empty"
    for line in lines:
        assert line["record"]["extra"]["run_id"] == record.run_id
        assert line["record"]["extra"]["robot"] == "counting"
    assert record.run_id in (run_dir / "log.txt").read_text()
    items = sample_runner.store.list_items(record.run_id)
    assert [item.output for item in items] == [{"value": 0}, {"value": 2}, {"value": 4}]


def test_business_errors_are_not_retried_and_make_the_run_partial(sample_runner: Runner) -> None:
    record = sample_runner.run("counting", {"count": 4, "bad": "k1"}, trigger="test")
    assert record.status == "partial"
    assert (record.items_done, record.items_business_error) == (3, 1)
    bad = next(item for item in sample_runner.store.list_items(record.run_id) if item.key == "k1")
    assert bad.outcome == "business_error" and bad.attempts == 1 and "bad data" in (bad.error or "")


def test_app_errors_are_retried(sample_runner: Runner) -> None:
    record = sample_runner.run("counting", {"count": 3, "flaky": "k2"}, trigger="test")
    assert record.status == "succeeded"
    flaky = next(i for i in sample_runner.store.list_items(record.run_id) if i.key == "k2")
    assert flaky.attempts == 2 and flaky.outcome == "done"


def test_all_items_failing_fails_the_run(sample_runner: Runner) -> None:
    record = sample_runner.run("counting", {"count": 2, "bad": "k0,k1"}, trigger="test")
    assert record.status == "failed"


def test_rerun_skips_done_items_unless_rerun_all(sample_runner: Runner, tmp_path: Path) -> None:
    marker = tmp_path / "handled.txt"
    params = {"count": 4, "bad": "k3", "marker": str(marker)}
    first = sample_runner.run("counting", params, trigger="test")
    second = sample_runner.run("counting", params, trigger="test")
    assert (first.items_done, second.items_done, second.items_skipped) == (3, 0, 3)
    assert second.items_business_error == 1 and second.status == "partial"
    assert marker.read_text().split() == ["k0", "k1", "k2"]
    third = sample_runner.run("counting", params, trigger="test", rerun_all=True)
    assert third.items_done == 3 and third.items_skipped == 0


def test_an_unexpected_error_fails_the_run_with_a_summary(sample_runner: Runner) -> None:
    record = sample_runner.run("crashing", {"message": "trasig"}, trigger="test")
    assert record.status == "failed"
    assert record.error == "RuntimeError: trasig"
    assert "Traceback" in (Path(record.run_dir or "") / "log.txt").read_text()


def _start_sleeper(work: Path, seconds: float = 30) -> tuple[subprocess.Popen[str], Path]:
    ready = work / f"ready-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "run", "sleeper", "-p", f"seconds={seconds}",
         "-p", f"ready={ready}"],
        cwd=work, env={**os.environ, "PYTHONPATH": str(REPO), **SAMPLE_ENV},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the sleeper never started"
        time.sleep(0.05)
    return process, ready


def _run_short_sleeper(work: Path) -> subprocess.CompletedProcess[str]:
    """``kansli run sleeper -p seconds=0`` in a subprocess, with this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "run", "sleeper", "-p", "seconds=0"],
        cwd=work, env={**os.environ, "PYTHONPATH": str(REPO), **SAMPLE_ENV},
        capture_output=True, text=True, timeout=60,
    )


def test_a_second_run_of_the_same_robot_is_refused(
    kansli_env: Path, settings: Settings, sample_runner: Runner
) -> None:
    process, _ = _start_sleeper(kansli_env)
    try:
        with pytest.raises(AlreadyRunningError, match="already running by run"):
            sample_runner.run("sleeper", {"seconds": 0.1}, trigger="test")
        refused = sample_runner.store.list_runs(robot="sleeper", status="skipped")
        assert len(refused) == 1 and "already running" in (refused[0].error or "")
        cli = _run_short_sleeper(kansli_env)
        assert cli.returncode == 5, cli.stderr
        assert "already running" in cli.stderr
    finally:
        process.kill()
        process.wait()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_robot_never_overlaps_itself_across_hosts_on_postgresql(
    database_url: str, kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another host (its own data dir, so its own file locks) is refused by the database's lock."""
    process, _ = _start_sleeper(kansli_env)
    try:
        other = kansli_env / "other-host"
        monkeypatch.setenv("KANSLI_DATA_DIR", str(other / "data"))
        monkeypatch.setenv("KANSLI_HOST_ID", "other-host")
        cli = _run_short_sleeper(kansli_env)
        assert cli.returncode == 5, cli.stderr
        assert "already running" in cli.stderr
        assert not (other / "data" / "runs").exists() or not any((other / "data" / "runs").iterdir())
    finally:
        process.kill()
        process.wait()
    after = _run_short_sleeper(kansli_env)
    assert after.returncode == 0, after.stderr  # the killed holder's lock went with its connection


def test_wait_waits_for_the_running_run(kansli_env: Path, sample_runner: Runner) -> None:
    process, _ = _start_sleeper(kansli_env, seconds=1.5)
    started = time.monotonic()
    record = sample_runner.run("sleeper", {"seconds": 0}, trigger="test", wait=True)
    assert record.status == "succeeded"
    assert time.monotonic() - started > 0.5
    assert process.wait(30) == 0


def test_sigterm_cancels_the_run_and_closes_its_record(
    kansli_env: Path, sample_runner: Runner
) -> None:
    process, _ = _start_sleeper(kansli_env)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 130
    record = sample_runner.store.list_runs(robot="sleeper", limit=1)[0]
    assert record.status == "cancelled" and record.finished_at


def test_a_killed_run_is_closed_as_interrupted(kansli_env: Path, sample_runner: Runner) -> None:
    process, _ = _start_sleeper(kansli_env)
    process.kill()
    process.wait()
    assert sample_runner.store.list_runs(robot="sleeper", limit=1)[0].status == "running"
    assert sample_runner.reap_interrupted() == 1
    assert sample_runner.store.list_runs(robot="sleeper", limit=1)[0].status == "interrupted"


def test_item_events_lost_with_a_killed_run_are_recovered_into_the_audit_trail(
    kansli_env: Path, sample_runner: Runner
) -> None:
    """Killed after the 75th item reached the ledger: items 51-75 were not in the trail yet."""
    killed = subprocess.run(
        [sys.executable, "-m", "shared.cli", "run", "counting", "-p", "count=120"], cwd=kansli_env,
        env={**os.environ, "PYTHONPATH": str(REPO), **SAMPLE_ENV, "KANSLI_TEST_CRASH_AT": "item.recorded:75"},
        capture_output=True, text=True, timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [record] = sample_runner.store.list_runs(robot="counting", limit=1)
    log = sample_runner.audit_log
    before = [e for e in log.search(run_id=record.run_id) if e["event"] == "item.outcome"]
    assert len(before) == 50  # one batch written, the next one died with the process
    assert sample_runner.reap_interrupted() == 1
    assert sample_runner.reap_interrupted() == 0  # closed once
    events = list(log.search(run_id=record.run_id))
    items = [e for e in events if e["event"] == "item.outcome"]
    assert sorted(e["data"]["item_key"] for e in items) == sorted(f"k{n}" for n in range(75))
    assert sum(1 for e in items if e["data"].get("recovered")) == 25
    [finished] = [e for e in events if e["event"] == "run.finished"]
    assert finished["data"]["status"] == "interrupted" and finished["data"]["cause"] == "process_gone"
    assert finished["data"]["items_done"] == 75 and finished["data"]["recovered_items"] == 25
    assert log.verify().ok
