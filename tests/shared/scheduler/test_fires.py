"""shared.scheduler.fires, through real daemons: fires missed while no daemon ran, coalesced or
recorded missed by their misfire grace."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest

from shared.audit import AuditLog
from shared.scheduler import next_run_times
from shared.settings import load_settings
from tests.shared.scheduler.conftest import Daemons, soon, wait_until

pytestmark = pytest.mark.slow


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
