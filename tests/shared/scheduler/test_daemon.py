"""The scheduler daemon, run for real: subprocess daemons, subprocess runs, a real SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from shared.audit import AuditLog
from shared.scheduler import daemon_status, next_run_times
from shared.settings import load_settings
from shared.store import (
    RunRecord,
    Store,
    list_operator_actions,
    load_schedule_states,
    pending_schedule_requests,
)
from tests.conftest import KANSLI, REPO, kansli
from tests.shared.test_notify import CANARY_PASSWORD, SmtpServer, smtp_server  # noqa: F401

pytestmark = pytest.mark.slow


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def soon(seconds: float) -> str:
    """A local wall-clock time ``seconds`` from now, for ``at`` schedules (time zone given)."""
    return (datetime.now().astimezone() + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


#: ``kansli`` with the clock of its process moved (time, datetime and so APScheduler): the real
#: daemon on a day of our choosing. Its runs are child processes on the real clock. The heavy
#: imports come first, so the travelled clock starts close to the daemon's own start.
TRAVELLING_DAEMON = """
import sys
from datetime import datetime
import time_machine
import shared.cli, shared.scheduler, shared.audit, shared.store  # noqa
time_machine.travel(datetime.fromisoformat(sys.argv.pop(1)), tick=True).start()
shared.cli.main()
"""


class Daemons:
    """Starts ``kansli scheduler`` processes for one test and cleans up after it."""

    def __init__(self, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.work = work
        self.folder = work / "schedules"
        self.folder.mkdir()
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "KANSLI_SCHEDULES_DIR": str(self.folder),
                    "KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}
        self.processes: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        monkeypatch.setenv("KANSLI_SCHEDULES_DIR", str(self.folder))
        monkeypatch.setenv("KANSLI_ROBOTS_PACKAGE", "tests.sample_robots")
        self.store = Store(load_settings().effective_database_url)

    def write(self, text: str, name: str = "test.toml") -> None:
        (self.folder / name).write_text(text, encoding="utf-8")

    def start(self, *args: str, wait: bool = True, clock: datetime | None = None) -> subprocess.Popen[str]:
        """A daemon; ``clock``: its clock starts there (time-machine) and runs on in real time."""
        log = self.work / f"daemon-{len(self.logs)}.log"
        command = [*KANSLI] if clock is None else [sys.executable, "-c", TRAVELLING_DAEMON, clock.isoformat()]
        process = subprocess.Popen([*command, "scheduler", "--stop-grace", "2", *args], env=self.env,
                                   cwd=self.work, stdout=subprocess.DEVNULL,
                                   stderr=log.open("w"), text=True)
        self.processes.append(process)
        self.logs.append(log)
        if wait:
            wait_until(lambda: self.alive_pid() == process.pid or process.poll() is not None,
                       what="the daemon's heartbeat")
            assert process.poll() is None, self.log()
        return process

    def alive_pid(self) -> int | None:
        status = daemon_status(self.store)
        return status.pid if status and status.alive else None

    def stop(self, process: subprocess.Popen[str]) -> int:
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=20)

    def log(self, index: int = -1) -> str:
        return self.logs[index].read_text()

    def runs(self, schedule_id: str) -> list[RunRecord]:
        return self.store.list_runs(trigger=f"schedule:{schedule_id}", limit=500)

    def cleanup(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for record in self.store.list_runs(status="running", limit=100):
            if record.pid and not gone(record.pid):
                psutil.Process(record.pid).kill()


@pytest.fixture
def daemons(kansli_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemons]:
    helper = Daemons(kansli_env, monkeypatch)
    try:
        yield helper
    finally:
        helper.cleanup()


def test_a_schedule_fires_records_runs_and_a_second_daemon_is_refused(daemons: Daemons) -> None:
    marker = daemons.work / "ticks.txt"
    daemons.write(f'[[schedule]]\nid = "tick"\nrobot = "ticker"\nevery = "1s"\n'
                  f'params = {{ marker = "{marker}" }}\nmisfire_grace = "5s"\n')
    first = daemons.start()
    wait_until(lambda: len([r for r in daemons.runs("tick") if r.status == "succeeded"]) >= 2,
               what="two scheduled runs")
    assert f"schedule files in {daemons.folder}: {daemons.folder / 'test.toml'} (1 schedule(s))" \
        in daemons.log()
    done = [r for r in daemons.runs("tick") if r.status == "succeeded"][-1]
    ended = f"schedule tick: run {done.run_id} of ticker ended succeeded after"
    wait_until(lambda: ended in daemons.log(), what="the log line of a finished run")
    second = daemons.start(wait=False)
    assert second.wait(timeout=30) == 5
    assert "already runs on this database" in daemons.log()
    listing = kansli("schedules", "--json", env=daemons.env, cwd=daemons.work)
    data = json.loads(listing.stdout)
    assert data["daemon"]["alive"] is True and data["daemon"]["pid"] == first.pid
    [row] = data["schedules"]
    assert row["id"] == "tick" and row["trigger"] == "every 1s" and row["last_run"] is not None
    assert row["next_run"] is not None and row["paused"] is False
    assert daemons.stop(first) == 0
    assert daemons.alive_pid() is None
    ran = [r for r in daemons.runs("tick") if r.status == "succeeded"]
    assert len(marker.read_text().splitlines()) == len(ran)
    assert all(r.trigger == "schedule:tick" for r in ran)
    actions = [a.action for a in list_operator_actions(daemons.store)]
    assert {"daemon.start", "daemon.stop", "daemon.sync"} <= set(actions)


def test_broken_files_refuse_the_start_unless_keep_going(daemons: Daemons) -> None:
    daemons.write('[[schedule]]\nid = "ok"\nrobot = "ticker"\nevery = "1h"\n', "good.toml")
    daemons.write('[[schedule]]\nid = "bad"\nrobot = "nosuch"\nevery = "1h"\n', "bad.toml")
    refused = daemons.start(wait=False)
    assert refused.wait(timeout=30) == 4
    assert "bad.toml: schedule 'bad': field 'robot': unknown robot 'nosuch'" in daemons.log()
    kept = daemons.start("--keep-going")
    wait_until(lambda: "scheduler started with 1 schedule" in daemons.log(), what="the start")
    assert "field 'robot'" in daemons.log()
    assert daemons.stop(kept) == 0


def late_runs(log: str, schedule_id: str) -> list[float]:
    """The lateness (ms) of each run of ``schedule_id`` in a daemon log."""
    lates = []
    for line in log.splitlines():
        if f"schedule {schedule_id}: run " in line and "late by" in line:
            lates.append(float(line.rsplit("late by ", 1)[1].split()[0]))
    return lates


def planned_runs(log: str, schedule_id: str) -> list[datetime]:
    """The planned time of each scheduled run of ``schedule_id`` in a daemon log."""
    return [datetime.fromisoformat(line.split(", planned ", 1)[1].split(",")[0])
            for line in log.splitlines()
            if f"schedule {schedule_id}: run " in line and ", planned 20" in line]


def test_restart_keeps_schedules_coalesces_and_honours_the_grace(daemons: Daemons) -> None:
    daemons.write('[[schedule]]\nid = "often"\nrobot = "ticker"\nevery = "2s"\nmisfire_grace = "60s"\n')
    first = daemons.start()
    at = soon(8)  # the one-off schedules come due while no daemon runs
    daemons.write(
        f'[[schedule]]\nid = "late-ok"\nrobot = "counting"\nat = "{at}"\nmisfire_grace = "60s"\n'
        'params = { count = 1 }\n\n'
        f'[[schedule]]\nid = "late-missed"\nrobot = "ticker"\nat = "{at}"\nmisfire_grace = "1s"\n',
        "once.toml")
    first.send_signal(signal.SIGHUP)
    wait_until(lambda: {"late-ok", "late-missed"} <= set(next_run_times(daemons.store)),
               what="the SIGHUP sync")
    assert daemons.stop(first) == 0
    assert daemons.runs("late-ok") == [], "the daemon stopped too late for this test's premise"
    stopped = datetime.now(UTC)
    before = len(daemons.runs("often"))
    # down until "at" is 1.5 s past and "often" (every 2s) missed at least two fires
    due = max(datetime.fromisoformat(at) + timedelta(seconds=1.5), stopped + timedelta(seconds=4.5))
    wait_until(lambda: datetime.now(UTC) > due, timeout=30, what="the clock to pass the planned times")
    restarted = datetime.now(UTC)
    second = daemons.start()
    wait_until(lambda: daemons.runs("late-missed") and daemons.runs("late-ok")
               and daemons.runs("late-ok")[0].status != "running", what="the one-off schedules")
    wait_until(lambda: len(planned_runs(daemons.log(), "often")) >= 2, what="regular runs after restart")
    assert daemons.stop(second) == 0
    [missed] = daemons.runs("late-missed")
    assert missed.status == "missed" and "misfire grace 1s" in (missed.error or "")
    [audited] = AuditLog.from_settings(load_settings()).search(run_id=missed.run_id)
    assert audited["event"] == "run.missed" and audited["actor"] == "schedule:late-missed"
    [late_ok] = daemons.runs("late-ok")
    assert late_ok.status == "succeeded"
    # the daemon came up 1.5 s after "at" at the earliest: it ran late, within its grace
    assert late_runs(daemons.log(), "late-ok")[0] >= 1500
    # the two or more fires "often" missed while down were coalesced into one run: at most one run
    # of the new daemon was planned before it started
    assert len([p for p in planned_runs(daemons.log(), "often") if p < restarted]) <= 1
    assert len(daemons.runs("often")) > before
    assert not [r for r in daemons.runs("often") if r.status == "missed"]


def test_a_sigkilled_daemon_leaves_no_run_running_forever(daemons: Daemons) -> None:
    """The run killed with the daemon ends interrupted; a run that survived it is adopted."""
    ready, marker = daemons.work / "ready.txt", daemons.work / "ticks.txt"
    release = daemons.work / "release.txt"
    daemons.write(f'[[schedule]]\nid = "long"\nrobot = "sleeper"\nat = "{soon(2)}"\n'
                  f'params = {{ seconds = 60, ready = "{ready}" }}\n\n'
                  f'[[schedule]]\nid = "survivor"\nrobot = "ticker"\nat = "{soon(2)}"\n'
                  f'params = {{ pause = 120, marker = "{marker}", release = "{release}" }}\n')
    first = daemons.start()
    wait_until(lambda: ready.exists() and marker.exists(), what="the runs to start")
    assert daemons.runs("long")[0].status == "running"
    first.kill()  # the daemon dies ...
    first.wait()
    psutil.Process(int(ready.read_text())).kill()  # ... and so does one run (as systemd would)
    wait_until(lambda: gone(int(ready.read_text())), what="the run process to die")
    assert daemons.runs("long")[0].status == "running"  # nobody closed it yet
    second = daemons.start()  # alive once it holds the lease; it recovers the runs right after
    wait_until(lambda: "survived the previous daemon" in daemons.log(), what="the adoption")
    assert daemons.runs("long")[0].status == "interrupted"
    assert daemons.runs("survivor")[0].status == "running"
    release.touch()
    wait_until(lambda: daemons.runs("survivor")[0].status != "running", what="the adopted run")
    assert daemons.runs("survivor")[0].status == "succeeded"
    assert daemons.stop(second) == 0


def test_overlapping_runs_are_refused_and_recorded(daemons: Daemons) -> None:
    """Every run here lasts until the test releases it (or the daemon stops it): no timing."""
    cli_ready, cli_release = daemons.work / "cli-ready.txt", daemons.work / "cli-release.txt"
    daemons.write(f'[[schedule]]\nid = "busy"\nrobot = "sleeper"\nat = "{soon(1)}"\n'
                  'params = { seconds = 120 }\n\n'
                  f'[[schedule]]\nid = "manual"\nrobot = "sleeper"\ncron = "0 0 1 1 *"\n'
                  'params = { seconds = 120 }\n')
    cli_run = subprocess.Popen([*KANSLI, "run", "sleeper", "--param", "seconds=120", "--param",
                                f"ready={cli_ready}", "--param", f"release={cli_release}"],
                               env=daemons.env, cwd=daemons.work,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(cli_ready.exists, timeout=60, what="the CLI run")
    daemon = daemons.start()
    wait_until(lambda: daemons.runs("busy"), what="the scheduled run")
    wait_until(lambda: daemons.runs("busy")[0].status != "running", what="the scheduled run's end")
    [refused] = daemons.runs("busy")
    assert refused.status == "skipped" and "already running" in (refused.error or "")
    cli_release.touch()
    assert cli_run.wait(timeout=60) == 0
    triggered = kansli("schedules", "trigger", "manual", env=daemons.env, cwd=daemons.work)
    assert triggered.returncode == 0, triggered.stderr
    assert "started by the daemon" in triggered.stdout
    wait_until(lambda: daemons.runs("manual") and daemons.runs("manual")[0].status == "running",
               what="the triggered run")
    second_cli = kansli("run", "sleeper", "--param", "seconds=1", env=daemons.env, cwd=daemons.work)
    assert second_cli.returncode == 5
    [skipped] = daemons.store.list_runs(robot="sleeper", trigger="cli", status="skipped")
    assert "already running by run " + daemons.runs("manual")[0].run_id in (skipped.error or "")
    assert daemons.stop(daemon) == 0
    assert daemons.runs("manual")[0].status == "cancelled"  # still sleeping: stopped after the 2 s grace
    actions = {a.action for a in list_operator_actions(daemons.store, "manual")}
    assert {"schedule.trigger", "schedule.trigger.started"} <= actions


def test_a_timed_out_run_is_killed_with_its_children(daemons: Daemons) -> None:
    pids = daemons.work / "pids.txt"
    daemons.write(f'[[schedule]]\nid = "slow"\nrobot = "spawner"\nat = "{soon(2)}"\ntimeout = "8s"\n'
                  f'params = {{ child_pid_file = "{pids}", seconds = 120 }}\n')
    daemon = daemons.start()
    wait_until(pids.exists, what="the spawner's pids")
    robot_pid, sleep_pid = map(int, pids.read_text().split())
    assert psutil.Process(sleep_pid).name() == "sleep"
    wait_until(lambda: daemons.runs("slow")[0].status == "timeout", timeout=60, what="the timeout")
    [record] = daemons.runs("slow")
    assert "timed out after 8s" in (record.error or "")
    wait_until(lambda: gone(robot_pid) and gone(sleep_pid), what="no orphans")
    assert daemons.stop(daemon) == 0
    trail = AuditLog.from_settings(load_settings())
    # the run ended "cancelled" on the daemon's SIGTERM (its own run.finished) or not at all
    closing = [e for e in trail.search(run_id=record.run_id)
               if e["event"] in ("run.finished", "run.status_changed")]
    assert closing[-1]["data"]["status"] == "timeout" and closing[-1]["data"]["cause"] == "timeout"
    assert trail.verify().ok


def wait_for_heartbeats(daemons: Daemons, seconds: float) -> None:
    """Until the running daemon's heartbeat is ``seconds`` newer than now (its loop went on so long)."""
    since = datetime.now(UTC) + timedelta(seconds=seconds)
    wait_until(lambda: heartbeat_after(daemons, since), timeout=seconds + 30, what="the daemon's heartbeats")


