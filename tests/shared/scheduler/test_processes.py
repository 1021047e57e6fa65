"""shared.scheduler.processes, through a real daemon: a timed-out run killed with its whole process
tree."""

from __future__ import annotations

import psutil
import pytest

from shared.audit import AuditLog
from shared.settings import load_settings
from tests.shared.scheduler.conftest import Daemons, gone, soon, wait_until

pytestmark = pytest.mark.slow


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
