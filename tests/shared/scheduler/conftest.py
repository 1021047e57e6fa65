"""The scheduler daemon's tests, run for real: subprocess daemons, subprocess runs, a real SQLite file.

The helpers here (:class:`Daemons`, :func:`wait_until`, ...) are imported by the tests of the package
and by ``tests/shared/test_leader.py``; the ``daemons`` fixture starts daemons for one test.
"""

from __future__ import annotations

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
from shared.scheduler import daemon_status
from shared.settings import load_settings
from shared.store import RunRecord, Store
from tests.conftest import KANSLI, REPO


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


def wait_for_heartbeats(daemons: Daemons, seconds: float) -> None:
    """Until the running daemon's heartbeat is ``seconds`` newer than now (its loop went on so long)."""
    since = datetime.now(UTC) + timedelta(seconds=seconds)
    wait_until(lambda: heartbeat_after(daemons, since), timeout=seconds + 30, what="the daemon's heartbeats")


# -- daylight saving, through the daemon's start, sync and loop on a travelled clock ----------------


def scheduled_events(schedule_id: str) -> list[dict[str, object]]:
    trail = AuditLog.from_settings(load_settings())
    return [e for e in trail.search(event="run.scheduled") if e["data"]["schedule"] == schedule_id]


def heartbeat_after(daemons: Daemons, moment: datetime) -> bool:
    """The daemon's own (travelled) clock has passed ``moment``: its loop has looked at that time."""
    status = daemon_status(daemons.store)
    return status is not None and datetime.fromisoformat(status.heartbeat_at) > moment