def test_pause_and_resume_survive_a_restart(daemons: Daemons) -> None:
    daemons.write('[[schedule]]\nid = "tick"\nrobot = "ticker"\nevery = "1s"\nmisfire_grace = "5s"\n')
    first = daemons.start()
    wait_until(lambda: daemons.runs("tick"), what="a first run")
    paused = kansli("schedules", "pause", "tick", env=daemons.env, cwd=daemons.work)
    assert paused.returncode == 0 and "paused" in paused.stdout
    wait_until(lambda: not pending_schedule_requests(daemons.store), what="the daemon to pause it")
    wait_until(lambda: next_run_times(daemons.store)["tick"] is None, what="the job to be paused")
    wait_for_heartbeats(daemons, 2)  # a fire handed to a worker just before the pause has started by now
    wait_until(lambda: not psutil.Process(first.pid).children()
               and all(r.status != "running" for r in daemons.runs("tick")), what="the last run to end")
    count = len(daemons.runs("tick"))
    wait_for_heartbeats(daemons, 3)  # three more seconds of the daemon's loop, every 1s schedule paused
    assert len(daemons.runs("tick")) == count
    assert daemons.stop(first) == 0
    second = daemons.start()
    wait_for_heartbeats(daemons, 3)
    assert len(daemons.runs("tick")) == count  # still paused after the restart
    assert load_schedule_states(daemons.store)["tick"].paused is True
    assert next_run_times(daemons.store)["tick"] is None  # the job itself is paused too
    resumed = kansli("schedules", "resume", "tick", env=daemons.env, cwd=daemons.work)
    assert resumed.returncode == 0
    wait_until(lambda: len(daemons.runs("tick")) > count, what="runs after resume")
    assert daemons.stop(second) == 0
    history = kansli("schedules", "history", "tick", "--json", env=daemons.env, cwd=daemons.work)
    actions = [a["action"] for a in json.loads(history.stdout)["actions"]]
    assert "schedule.pause" in actions and "schedule.resume" in actions
    assert all("@" in a["actor"] for a in json.loads(history.stdout)["actions"])
    audited = json.loads(kansli("audit", "search", "--json", env=daemons.env, cwd=daemons.work).stdout)
    kinds = [event["event"] for event in audited]
    for kind in ("daemon.started", "schedule.synced", "schedule.paused", "schedule.resumed",
                 "daemon.stopped", "run.started", "run.finished"):
        assert kind in kinds, f"{kind} is missing from the audit trail"
    scheduled = [e for e in audited if e["event"] == "run.started"]
    assert {e["actor"] for e in scheduled} == {"schedule:tick"}
    assert kansli("audit", "verify", env=daemons.env, cwd=daemons.work).returncode == 0


