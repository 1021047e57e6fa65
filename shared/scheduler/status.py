"""The daemon as the CLI sees it: whether one runs on a database, and the next run of each schedule.

A heartbeat lease in ``kansli_meta`` (``scheduler.daemon``) tells the CLI whether a daemon runs, on
which host, since when and (several daemons on PostgreSQL) since when it leads; a lease whose
heartbeat is older than :data:`HEARTBEAT_STALE`, or whose process is gone on this machine, is stale.
The next fire time of each schedule is read from the job store (table ``kansli_scheduler_jobs``).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from shared.scheduler.processes import _pid_alive
from shared.store import Store

JOBS_TABLE = "kansli_scheduler_jobs"
LEASE_NAME = "scheduler.daemon"
HEARTBEAT_STALE = 15.0


@dataclass
class DaemonStatus:
    """The daemon holding the lease of a database, if any."""

    pid: int
    host: str
    started_at: str
    heartbeat_at: str
    alive: bool
    leading_since: str | None = None  # several daemons on PostgreSQL: this one leads since then

    def describe(self, utc: bool = False) -> str:
        from shared.clock import local_time

        state = "running" if self.alive else "not running (stale heartbeat)"
        leads = f", leading since {local_time(self.leading_since, seconds=True, utc=utc)}" \
            if self.leading_since else ""
        return f"{state}: pid {self.pid} on {self.host}, started " \
               f"{local_time(self.started_at, seconds=True, utc=utc)}{leads}, " \
               f"heartbeat {_age(self.heartbeat_at):.0f}s ago"


def _age(stamp: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()


def _holder_alive(value: str, updated_at: str, stale_after: float = HEARTBEAT_STALE) -> bool:
    try:
        owner = json.loads(value)
    except json.JSONDecodeError:
        return False
    if _age(updated_at) > stale_after:
        return False
    if owner.get("machine", owner.get("host")) == socket.gethostname():
        return _pid_alive(int(owner.get("pid", 0)))
    return True


def daemon_status(store: Store) -> DaemonStatus | None:
    """The daemon recorded in the database (alive or stale), or None."""
    row = store.get_meta(LEASE_NAME)
    if row is None:
        return None
    value, updated_at = row
    try:
        owner = json.loads(value)
    except json.JSONDecodeError:
        return None
    return DaemonStatus(pid=int(owner.get("pid", 0)), host=str(owner.get("host", "?")),
                        started_at=str(owner.get("started_at", "")), heartbeat_at=updated_at,
                        alive=_holder_alive(value, updated_at), leading_since=owner.get("leading_since"))


def next_run_times(store: Store) -> dict[str, datetime | None]:
    """Next fire time of each job in the job store (None: paused); empty before the first sync."""
    table = sa.table(JOBS_TABLE, sa.column("id"), sa.column("next_run_time"))
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(sa.select(table.c.id, table.c.next_run_time)).all()
    except sa.exc.SQLAlchemyError:
        return {}
    return {
        row.id: None if row.next_run_time is None else datetime.fromtimestamp(row.next_run_time, UTC)
        for row in rows
    }


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (used by the CLI)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
