"""The CLI, run as a real subprocess: exit codes, output, JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import kansli

SAMPLE = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}


def test_robots_lists_summary_and_parameters(kansli_env: Path) -> None:
    result = kansli("robots", "--json", cwd=kansli_env)
    assert result.returncode == 0, result.stderr
    robots = {robot["name"]: robot for robot in json.loads(result.stdout)}
    letters = robots["decision_letters"]
    assert letters["summary"].startswith("Write one Word decision letter")
    assert [p["name"] for p in letters["parameters"]] == ["input", "template", "output_dir"]
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