def test_a_failed_run_sends_a_mail_without_secrets(
    daemons: Daemons, smtp_server: SmtpServer  # noqa: F811
) -> None:
    daemons.env.update({"KANSLI_SMTP__HOST": "127.0.0.1", "KANSLI_SMTP__PORT": str(smtp_server.port),
                        "KANSLI_SMTP__USERNAME": "kansli", "KANSLI_SMTP__PASSWORD": CANARY_PASSWORD})
    daemons.write(f'[[schedule]]\nid = "crash"\nrobot = "crashing"\nat = "{soon(2)}"\n'
                  f'params = {{ message = "login {CANARY_PASSWORD} for 19121212-1212 refused" }}\n'
                  'notify = ["it-drift@example.se"]\n')
    daemon = daemons.start()
    wait_until(lambda: smtp_server.inbox.messages, what="the mail")
    [mail] = smtp_server.inbox.messages
    [record] = daemons.runs("crash")
    assert record.status == "failed"
    assert mail["Subject"] == f"[kansli] crashing: misslyckad (körning {record.run_id})"
    body = mail.get_content()
    assert f"kansli logs {record.run_id}" in body and "RuntimeError" in body
    raw = smtp_server.inbox.raw[0]
    assert CANARY_PASSWORD.encode() not in raw and b"19121212-1212" not in raw
    assert b"1212-1212" not in raw
    assert daemons.stop(daemon) == 0


