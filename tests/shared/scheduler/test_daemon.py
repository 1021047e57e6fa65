"""shared.scheduler.daemon, run for real: its start (refused on broken files), and a start on a travelled
clock inside a daylight-saving gap."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.scheduler import next_run_times
from shared.store import list_operator_actions
from tests.conftest import kansli
from tests.shared.scheduler.conftest import Daemons, scheduled_events, wait_until

pytestmark = pytest.mark.slow


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
