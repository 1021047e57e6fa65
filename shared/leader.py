"""One scheduler leader among several ``kansli scheduler`` daemons on one PostgreSQL database.

* :class:`Leadership`: the lead is a PostgreSQL session advisory lock (:data:`LEADER_KEY`) held on a
  psycopg connection of its own (autocommit, outside SQLAlchemy's pool). A standby tries to take it
  every ``cluster.leader_poll_s``; the leader's watchdog checks every poll that its connection still
  holds it, and when the connection is gone the lead is LOST at once (the daemon stops firing and
  stands by again). A leader whose process dies releases the lock with its connection: at once when
  the kernel closes the socket (SIGKILL, crash), after :attr:`Leadership.lease_s` when its host
  vanished (the server's TCP keepalives, set on the session). The leader's own watchdog notices a dead
  connection sooner than that, so it stops firing before anyone else can lead.
* :class:`FireLedger`: table ``kansli_schedule_fires``, one row per (schedule, planned time). A
  leader claims a fire (``claimed``) before APScheduler moves the job on, marks it ``started`` right
  before the run starts, and ``spawned`` (or ``queued``) once it has. A fire left ``claimed`` by a
  leader that died, or ``started`` without a trace of its run, is taken over by the next leader
  within the fire's misfire grace; the conditional updates make the fire happen once. (A row left
  ``started`` is judged only after 10 polls: a run whose process started but had not written its
  record by then would run twice.)
* Standby rows in ``kansli_meta`` (``scheduler.standby:<host>:<pid>``) let ``kansli schedules``
  show the standbys next to the leader.

What breaks this: a connection pooler in transaction or statement mode (PgBouncer
``pool_mode = transaction``) between the scheduler and PostgreSQL. A session advisory lock belongs to
a server connection, which such a pooler hands to other clients between transactions: the lock is
then held by, or released for, the wrong client. Connect the schedulers directly (or through a
session-mode pool).
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy as sa
from loguru import logger
from sqlalchemy.engine import make_url

from shared.redaction import redact
from shared.store import QUEUED, Store, kv, runs, schedule_fires, utcnow

#: The advisory lock key of the scheduler lead: the first 8 bytes of sha256("kansli scheduler"), signed.
#: In ``pg_locks``: locktype advisory, classid 2610282018, objid 1000380676, objsubid 1.
LEADER_KEY = -7235668172062287612
STANDBY_PREFIX = "scheduler.standby:"
DATABASE_ERRORS = (psycopg.Error, sa.exc.SQLAlchemyError, OSError)

_HOLDS_LOCK = ("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
               "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1)")


def libpq_url(url: str) -> str:
    """The libpq (psycopg) form of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class LeadershipLost(Exception):
    """The leader's connection no longer holds the lock."""