# -- daylight saving, through the daemon's start, sync and loop on a travelled clock ----------------


def scheduled_events(schedule_id: str) -> list[dict[str, object]]:
    trail = AuditLog.from_settings(load_settings())
    return [e for e in trail.search(event="run.scheduled") if e["data"]["schedule"] == schedule_id]


def heartbeat_after(daemons: Daemons, moment: datetime) -> bool:
    """The daemon's own (travelled) clock has passed ``moment``: its loop has looked at that time."""
    status = daemon_status(daemons.store)
    return status is not None and datetime.fromisoformat(status.heartbeat_at) > moment


def test_a_daemon_started_in_the_spring_forward_window_still_runs_the_days_run(daemons: Daemons) -> None:
    """2027-03-28 03:10 CEST: 02:30 did not exist; its run belongs at 03:00 and has not happened."""
    daemons.write('[[schedule]]\nid = "daily"\nrobot = "ticker"\ncron = "30 2 * * *"\n\n'
                  '[[schedule]]\nid = "once"\nrobot = "counting"\nat = "2027-03-28T02:30"\n'
                  'params = { count = 1 }\n\n'
                  '[[schedule]]\nid = "strict"\nrobot = "ticker"\ncron = "30 2 * * *"\n'
                  'misfire_grace = "5m"\n')
    daemon = daemons.start(clock=datetime(2027, 3, 28, 1, 10, tzinfo=UTC))
    wait_until(lambda: all(daemons.runs(name) and daemons.runs(name)[0].status != "running"
                           for name in ("daily", "once", "strict")), what="the day's runs")
    for name in ("daily", "once"):
        [record] = daemons.runs(name)
        assert record.status == "succeeded"
        [event] = scheduled_events(name)
        assert event["run_id"] == record.run_id
        assert event["data"]["planned"] == "2027-03-28T01:00:00+00:00"  # 03:00 CEST, the end of the gap
        assert "2027-03-28 02:30 does not exist in Europe/Stockholm" in str(event["data"]["shifted"])
        [action] = [a for a in list_operator_actions(daemons.store, name) if a.action == "schedule.shifted"]
        assert action.details["run_id"] == record.run_id
    [missed] = daemons.runs("strict")  # late by 10 minutes, more than its grace: recorded, not skipped
    assert missed.status == "missed" and "02:30 does not exist" in (missed.error or "")
    assert next_run_times(daemons.store)["daily"] == datetime(2027, 3, 29, 0, 30, tzinfo=UTC)
    assert "once" not in next_run_times(daemons.store)
    ended = f"schedule daily: run {daemons.runs('daily')[0].run_id} of ticker ended succeeded after"
    wait_until(lambda: ended in daemons.log(), what="the daemon's log line of the run's end")
    history = kansli("schedules", "history", "daily", env={**daemons.env, "COLUMNS": "200"},
                     cwd=daemons.work)
    assert "schedule.shifted" in history.stdout and "does not exist" in history.stdout
    listed = kansli("schedules", env={**daemons.env, "COLUMNS": "200"}, cwd=daemons.work).stdout
    [daily] = [line for line in listed.splitlines() if "│ daily " in line]
    assert "2027-03-29 02:30:00 CEST" in daily  # the next run, in local time with its zone
    in_utc = kansli("schedules", "--utc", env={**daemons.env, "COLUMNS": "200"}, cwd=daemons.work).stdout
    assert "2027-03-29 00:30:00 UTC" in in_utc
    assert daemons.stop(daemon) == 0


