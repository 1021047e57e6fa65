"""shared.scheduler.recovery, through real daemons: what a SIGKILLed daemon left running, closed,
adopted or retried."""

from __future__ import annotations

import psutil
import pytest

from shared.store import list_operator_actions
from tests.shared.scheduler.conftest import Daemons, gone, soon, wait_until

pytestmark = pytest.mark.slow


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