class Leadership:
    """The scheduler lead of one database, held (or waited for) by this daemon."""

    def __init__(self, url: str, host: str, poll: float) -> None:
        self.url = libpq_url(url)
        self.host = host
        self.poll = poll
        self.term: str | None = None  # this daemon's current lead: a token of its own per lead
        self.since: str | None = None
        self.waited = False  # the last acquire() stood by before it led
        self._connection: psycopg.Connection[Any] | None = None
        self._lost = threading.Event()
        self._released = threading.Event()
        self._watchdog: threading.Thread | None = None

    # -- timing ------------------------------------------------------------------------------

    @property
    def _keepalive(self) -> tuple[int, int, int]:
        """The server's TCP keepalives of the lock session: idle, interval, count (seconds)."""
        return max(1, math.ceil(2 * self.poll)), max(1, math.ceil(self.poll)), 3

    @property
    def lease_s(self) -> float:
        """The longest the lock outlives a leader whose host vanished (no TCP reset): the server's
        keepalives. A leader that died on a living host (SIGKILL, crash) frees it at once."""
        idle, interval, count = self._keepalive
        return float(idle + interval * count)

    def _connect(self) -> psycopg.Connection[Any]:
        idle, interval, count = self._keepalive
        timeout_ms = int(max(1.0, 2 * self.poll) * 1000)
        options = (f"-c idle_session_timeout=0 -c statement_timeout={timeout_ms} "
                   f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
                   f"-c tcp_keepalives_count={count}")
        return psycopg.connect(
            self.url, autocommit=True, connect_timeout=max(2, math.ceil(2 * self.poll)),
            application_name=f"kansli scheduler {self.host}"[:63], options=options,
            keepalives=1, keepalives_idle=idle, keepalives_interval=interval, keepalives_count=count,
            tcp_user_timeout=timeout_ms,
        )

    # -- standing by -------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        return self.term is not None and not self._lost.is_set()

    def acquire(self, stop: threading.Event, waiting: Callable[[], str | None]) -> bool:
        """Stand by until this daemon leads (True) or ``stop`` is set (False).

        ``waiting()`` runs after every failed try (the standby's heartbeat) and names the leader.
        """
        said: str | None = None
        self.waited = False
        while not stop.is_set():
            try:
                if self._try_lock():
                    return True
                news = f"standing by: {waiting() or 'another scheduler'} leads"
            except DATABASE_ERRORS as error:
                self._close()
                news = f"standing by: the database is unreachable ({short_reason(error)}); retrying"
            if news != said:
                logger.info("{}", news)
                said = news
            self.waited = True
            stop.wait(self.poll)
        return False

    def _try_lock(self) -> bool:
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        row = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_KEY,)).fetchone()
        if not (row and row[0]):
            return False
        self.term = f"{self.host}:{uuid.uuid4().hex[:12]}"
        self.since = utcnow()
        self._lost.clear()
        self._released.clear()
        return True

    # -- leading -------------------------------------------------------------------------------

    def watch(self, on_lost: Callable[[str], None]) -> None:
        """Check the lock every poll in a thread of its own; on loss call ``on_lost(reason)`` once."""
        self._watchdog = threading.Thread(target=self._watch, args=(on_lost,), daemon=True,
                                          name="kansli-leader-watchdog")
        self._watchdog.start()

    def _watch(self, on_lost: Callable[[str], None]) -> None:
        while not self._released.wait(self.poll):
            try:
                self.check()
            except (LeadershipLost, *DATABASE_ERRORS) as error:
                if self._released.is_set():
                    return
                self._lost.set()
                on_lost(short_reason(error))
                return

    def check(self) -> None:
        """Raise :class:`LeadershipLost` (or the connection's error) unless the lock is still held."""
        connection = self._connection
        if connection is None or connection.closed:
            raise LeadershipLost("the lock's connection is closed")
        classid, objid = (LEADER_KEY >> 32) & 0xFFFFFFFF, LEADER_KEY & 0xFFFFFFFF
        row = connection.execute(_HOLDS_LOCK, (classid, objid)).fetchone()
        if not (row and row[0]):
            raise LeadershipLost("the lock's connection no longer holds the lock")

    def release(self) -> None:
        """Give the lead up (closing its connection frees the lock); stand by again with acquire()."""
        self._released.set()
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=self.poll * 4 + 5)
        self._watchdog = None
        self._close()
        self.term = None

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except DATABASE_ERRORS:
                pass