def test_the_repeated_hour_fires_once_even_across_a_restart_inside_it(daemons: Daemons) -> None:
    """2027-10-31: 02:30 CEST fires; a daemon restarted at 02:29:58 CET does not fire it again.

    The first daemon starts 10 s before 02:30 CEST (on its clock): it must have added the job by then.
    """
    daemons.write('[[schedule]]\nid = "daily"\nrobot = "ticker"\ncron = "30 2 * * *"\n\n'
                  '[[schedule]]\nid = "once"\nrobot = "counting"\nat = "2027-10-31T02:30"\n'
                  'params = { count = 1 }\n')
    first = daemons.start(clock=datetime(2027, 10, 31, 0, 29, 50, tzinfo=UTC))  # 02:29:50 CEST
    wait_until(lambda: all(daemons.runs(name) and daemons.runs(name)[0].status == "succeeded"
                           for name in ("daily", "once")), timeout=40, what="the first 02:30")
    for name in ("daily", "once"):
        [event] = scheduled_events(name)
        assert event["data"]["planned"] == "2027-10-31T00:30:00+00:00" and event["data"]["shifted"] is None
    tomorrow = datetime(2027, 11, 1, 1, 30, tzinfo=UTC)  # 02:30 CET on 11-01
    assert next_run_times(daemons.store)["daily"] == tomorrow
    assert daemons.stop(first) == 0
    second = daemons.start(clock=datetime(2027, 10, 31, 1, 29, 58, tzinfo=UTC))  # 02:29:58 CET
    wait_until(lambda: heartbeat_after(daemons, datetime(2027, 10, 31, 1, 30, 2, tzinfo=UTC)),
               what="the daemon's clock to pass 02:30 CET")
    assert next_run_times(daemons.store)["daily"] == tomorrow
    assert len(daemons.runs("daily")) == 1 and len(daemons.runs("once")) == 1
    assert daemons.stop(second) == 0


