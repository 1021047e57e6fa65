"""The CLI, run as a real subprocess: exit codes, output, JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import KANSLI, REPO, kansli

SAMPLE = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}


def test_robots_lists_summary_and_parameters(kansli_env: Path) -> None:
    result = kansli("robots", "--json", cwd=kansli_env)
    assert result.returncode == 0, result.stderr
    robots = {robot["name"]: robot for robot in json.loads(result.stdout)}
    letters = robots["decision_letters"]
    assert letters["summary"].startswith("Write one Word decision letter")
    assert [p["name"] for p in letters["parameters"]] == ["input", "template", "output_dir", "pdf"]
    table = kansli("robots", cwd=kansli_env)
    assert "decision_letters" in table.stdout and "input: Path (required)" in table.stdout


def test_run_exit_codes(kansli_env: Path) -> None:
    ok = kansli("run", "counting", "-p", "count=2", cwd=kansli_env, env=SAMPLE)
    assert ok.returncode == 0 and "succeeded" in ok.stdout
    partial = kansli("run", "counting", "-p", "count=3", "-p", "bad=k2", cwd=kansli_env, env=SAMPLE)
    assert partial.returncode == 3 and "k2" in partial.stdout  # k0 and k1 were done by the first run
    failed = kansli("run", "crashing", cwd=kansli_env, env=SAMPLE)
    assert failed.returncode == 1


def test_usage_errors_are_one_line_and_exit_2(kansli_env: Path) -> None:
    unknown = kansli("run", "no_such_robot", cwd=kansli_env)
    assert unknown.returncode == 2
    lines = unknown.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown robot 'no_such_robot'" in lines[0]
    assert "decision_letters" in lines[0]
    bad = kansli("run", "counting", "-p", "count=många", cwd=kansli_env, env=SAMPLE)
    assert bad.returncode == 2 and "parameter 'count'" in bad.stderr
    malformed = kansli("run", "counting", "-p", "count", cwd=kansli_env, env=SAMPLE)
    assert malformed.returncode == 2 and "expected key=value" in malformed.stderr
    runs = kansli_env / "data" / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a refused run left a run folder"


def test_runs_show_and_logs(kansli_env: Path) -> None:
    run = kansli("run", "counting", "-p", "count=2", "--json", cwd=kansli_env, env=SAMPLE)
    run_id = json.loads(run.stdout)["run"]["run_id"]
    listed = json.loads(kansli("runs", "--json", cwd=kansli_env, env=SAMPLE).stdout)
    assert [record["run_id"] for record in listed] == [run_id]
    filtered = json.loads(kansli("runs", "--json", "--status", "failed", cwd=kansli_env).stdout)
    assert filtered == []
    shown = json.loads(kansli("show", run_id, "--json", cwd=kansli_env).stdout)
    assert [item["key"] for item in shown["items"]] == ["k0", "k1"]
    assert "k0" in kansli("show", run_id[:15], cwd=kansli_env).stdout
    logs = kansli("logs", run_id, cwd=kansli_env)
    assert logs.returncode == 0 and run_id in logs.stdout
    missing = kansli("show", "nope", cwd=kansli_env)
    assert missing.returncode == 2 and "no run with id" in missing.stderr
    bad_date = kansli("runs", "--since", "igår", cwd=kansli_env)
    assert bad_date.returncode == 2


def test_doctor_reports_each_check(kansli_env: Path) -> None:
    result = kansli("doctor", cwd=kansli_env)
    for name in ("settings", "data dir", "log dir", "database", "chromium"):
        assert name in result.stdout
    broken = kansli("doctor", cwd=kansli_env, env={"KANSLI_BROWSER__EXECUTABLE_PATH": "/nope/chromium"})
    assert broken.returncode == 4 and "KANSLI_BROWSER__EXECUTABLE_PATH" in broken.stdout


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("kansli: error: ")
    return lines[0]


def _runs(kansli_env: Path) -> list[dict[str, Any]]:
    from shared.settings import load_settings
    from shared.store import Store

    store = Store(load_settings().effective_database_url)
    return [record.as_dict() for record in store.list_runs()]


def test_a_robots_package_that_cannot_be_imported_is_one_line_and_exit_4(kansli_env: Path) -> None:
    (kansli_env / "schedules").mkdir()
    for command in (["robots"], ["run", "counting"], ["schedules", "validate"], ["scheduler"]):
        result = kansli(*command, cwd=kansli_env, env={"KANSLI_ROBOTS_PACKAGE": "nosuch"}, timeout=60)
        assert result.returncode == 4, (command, result.stderr)
        line = _one_line(result.stderr)
        assert "cannot import the robots package 'nosuch' (KANSLI_ROBOTS_PACKAGE)" in line, command
    doctor = kansli("doctor", cwd=kansli_env, env={"KANSLI_ROBOTS_PACKAGE": "nosuch"})
    assert doctor.returncode == 4 and "FAIL robots: cannot import the robots package" in doctor.stdout


def test_an_audit_dir_that_cannot_be_written_fails_the_run_before_it_starts(kansli_env: Path) -> None:
    not_a_dir = kansli_env / "log-is-a-file"
    not_a_dir.write_text("")
    result = kansli("run", "counting", "-p", "count=2", cwd=kansli_env,
                    env={**SAMPLE, "KANSLI_LOG_DIR": str(not_a_dir)})
    assert result.returncode == 4, result.stderr
    line = _one_line(result.stderr)
    assert "not started: cannot open the audit trail" in line and "KANSLI_LOG_DIR" in line
    [record] = _runs(kansli_env)
    assert record["status"] == "failed" and record["finished_at"]
    assert record["error"].startswith("not started: cannot open the audit trail")
    log = (Path(record["run_dir"]) / "log.txt").read_text(encoding="utf-8")
    assert "not started: cannot open the audit trail" in log
    later = kansli("runs", "--json", cwd=kansli_env)  # reaping must not turn it into "interrupted"
    assert [run["status"] for run in json.loads(later.stdout)] == ["failed"]


def test_the_daemon_refuses_to_start_when_the_audit_dir_cannot_be_written(kansli_env: Path) -> None:
    (kansli_env / "schedules").mkdir()
    not_a_dir = kansli_env / "log-is-a-file"
    not_a_dir.write_text("")
    result = kansli("scheduler", cwd=kansli_env, env={**SAMPLE, "KANSLI_LOG_DIR": str(not_a_dir)},
                    timeout=60)
    assert result.returncode == 4, result.stderr
    line = _one_line(result.stderr)
    assert "the audit dir" in line and "is not writable" in line and "KANSLI_LOG_DIR" in line


def test_a_data_dir_that_cannot_be_written_is_one_line_and_exit_4_with_no_record(
    kansli_env: Path, tmp_path: Path
) -> None:
    not_a_dir = kansli_env / "data-is-a-file"
    not_a_dir.write_text("")
    database = f"sqlite:///{tmp_path / 'elsewhere' / 'kansli.db'}"
    env = {**SAMPLE, "KANSLI_DATA_DIR": str(not_a_dir), "KANSLI_DATABASE_URL": database}
    result = kansli("run", "counting", cwd=kansli_env, env=env)
    assert result.returncode == 4, result.stderr
    assert "KANSLI_DATA_DIR" in _one_line(result.stderr)
    listed = kansli("runs", "--json", cwd=kansli_env, env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_an_unreachable_database_is_one_line_and_exit_4(kansli_env: Path) -> None:
    (kansli_env / "schedules").mkdir()
    for url in ("postgresql+psycopg://postgres:hemligt@127.0.0.1:1/test", "nosuchdb://x"):
        for command in (["run", "counting"], ["runs"], ["scheduler"]):
            result = kansli(*command, cwd=kansli_env, env={**SAMPLE, "KANSLI_DATABASE_URL": url})
            assert result.returncode == 4, (url, command, result.stderr)
            line = _one_line(result.stderr)
            assert "KANSLI_DATABASE_URL" in line or "cannot open the run history database" in line
            assert "hemligt" not in line


def test_an_ambiguous_run_id_prefix_is_a_usage_error_listing_the_candidates(kansli_env: Path) -> None:
    run_ids = [json.loads(kansli("run", "counting", "-p", "count=1", "--json", cwd=kansli_env,
                                 env=SAMPLE).stdout)["run"]["run_id"] for _ in range(2)]
    common = os.path.commonprefix(run_ids)
    assert common, run_ids
    for command in ("show", "logs", "report"):
        result = kansli(command, common, cwd=kansli_env)
        assert result.returncode == 2, (command, result.stderr)
        line = _one_line(result.stderr)
        assert "is ambiguous: 2 runs match" in line and all(run_id in line for run_id in run_ids)
    assert kansli("show", run_ids[0], cwd=kansli_env).returncode == 0


def _with_closed_stdout(*args: str, cwd: Path, env: dict[str, str] | None = None,
                        stderr_too: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout a pipe whose reader has already gone (``kansli ... | head``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([*KANSLI, *args], stdout=write_end,
                              stderr=write_end if stderr_too else subprocess.PIPE, text=True, cwd=cwd,
                              env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=120)
    finally:
        os.close(write_end)


def test_a_closed_stdout_does_not_change_the_exit_code(kansli_env: Path) -> None:
    partial = _with_closed_stdout("run", "counting", "-p", "count=3", "-p", "bad=k1", cwd=kansli_env,
                                  env=SAMPLE)
    assert partial.returncode == 3 and partial.stderr == ""
    ok = _with_closed_stdout("run", "counting", "-p", "count=2", "--json", cwd=kansli_env, env=SAMPLE)
    assert ok.returncode == 0 and ok.stderr == ""
    both = _with_closed_stdout("run", "crashing", cwd=kansli_env, env=SAMPLE, stderr_too=True)
    assert both.returncode == 1
    for command in (["runs"], ["robots", "--json"]):
        listed = _with_closed_stdout(*command, cwd=kansli_env, env=SAMPLE)
        assert listed.returncode == 0 and listed.stderr == "", command
    missing = _with_closed_stdout("show", "nope", cwd=kansli_env)
    assert missing.returncode == 2 and "no run with id" in missing.stderr


def _stored_run(run_id: str, started_at: str, finished_at: str | None) -> None:
    from shared.settings import load_settings
    from shared.store import RunRecord, Store

    store = Store(load_settings().effective_database_url)
    store.create_run(RunRecord(run_id=run_id, robot="counting", params={}, trigger="cli",
                               actor="tester@host", status="succeeded", started_at=started_at,
                               finished_at=finished_at))


def test_times_are_local_with_the_zone_named_and_utc_on_request(kansli_env: Path) -> None:
    _stored_run("20261201-233000-000-aaaa", "2026-12-01T23:30:00.000000+00:00",
                "2026-12-01T23:31:05.250000+00:00")
    _stored_run("20260601-043000-000-bbbb", "2026-06-01T04:30:00", None)  # naive text is UTC
    table = kansli("runs", cwd=kansli_env).stdout
    assert "2026-12-02 00:30 CET" in table and "2026-06-01 06:30 CEST" in table
    utc = kansli("runs", "--utc", cwd=kansli_env).stdout
    assert "2026-12-01 23:30 UTC" in utc and "CET" not in utc
    elsewhere = kansli("runs", cwd=kansli_env, env={"KANSLI_TIMEZONE": "America/New_York"}).stdout
    assert "2026-12-01 18:30 EST" in elsewhere
    shown = kansli("show", "20261201-2330", cwd=kansli_env).stdout
    assert "started: 2026-12-02 00:30:00 CET  finished: 2026-12-02 00:31:05 CET" in shown
    shown_utc = kansli("show", "20261201-2330", "--utc", cwd=kansli_env).stdout
    assert "started: 2026-12-01 23:30:00 UTC  finished: 2026-12-01 23:31:05 UTC" in shown_utc
    as_json = json.loads(kansli("runs", "--json", cwd=kansli_env).stdout)
    assert [(run["started_at"], run["finished_at"]) for run in as_json] == [
        ("2026-12-01T23:30:00+00:00", "2026-12-01T23:31:05.250000+00:00"),
        ("2026-06-01T04:30:00+00:00", None),
    ]


def test_since_is_a_day_in_the_settings_zone_or_in_utc(kansli_env: Path) -> None:
    _stored_run("20261201-233000-000-aaaa", "2026-12-01T23:30:00.000000+00:00", None)  # 00:30 CET
    local_day = kansli("runs", "--json", "--since", "2026-12-02", cwd=kansli_env)
    assert [run["run_id"] for run in json.loads(local_day.stdout)] == ["20261201-233000-000-aaaa"]
    utc_day = kansli("runs", "--json", "--since", "2026-12-02", "--utc", cwd=kansli_env)
    assert json.loads(utc_day.stdout) == []


def test_the_run_summary_shows_local_times(kansli_env: Path) -> None:
    result = kansli("run", "counting", "-p", "count=1", cwd=kansli_env,
                    env={**SAMPLE, "KANSLI_TIMEZONE": "Asia/Tokyo"})
    assert result.returncode == 0, result.stderr
    assert re.search(r"started: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST  finished: \d{4}-\d\d-\d\d "
                     r"\d\d:\d\d:\d\d JST", result.stdout), result.stdout


def test_help_imports_no_command_machinery() -> None:
    """``kansli --help`` stays fast: the commands import their modules when they run."""
    script = (
        "import json, sys\n"
        "sys.argv = ['kansli', '--help']\n"
        "import shared.cli\n"
        "try:\n"
        "    shared.cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('sqlalchemy', 'apscheduler', 'pydantic', 'rich', 'loguru', 'playwright', 'openpyxl',\n"
        "         'docxtpl', 'shared.runner', 'shared.store', 'shared.scheduler', 'shared.settings')\n"
        "sys.stderr.write(json.dumps([name for name in heavy if name in sys.modules]))\n"
    )
    result = subprocess.run([*KANSLI[:1], "-c", script], capture_output=True, text=True, cwd=REPO,
                            timeout=60)
    assert "robots" in result.stdout and "schedules" in result.stdout
    assert json.loads(result.stderr) == []
