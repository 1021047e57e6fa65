"""shared.scheduler.status, through real daemons: the lease that tells the CLI a daemon runs, and
refuses a second one on the same database."""

from __future__ import annotations

import json

import pytest

from shared.store import list_operator_actions
from tests.conftest import kansli
from tests.shared.scheduler.conftest import Daemons, wait_until

pytestmark = pytest.mark.slow


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