def test_a_run_interrupted_by_a_daemon_crash_is_retried_by_its_schedule(daemons: Daemons) -> None:
    ready = daemons.work / "ready.txt"
    daemons.write(f'[[schedule]]\nid = "long"\nrobot = "sleeper"\nat = "{soon(2)}"\nretries = 1\n'
                  f'retry_backoff = "1s"\nparams = {{ seconds = 60, ready = "{ready}" }}\n\n'
                  f'[[schedule]]\nid = "no-retry"\nrobot = "ticker"\nat = "{soon(2)}"\n'
                  'params = { pause = 60 }\n')
    first = daemons.start()
    wait_until(lambda: ready.exists() and daemons.runs("no-retry"), what="the runs to start")
    crashed = int(ready.read_text())
    ready.unlink()
    first.kill()  # the daemon dies, and its runs with it (as under systemd's KillMode=mixed)
    first.wait()
    for record in [*daemons.runs("long"), *daemons.runs("no-retry")]:
        assert record.pid is not None
        psutil.Process(record.pid).kill()
        wait_until(lambda pid=record.pid: gone(pid), what="the run process to die")
    [interrupted] = daemons.runs("long")
    second = daemons.start()
    wait_until(lambda: len(daemons.runs("long")) == 2 and ready.exists(), what="the retry run")
    retry, closed = daemons.runs("long")
    assert closed.run_id == interrupted.run_id and closed.status == "interrupted"
    assert retry.status == "running" and int(ready.read_text()) != crashed
    [action] = [a for a in list_operator_actions(daemons.store, "long") if a.action == "schedule.retry"]
    assert action.details == {"run_id": retry.run_id, "retry_of": interrupted.run_id, "attempt": 1}
    assert "retry 1/1 in 1s" in daemons.log()
    [not_retried] = daemons.runs("no-retry")  # retries = 0: closed, not run again
    assert not_retried.status == "interrupted"
    # the retry dies with a second crash: its one retry is used up, so it is closed and left
    second.kill()
    second.wait()
    assert retry.pid is not None
    psutil.Process(int(ready.read_text())).kill()
    wait_until(lambda: gone(int(ready.read_text())), what="the retry's process to die")
    third = daemons.start()
    wait_until(lambda: "no retry left (1 of 1 used)" in daemons.log(), what="the retries to run out")
    assert [r.status for r in daemons.runs("long")] == ["interrupted", "interrupted"]
    assert daemons.stop(third) == 0