def short_reason(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return redact(text or type(error).__name__)


# -- standbys, as the CLI sees them -----------------------------------------------------------------


@dataclass
class Standby:
    host: str
    pid: int
    started_at: str
    heartbeat_at: str


def standby_name(host: str, pid: int) -> str:
    return f"{STANDBY_PREFIX}{host}:{pid}"


def list_standbys(store: Store, fresh_s: float) -> list[Standby]:
    """The standby daemons whose heartbeat is younger than ``fresh_s`` seconds."""
    limit = (datetime.now(UTC) - timedelta(seconds=fresh_s)).isoformat(timespec="microseconds")
    query = sa.select(kv.c.value, kv.c.updated_at).where(kv.c.name.startswith(STANDBY_PREFIX),
                                                         kv.c.updated_at >= limit)
    with store.engine.connect() as connection:
        rows = connection.execute(query.order_by(kv.c.name)).all()
    standbys = []
    for row in rows:
        value = json.loads(row.value)
        standbys.append(Standby(str(value["host"]), int(value["pid"]), str(value["started_at"]),
                                row.updated_at))
    return standbys


def forget_standby(store: Store, host: str, pid: int) -> None:
    with store.engine.begin() as connection:
        connection.execute(kv.delete().where(kv.c.name == standby_name(host, pid)))


def forget_stale_standbys(store: Store, age_s: float) -> None:
    """Drop the rows of standbys gone for ``age_s`` seconds (killed: they could not drop their own)."""
    limit = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat(timespec="microseconds")
    with store.engine.begin() as connection:
        connection.execute(kv.delete().where(kv.c.name.startswith(STANDBY_PREFIX), kv.c.updated_at < limit))


# -- fires: once per (schedule, planned time), whichever daemon leads ---------------------------------


def planned_key(planned: datetime) -> str:
    """The ledger's text of a planned time: UTC, microseconds (sortable)."""
    return planned.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class Fire:
    """A leader's claim on one planned fire. ``run_id`` None: not this leader's to run (``holder``
    ran it, or is running it, or recorded it ``state``)."""

    schedule_id: str
    planned: datetime
    run_id: str | None
    holder: str | None = None
    state: str | None = None
    taken_from: str | None = None  # the host of a dead leader whose claim this leader took over


@dataclass
class Orphan:
    """A fire a previous leader claimed and never started (``claimed``), or marked ``started`` and
    died before its run started or was queued."""

    schedule_id: str
    planned: datetime
    run_id: str
    host: str
    state: str = "claimed"


class FireLedger:
    """The fires of this leader's lead (its ``term``), in ``kansli_schedule_fires``.

    A fire's states: ``claimed`` (before APScheduler moves its job on), ``started`` (right before its
    run starts), then ``spawned`` (the run's process started here) or ``queued`` (its job added for
    the workers); or at once ``skipped``, ``missed``, ``coalesced`` (into a later fire due at the same
    moment), ``paused``.
    """

    def __init__(self, store: Store, host: str, term: str) -> None:
        self.store = store
        self.host = host
        self.term = term

    def claim(self, schedule_id: str, planned: datetime, run_id: str) -> Fire:
        """Claim the fire for ``run_id``: a new one, or one a previous leader claimed and never started."""
        if self.record(schedule_id, planned, "claimed", run_id):
            return Fire(schedule_id, planned, run_id)
        with self.store.engine.connect() as connection:
            row = connection.execute(sa.select(schedule_fires).where(
                schedule_fires.c.schedule_id == schedule_id,
                schedule_fires.c.planned == planned_key(planned))).one()
        if (row.state == "claimed" and row.term != self.term
                and self._take(schedule_id, row.planned, row.run_id, run_id, "claimed")):
            return Fire(schedule_id, planned, run_id, taken_from=row.host)
        return Fire(schedule_id, planned, None, holder=row.host, state=row.state)

    def record(self, schedule_id: str, planned: datetime, state: str, run_id: str) -> bool:
        """Insert the fire in ``state`` (``claimed``; ``skipped``: it ends at once); False: some leader
        had this fire already. (RETURNING: SQLAlchemy 2 keeps no rowcount of an INSERT.)"""
        values = {"schedule_id": schedule_id, "planned": planned_key(planned), "host": self.host,
                  "term": self.term, "run_id": run_id, "state": state, "fired_at": utcnow()}
        insert = self.store.insert(schedule_fires).on_conflict_do_nothing(
            index_elements=["schedule_id", "planned"]).returning(schedule_fires.c.planned)
        with self.store.engine.begin() as connection:
            return connection.execute(insert, values).first() is not None

    def _take(self, schedule_id: str, planned: str, old_run_id: str, run_id: str, state: str) -> bool:
        """Take over, as ``claimed``, a fire another lead left in ``state`` (its leader died or lost
        the lead before its run started)."""
        with self.store.engine.begin() as connection:
            result = connection.execute(schedule_fires.update().where(
                schedule_fires.c.schedule_id == schedule_id, schedule_fires.c.planned == planned,
                schedule_fires.c.run_id == old_run_id, schedule_fires.c.state == state,
            ).values(host=self.host, term=self.term, run_id=run_id, state="claimed", fired_at=utcnow()))
        return bool(result.rowcount)

    def settle(self, schedule_id: str, planned: datetime, run_id: str, state: str,
               new_run_id: str | None = None, was: str = "claimed") -> bool:
        """Move a fire of ``run_id`` from ``was`` to ``state``; False if it is not in ``was`` for
        ``run_id`` (any more: another leader took it over)."""
        values: dict[str, Any] = {"state": state}
        if new_run_id is not None:
            values["run_id"] = new_run_id
        with self.store.engine.begin() as connection:
            result = connection.execute(schedule_fires.update().where(
                schedule_fires.c.schedule_id == schedule_id,
                schedule_fires.c.planned == planned_key(planned),
                schedule_fires.c.run_id == run_id, schedule_fires.c.state == was,
            ).values(**values))
        return bool(result.rowcount)

    def orphans(self, since: datetime, stuck_before: datetime) -> list[Orphan]:
        """Fires of other leads planned at ``since`` or later: claimed and never started, or marked
        started before ``stuck_before`` and never moved on (a leader that died right then)."""
        stuck = sa.and_(schedule_fires.c.state == "started",
                        schedule_fires.c.fired_at < planned_key(stuck_before))
        query = sa.select(schedule_fires).where(
            sa.or_(schedule_fires.c.state == "claimed", stuck), schedule_fires.c.term != self.term,
            schedule_fires.c.planned >= planned_key(since)).order_by(schedule_fires.c.planned)
        with self.store.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [Orphan(row.schedule_id, datetime.fromisoformat(row.planned), row.run_id, row.host, row.state)
                for row in rows]

    def take_over(self, orphan: Orphan, run_id: str) -> bool:
        return self._take(orphan.schedule_id, planned_key(orphan.planned), orphan.run_id, run_id,
                          orphan.state)

    def prune(self, before: datetime) -> int:
        """Forget fires planned before ``before`` (the run history keeps every run)."""
        with self.store.engine.begin() as connection:
            result = connection.execute(schedule_fires.delete().where(
                schedule_fires.c.planned < planned_key(before)))
        return int(result.rowcount or 0)


def left_a_trace(store: Store, run_id: str) -> bool:
    """Whether a run a leader marked started exists: its record (written by its process), or its job
    waiting for a worker."""
    record = store.get_run(run_id)
    if record is None:
        return False
    if record.status != QUEUED:
        return True
    with store.engine.connect() as connection:
        if connection.execute(sa.text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
            return False
        return bool(connection.execute(sa.text(
            "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE args ->> 'run_id' = :run_id)"),
            {"run_id": run_id}).scalar())


def close_unqueued(store: Store, run_id: str, reason: str) -> None:
    """Close the ``queued`` record of a run whose job was never added (its leader died first)."""
    with store.engine.begin() as connection:
        connection.execute(runs.update().where(runs.c.run_id == run_id, runs.c.status == QUEUED)
                           .values(status="interrupted", finished_at=utcnow(), error=reason))


def fired(store: Store, schedule_id: str, planned: datetime) -> bool:
    """Whether a leader started (or recorded) the fire of ``schedule_id`` planned at ``planned``."""
    query = sa.select(schedule_fires.c.state).where(
        schedule_fires.c.schedule_id == schedule_id, schedule_fires.c.planned == planned_key(planned))
    with store.engine.connect() as connection:
        state = connection.execute(query).scalar()
    return state is not None and state != "claimed"
