"""shared.scheduler.actions, through real daemons: operator actions (pause, resume) and daemon events,
recorded and in the audit trail."""

from __future__ import annotations

import json

import psutil
import pytest

from shared.scheduler import next_run_times
from shared.store import load_schedule_states, pending_schedule_requests
from tests.conftest import kansli
from tests.shared.scheduler.conftest import Daemons, wait_for_heartbeats, wait_until

pytestmark = pytest.mark.slow


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