def test_a_schedule_changed_after_its_shifted_run_does_not_run_it_again(daemons: Daemons) -> None:
    """03:00 CEST on 2027-03-28 the shifted 02:30 runs; changed at 03:00:0x, it must not run twice."""
    daily = '[[schedule]]\nid = "daily"\nrobot = "ticker"\ncron = "30 2 * * *"\nmisfire_grace = "{}"\n'
    daemons.write(daily.format("1h"))
    daemon = daemons.start(clock=datetime(2027, 3, 28, 0, 59, 58, tzinfo=UTC))  # 02:59:58 CET
    wait_until(lambda: daemons.runs("daily") and daemons.runs("daily")[0].status == "succeeded",
               what="the shifted run")
    daemons.write(daily.format("2h"))  # a change of timing: the job is rescheduled from now
    daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: any(a.action == "daemon.sync" and a.details.get("changed") == ["daily"]
                           for a in list_operator_actions(daemons.store)), what="the SIGHUP sync")
    tomorrow = datetime(2027, 3, 29, 0, 30, tzinfo=UTC)
    assert next_run_times(daemons.store)["daily"] == tomorrow
    assert "its run planned for 2027-03-28T01:00:00+00:00 has run already" in daemons.log()
    assert len(daemons.runs("daily")) == 1 and len(scheduled_events("daily")) == 1
    assert daemons.stop(daemon) == 0


def test_a_schedule_resumed_in_the_spring_forward_window_does_not_make_up_the_days_run(
    daemons: Daemons,
) -> None:
    daemons.write('[[schedule]]\nid = "daily"\nrobot = "ticker"\ncron = "30 2 * * *"\n')
    assert kansli("schedules", "pause", "daily", env=daemons.env, cwd=daemons.work).returncode == 0
    daemon = daemons.start(clock=datetime(2027, 3, 28, 1, 10, tzinfo=UTC))  # 03:10 CEST
    wait_until(lambda: next_run_times(daemons.store).get("daily", 0) is None, what="the paused job")
    resumed = kansli("schedules", "resume", "daily", env=daemons.env, cwd=daemons.work)
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: next_run_times(daemons.store)["daily"] is not None, what="the resume")
    assert next_run_times(daemons.store)["daily"] == datetime(2027, 3, 29, 0, 30, tzinfo=UTC)
    wait_for_heartbeats(daemons, 2)
    assert scheduled_events("daily") == [] and daemons.runs("daily") == []
    assert daemons.stop(daemon) == 0


