"""Robots for the tests of several hosts: they write down where and when they ran."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from shared.items import WorkItem
from shared.registry import robot
from shared.runner import Run


def _note(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


@robot()
def stamp(run: Run, log: Path, seconds: float = 0.3) -> None:
    """Write its start and end (run id, host, time) to ``log``: overlap checks across hosts."""
    host = os.environ.get("KANSLI_HOST_ID", "")
    _note(log, f"start {run.run_id} {host} {time.time()}")
    time.sleep(seconds)
    _note(log, f"end {run.run_id} {host} {time.time()}")


@robot(tags=["chromium"])
def needs_browser(run: Run) -> None:
    """Does nothing, but only where a host has Chromium (``--tags chromium``)."""


def _cases(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("CREATE TABLE IF NOT EXISTS cases (number INTEGER PRIMARY KEY, referens TEXT, "
                       "host TEXT)")
    return connection


@robot(side_effects=True, parallel=True)
def drain(run: Run, cases: Path, queue: str = "bulk", delay: float = 0.0, hold: Path | None = None) -> None:
    """Key each item of ``queue`` as a case in the SQLite case system ``cases`` once; runs of it on
    several hosts share the queue. While ``hold`` names a key, its item waits after being keyed
    (``<hold>.reached`` says it got there), so a test can kill the host in the middle of it."""
    host = os.environ.get("KANSLI_HOST_ID", "")

    def submit(item: WorkItem) -> int:
        time.sleep(delay)
        with _cases(cases) as connection:
            number = connection.execute("INSERT INTO cases (referens, host) VALUES (?, ?)",
                                        (item.key, host)).lastrowid
        if hold is not None and hold.exists() and hold.read_text().strip() == item.key:
            hold.with_suffix(".reached").write_text(host)
            while hold.exists():
                time.sleep(0.05)
        return int(number or 0)

    def already_submitted(item: WorkItem) -> int | None:
        with _cases(cases) as connection:
            found = connection.execute("SELECT number FROM cases WHERE referens = ?", (item.key,)).fetchone()
        return int(found[0]) if found else None

    run.consume(submit, queue=queue, reconcile=already_submitted)
