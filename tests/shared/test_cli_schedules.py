"""`kansli schedules` without a scheduler daemon: listing, pause/resume, refused triggers, history, help."""

from __future__ import annotations

import json
import socket
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import typer

from shared.cli_schedules import schedules_app
from shared.runner import Runner, current_actor
from shared.scheduler import LEASE_NAME
from shared.settings import Settings
from shared.store import Store, list_operator_actions, load_schedule_states, pending_schedule_requests, utcnow
from tests.conftest import kansli

OFFICE = """
[[schedule]]
id = "tick"
robot = "ticker"
every = "15m"
[[schedule]]
id = "morning-count"
robot = "counting"
cron = "0 7 * * mon-fri"
timezone = "UTC"
params = { count = 2 }
[[schedule]]
id = "year-end"
robot = "ticker"
at = "2030-12-01T06:00"
enabled = false
"""
KNOWN = "known schedules: morning-count, tick, year-end"
ROW_FIELDS = {"id", "robot", "trigger", "timezone", "enabled", "paused", "paused_by", "synced", "next_run",
              "last_run", "last_status", "last_started", "source"}


@pytest.fixture
def office(kansli_env: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Store:
    """`schedules/office.toml` in the working dir (the default folder) and the store the CLI uses."""
    (kansli_env / "schedules").mkdir()
    (kansli_env / "schedules" / "office.toml").write_text(OFFICE, encoding="utf-8")
    monkeypatch.setenv("KANSLI_ROBOTS_PACKAGE", "tests.sample_robots")
    return Store(settings.effective_database_url)


def leave_a_stale_daemon_lease(store: Store) -> int:
    """What a SIGKILLed daemon leaves behind: a lease naming a process that no longer exists."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    store.set_meta(LEASE_NAME, json.dumps({"pid": gone.pid, "host": socket.gethostname(),
                                           "started_at": utcnow()}))
    return gone.pid


def test_the_list_is_a_table_of_the_schedules_folder_of_the_working_dir(
    office: Store, kansli_env: Path, tmp_path: Path
) -> None:
    result = kansli("schedules", cwd=kansli_env)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") == 8}
    assert set(rows) == {"tick", "morning-count", "year-end"}
    assert "every 15m" in rows["tick"] and "not synced (start the daemon)" in rows["tick"]
    assert "counting" in rows["morning-count"] and "cron 0 7 * * mon-fri" in rows["morning-count"]
    assert "at 2030-12-01T06:00" in rows["year-end"] and "disabled" in rows["year-end"]
    assert result.stdout.rstrip().endswith("Daemon: not running")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "one.toml").write_text('[[schedule]]\nid = "only"\nrobot = "ticker"\nevery = "1h"\n',
                                       encoding="utf-8")
    moved = kansli("schedules", "--json", cwd=kansli_env, env={"KANSLI_SCHEDULES_DIR": str(elsewhere)})
    assert [row["id"] for row in json.loads(moved.stdout)["schedules"]] == ["only"]


def test_the_json_list_has_every_promised_field_the_last_run_and_the_problems(
    office: Store, kansli_env: Path, settings: Settings
) -> None:
    (kansli_env / "schedules" / "broken.toml").write_text(
        '[[schedule]]\nid = "ghost"\nrobot = "no_such_robot"\nevery = "1h"\n', encoding="utf-8")
    record = Runner(settings, robots_package="tests.sample_robots").run("ticker", {}, trigger="schedule:tick")
    result = kansli("schedules", "--json", cwd=kansli_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["daemon"] is None
    [problem] = data["problems"]
    assert problem.startswith("schedules/broken.toml: schedule 'ghost': field 'robot': unknown robot")
    rows = {row["id"]: row for row in data["schedules"]}
    assert list(rows) == ["tick", "morning-count", "year-end"]
    assert all(set(row) == ROW_FIELDS for row in rows.values())
    assert rows["tick"] | {"last_started": None} == {
        "id": "tick", "robot": "ticker", "trigger": "every 15m", "timezone": "Europe/Stockholm",
        "enabled": True, "paused": False, "paused_by": None, "synced": False, "next_run": None,
        "last_run": record.run_id, "last_status": "succeeded", "last_started": None,
        "source": "schedules/office.toml"}
    assert rows["tick"]["last_started"] == record.started_at
    assert rows["morning-count"]["last_run"] is None and rows["morning-count"]["timezone"] == "UTC"
    assert rows["year-end"]["enabled"] is False
    history = json.loads(kansli("schedules", "history", "tick", "--json", cwd=kansli_env).stdout)
    assert [run["run_id"] for run in history["runs"]] == [record.run_id]
    assert history["actions"] == []


@pytest.mark.parametrize("command", ["pause", "resume", "trigger"])
def test_an_unknown_schedule_id_is_one_error_naming_it_and_changes_nothing(
    office: Store, kansli_env: Path, command: str
) -> None:
    result = kansli("schedules", command, "tikc", cwd=kansli_env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"kansli: error: no schedule with id 'tikc' ({KNOWN})\n"
    assert load_schedule_states(office) == {}
    assert list_operator_actions(office) == [] and pending_schedule_requests(office) == []


def test_pause_then_resume_changes_the_stored_state_and_records_both_with_the_operator(
    office: Store, kansli_env: Path
) -> None:
    actor = current_actor()
    paused = kansli("schedules", "pause", "tick", cwd=kansli_env)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout == "schedule tick paused (no daemon is running; it applies when the daemon starts)\n"
    state = load_schedule_states(office)["tick"]
    assert state.paused is True and state.paused_by == actor and state.paused_at
    assert pending_schedule_requests(office) == []  # no daemon to ask: the stored state is what counts
    listing = json.loads(kansli("schedules", "--json", cwd=kansli_env).stdout)
    listed = {row["id"]: row for row in listing["schedules"]}
    assert (listed["tick"]["paused"], listed["tick"]["paused_by"]) == (True, actor)
    assert listed["morning-count"]["paused"] is False
    table = kansli("schedules", cwd=kansli_env).stdout
    [tick_row] = [line for line in table.splitlines() if "│ tick " in line]
    assert "│ paused " in tick_row and f"yes ({actor})" in tick_row
    resumed = kansli("schedules", "resume", "tick", cwd=kansli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("schedule tick resumed (no daemon is running")
    state = load_schedule_states(office)["tick"]
    assert state.paused is False and state.paused_by is None and state.paused_at is None
    history = json.loads(kansli("schedules", "history", "tick", "--json", cwd=kansli_env).stdout)
    assert [(a["action"], a["actor"], a["schedule_id"]) for a in history["actions"]] == [
        ("schedule.resume", actor, "tick"), ("schedule.pause", actor, "tick")]
    audited = json.loads(kansli("audit", "search", "--json", cwd=kansli_env).stdout)
    trail = [(event["event"], event["actor"], event["data"]["schedule"])
             for event in audited if event["event"].startswith("schedule.")]
    assert trail == [("schedule.paused", actor, "tick"), ("schedule.resumed", actor, "tick")]


@pytest.mark.parametrize("leftover", ["no lease", "stale lease"])
def test_trigger_without_a_running_daemon_refuses_and_queues_nothing(
    office: Store, kansli_env: Path, leftover: str
) -> None:
    if leftover == "stale lease":
        pid = leave_a_stale_daemon_lease(office)
        listed = kansli("schedules", cwd=kansli_env).stdout
        assert f"Daemon: not running (stale heartbeat): pid {pid} on {socket.gethostname()}" in listed
    result = kansli("schedules", "trigger", "tick", "--wait", "5", cwd=kansli_env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "kansli: error: no scheduler daemon is running on this database, so schedule tick was not "
        "triggered; start it (kansli scheduler) or run the robot directly: kansli run ticker\n")
    assert pending_schedule_requests(office) == []
    assert list_operator_actions(office, "tick") == []
    assert office.list_runs(trigger="schedule:tick") == []


def test_every_schedules_subcommand_and_parameter_has_help(kansli_env: Path) -> None:
    group = typer.main.get_command(schedules_app)
    assert isinstance(group, typer.core.TyperGroup)
    assert set(commands := group.commands) == {"validate", "pause", "resume", "trigger", "history"}
    listing = kansli("schedules", "--help", cwd=kansli_env)
    assert listing.returncode == 0 and "--json" in listing.stdout
    for name, command in commands.items():
        assert command.help, f"schedules {name} has no help"
        for parameter in command.params:
            assert getattr(parameter, "help", None), f"schedules {name}: {parameter.name} has no help"
        summary = " ".join(command.help.split()[:3])
        assert f"{name} {summary}" in " ".join(listing.stdout.split()), name
        own = kansli("schedules", name, "--help", cwd=kansli_env)
        assert own.returncode == 0, own.stderr
        assert " ".join(command.help.split()) in " ".join(own.stdout.split())


@pytest.mark.parametrize("as_json", [False, True])
def test_history_of_an_unknown_schedule_is_a_usage_error_but_a_removed_one_keeps_its_history(
    office: Store, kansli_env: Path, settings: Settings, as_json: bool
) -> None:
    flags = ["--json"] if as_json else []
    result = kansli("schedules", "history", "nosuch", *flags, cwd=kansli_env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"kansli: error: no schedule with id 'nosuch' ({KNOWN})\n"
    Runner(settings, robots_package="tests.sample_robots").run("ticker", {}, trigger="schedule:gone")
    kept = kansli("schedules", "history", "gone", *flags, cwd=kansli_env)
    assert kept.returncode == 0, kept.stderr
    assert "ticker" in kept.stdout


def test_history_shows_local_times_whole_words_and_readable_details(
    office: Store, kansli_env: Path, settings: Settings
) -> None:
    from shared.scheduler import record_action
    from shared.store import RunRecord

    error = ("the run process ended with exit code 1: Traceback (most recent call last): "
             + " ".join(f"frame{number} in shared/module{number}.py" for number in range(40)))
    office.create_run(RunRecord(run_id="20261201-060000-000-abcd", robot="ticker", params={},
                                trigger="schedule:tick", actor="kansli@host", status="failed",
                                started_at="2026-12-01T05:00:00.000000+00:00",
                                finished_at="2026-12-01T05:00:07.000000+00:00", error=error))
    record_action(office, "daemon.sync", "tick", {"added": ["tick", "year-end"], "run_id": "r1"})
    table = kansli("schedules", "history", "tick", cwd=kansli_env, env={"COLUMNS": "150"})
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert "2026-12-01 06:00:00 CET" in text and "2026-12-01 06:00:07 CET" in text
    assert "added: tick, year-end; run_id: r1" in text and "{'added'" not in text
    shown = " ".join(line.split("│")[-2].strip() for line in text.splitlines() if line.count("│") == 9)
    words = shown.split()
    assert words[:3] == ["the", "run", "process"] and words[-1] == "…"
    assert all(word in error.split() for word in words[:-1]), "a word of the error was cut"
    in_utc = kansli("schedules", "history", "tick", "--utc", cwd=kansli_env, env={"COLUMNS": "150"})
    assert "2026-12-01 05:00:00 UTC" in in_utc.stdout
    data = json.loads(kansli("schedules", "history", "tick", "--json", cwd=kansli_env).stdout)
    [run] = data["runs"]
    assert run["error"] == error and run["started_at"] == "2026-12-01T05:00:00+00:00"
    [action] = data["actions"]
    assert action["details"] == {"added": ["tick", "year-end"], "run_id": "r1"}
    assert datetime.fromisoformat(action["at"]).utcoffset() is not None
