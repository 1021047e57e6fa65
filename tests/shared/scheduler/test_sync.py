"""shared.scheduler.sync, through real daemons on a travelled clock: a day's run is never run twice
nor made up, across a restart, a change or a resume."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest

from shared.scheduler import next_run_times
from shared.store import list_operator_actions
from tests.conftest import kansli
from tests.shared.scheduler.conftest import (
    Daemons,
    heartbeat_after,
    scheduled_events,
    wait_for_heartbeats,
    wait_until,
)

pytestmark = pytest.mark.slow


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