def test_jobs_stored_by_an_older_version_get_the_new_triggers_and_keep_their_next_run(
    daemons: Daemons,
) -> None:
    """A job store written with APScheduler's own CronTrigger and a wall-clock IntervalTrigger."""
    from zoneinfo import ZoneInfo

    from apscheduler.job import Job
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from shared.registry import discover
    from shared.scheduler import JOBS_TABLE, fire_schedule
    from shared.schedules import WallClockCronTrigger, load_schedules
    from shared.store import save_schedule_states

    daemons.write('[[schedule]]\nid = "daily"\nrobot = "ticker"\ncron = "30 2 * * *"\n\n'
                  '[[schedule]]\nid = "often"\nrobot = "ticker"\nevery = "1h"\nstart = "2026-01-01T00:00"\n')
    zone, planned = ZoneInfo("Europe/Stockholm"), datetime.now(UTC) + timedelta(hours=5)
    old = {"daily": CronTrigger.from_crontab("30 2 * * *", timezone=zone),
           "often": IntervalTrigger(hours=1, start_date=datetime(2026, 1, 1, tzinfo=zone), timezone=zone)}
    scheduler = BlockingScheduler(timezone=UTC)
    jobstore = SQLAlchemyJobStore(engine=daemons.store.engine, tablename=JOBS_TABLE)
    jobstore.start(scheduler, "default")
    for job_id, trigger in old.items():
        jobstore.add_job(Job(scheduler, id=job_id, func=fire_schedule, args=[job_id], kwargs={},
                             trigger=trigger, executor="default", name=job_id, misfire_grace_time=3600,
                             coalesce=True, max_instances=1, next_run_time=planned))
    schedules = load_schedules(daemons.folder, discover("tests.sample_robots")).by_id()
    save_schedule_states(daemons.store, [(s.id, s.robot, s.fingerprint()) for s in schedules.values()])
    daemon = daemons.start()
    wait_until(lambda: "scheduler started" in daemons.log(), what="the start")
    assert daemons.stop(daemon) == 0
    daily, often = jobstore.lookup_job("daily"), jobstore.lookup_job("often")
    assert isinstance(daily.trigger, WallClockCronTrigger) and daily.next_run_time == planned
    assert isinstance(often.trigger, IntervalTrigger) and often.trigger.timezone == UTC
    assert often.next_run_time == planned


def test_a_queue_schedule_fires_its_consumer_when_a_scheduled_producer_gave_it_enough_work(
    daemons: Daemons,
) -> None:
    from shared.queue import list_queues

    marker = daemons.work / "handled.txt"
    daemons.write(f'[[schedule]]\nid = "consume"\nrobot = "consumer"\nqueue = "inbox"\nmin_items = 3\n'
                  f'check_every = "1s"\nparams = {{ marker = "{marker}" }}\n')
    daemon = daemons.start()
    assert kansli("run", "producer", "-p", "count=2", env=daemons.env, cwd=daemons.work).returncode == 0
    produced = datetime.now(UTC)
    wait_until(lambda: (next_run_times(daemons.store).get("consume") or produced) > produced
               + timedelta(seconds=2), what="two checks of the queue after 2 items")
    assert daemons.runs("consume") == []  # 2 ready items are fewer than min_items
    daemons.write(f'[[schedule]]\nid = "produce"\nrobot = "producer"\nat = "{soon(2)}"\n'
                  'params = { count = 5, start = 2 }\n', "producer.toml")
    daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: list_queues(daemons.store).get("inbox") == {"done": 7} and not [
        run for run in daemons.runs("consume") if run.status == "running"], timeout=60,
        what="the consumer doing the 7 items, and its runs ended")
    runs = daemons.runs("consume")
    assert sum(run.items_done for run in runs) == 7 and all(run.status == "succeeded" for run in runs), [
        (run.status, run.items_total, run.error) for run in runs]
    assert sorted(marker.read_text().split()) == sorted(f"m{n}" for n in range(7))
    [produced_run] = daemons.runs("produce")
    assert produced_run.status == "succeeded"
    listing = json.loads(kansli("schedules", "--json", env=daemons.env, cwd=daemons.work).stdout)
    assert {row["id"]: row["trigger"] for row in listing["schedules"]}["consume"] == (
        "queue inbox (>= 3 ready, checked every 1s)")
    assert daemons.stop(daemon) == 0
