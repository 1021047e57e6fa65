"""Per-target limits: at most ``max_sessions`` browser sessions on one target system, over every host.

``[targets.eservice] max_sessions = 3`` in ``kansli.toml`` (or ``KANSLI_TARGETS__ESERVICE__MAX_SESSIONS=3``)
gives the target ``eservice`` three session slots. A session holds one slot while it is open; one that
finds every slot taken waits (``wait_s``, logging "waiting for a free session on target eservice (3 of 3
in use)"), then fails with a :class:`~shared.errors.TargetUnavailableError`.

* On PostgreSQL (several hosts) a slot is a session-level advisory lock
  ``pg_try_advisory_lock(<target's key>, <slot>)``, taken on a database connection of its own (one per
  :class:`TargetLimit` while it holds a slot). PostgreSQL frees the locks when that connection ends,
  so a process that dies (SIGKILL, a host powered off, once its TCP connection is gone) frees its
  slots without anyone cleaning up. A transaction-mode connection pooler in between breaks this, as
  it breaks every session-level lock.
* On SQLite (one host) a slot is a file ``<data dir>/locks/target-<name>-<slot>.lock`` held with an
  OS lock (``flock``), freed by the kernel when the process ends.

``max_sessions = 0`` (the default) and a target with no section: no limit, nothing taken, no cost.
:class:`shared.browser.BrowserPool` takes one slot per browser context (``limit=``); robots call
:func:`target_limit` with the target's settings name, and other code can hold one with
:func:`target_session`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import filelock
from loguru import logger

from shared.errors import TargetUnavailableError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from shared.settings import Settings
    from shared.store import Store

#: How often a waiting session tries the slots again (seconds).
POLL_S = 0.5
#: A session still waiting says so again this often (seconds).
WAIT_LOG_S = 60.0


def target_key(target: str) -> int:
    """The advisory lock class of a target: 31 bits of a hash of its name, the same on every host."""
    digest = hashlib.sha256(f"kansli.target:{target}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class _Slots(Protocol):
    def try_take(self) -> int | None: ...
    def release(self, slot: int) -> None: ...
    def in_use(self) -> int: ...


class _AdvisorySlots:
    """Slots as PostgreSQL session advisory locks, all of this object's on one connection."""

    def __init__(self, engine: Engine, target: str, limit: int) -> None:
        self.engine, self.key, self.limit = engine, target_key(target), limit
        self._connection: Connection | None = None
        self._held: set[int] = set()

    def try_take(self) -> int | None:
        import sqlalchemy as sa

        connection = self._connect()
        for slot in range(self.limit):
            if slot in self._held:  # a session lock is re-entrant: this connection would get it again
                continue
            if connection.execute(sa.text("SELECT pg_try_advisory_lock(:key, :slot)"),
                                  {"key": self.key, "slot": slot}).scalar():
                self._held.add(slot)
                return slot
        self._disconnect_when_idle()
        return None

    def release(self, slot: int) -> None:
        import sqlalchemy as sa

        if slot not in self._held or self._connection is None:
            return
        self._held.discard(slot)
        try:
            self._connection.execute(sa.text("SELECT pg_advisory_unlock(:key, :slot)"),
                                     {"key": self.key, "slot": slot})
        except sa.exc.DBAPIError as error:  # the connection is gone, and its locks with it
            logger.debug("target slot {} not unlocked: {}", slot, str(error.orig).strip())
            self._connection.invalidate()
        self._disconnect_when_idle()

    def in_use(self) -> int:
        """Slots held now by any host (this process included)."""
        import sqlalchemy as sa

        query = sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid::bigint = :key AND objid::bigint < :limit")
        with self.engine.connect() as connection:
            return int(connection.execute(query, {"key": self.key, "limit": self.limit}).scalar() or 0)

    def _connect(self) -> Connection:
        if self._connection is None or self._connection.invalidated:
            if self._connection is not None:
                self._connection.close()
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def _disconnect_when_idle(self) -> None:
        if not self._held and self._connection is not None:
            self._connection.close()
            self._connection = None


class _FileSlots:
    """Slots as OS-locked files in the data dir's ``locks`` folder (one host)."""

    def __init__(self, folder: Path, target: str, limit: int) -> None:
        safe = re.sub(r"[^\w.-]+", "_", target)
        self.folder = folder
        self.paths = [folder / f"target-{safe}-{slot}.lock" for slot in range(limit)]
        self._held: dict[int, filelock.FileLock] = {}

    def try_take(self) -> int | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for slot, path in enumerate(self.paths):
            if slot in self._held:
                continue
            lock = self._lock(path)
            if lock is not None:
                self._held[slot] = lock
                return slot
        return None

    def release(self, slot: int) -> None:
        lock = self._held.pop(slot, None)
        if lock is not None:
            lock.release()

    def in_use(self) -> int:
        """Slots held now by any process of this host (this one included)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        used = len(self._held)
        for slot, path in enumerate(self.paths):
            if slot not in self._held:
                lock = self._lock(path)
                if lock is None:
                    used += 1
                else:
                    lock.release()
        return used

    @staticmethod
    def _lock(path: Path) -> filelock.FileLock | None:
        """``path`` locked, or None when another holds it; the kernel frees it if this process dies."""
        lock = filelock.FileLock(path, thread_local=False, preserve_lock_file=True)
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            return None
        return lock


class TargetLimit:
    """The session slots of one target system: take one per session, release it when done."""

    def __init__(self, target: str, limit: int, wait_s: float, slots: _Slots, poll_s: float = POLL_S) -> None:
        self.target, self.limit, self.wait_s, self.poll_s = target, limit, wait_s, poll_s
        self._slots = slots
        self._lock = threading.Lock()

    def try_take(self) -> int | None:
        """A free slot's number, taken; None when all are in use."""
        with self._lock:
            return self._slots.try_take()

    def release(self, slot: int) -> None:
        with self._lock:
            self._slots.release(slot)

    def in_use(self) -> int:
        """How many slots are held now, over every host (this process's too)."""
        with self._lock:
            return self._slots.in_use()

    def take(self, wait_s: float | None = None) -> int:
        """A slot, waiting for one up to ``wait_s`` (default: the target's ``wait_s``)."""
        waiting = _Waiting(self, self.wait_s if wait_s is None else wait_s)
        while (slot := self.try_take()) is None:
            waiting.check()
            time.sleep(self.poll_s)
        waiting.done()
        return slot

    async def take_async(self, wait_s: float | None = None, *, quiet: bool = False) -> int:
        """:meth:`take` without blocking the event loop (``math.inf``: wait as long as it takes)."""
        waiting = _Waiting(self, self.wait_s if wait_s is None else wait_s, quiet=quiet)
        while (slot := await self.try_take_async()) is None:
            waiting.check()
            await asyncio.sleep(self.poll_s)
        waiting.done()
        return slot

    async def try_take_async(self) -> int | None:
        """:meth:`try_take` in a thread; a slot taken after the caller was cancelled is released."""
        future = asyncio.get_running_loop().run_in_executor(None, self.try_take)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._release_orphan)
            raise

    def _release_orphan(self, future: asyncio.Future[int | None]) -> None:
        if not future.cancelled() and future.exception() is None and future.result() is not None:
            self.release(future.result())  # type: ignore[arg-type]  # not None: checked just above


class _Waiting:
    """The log lines of a session waiting for a slot, and its deadline."""

    def __init__(self, limit: TargetLimit, wait_s: float, quiet: bool = False) -> None:
        self.limit, self.wait_s, self.quiet = limit, wait_s, quiet
        self.started = time.monotonic()
        self.told: float | None = None

    def check(self) -> None:
        now, limit = time.monotonic(), self.limit
        if now - self.started >= self.wait_s:
            raise TargetUnavailableError(
                f"no free session on target {limit.target} within {self.wait_s:g} s ({limit.limit} of "
                f"{limit.limit} in use over every host; [targets.{limit.target}] max_sessions)")
        if self.told is None or now - self.told >= WAIT_LOG_S:
            level = "DEBUG" if self.quiet else "INFO"
            logger.log(level, "waiting for a free session on target {} ({} of {} in use)", limit.target,
                       limit.limit, limit.limit)
            self.told = now

    def done(self) -> None:
        if self.told is not None:
            logger.log("DEBUG" if self.quiet else "INFO", "got a session on target {} after {:.1f} s",
                       self.limit.target, time.monotonic() - self.started)


def target_limit(settings: Settings, store: Store, target: str) -> TargetLimit | None:
    """The session limit of ``target`` (its settings section's name), or None when it has none."""
    limits = settings.targets.get(target)
    if limits is None or limits.max_sessions == 0:
        return None
    slots: _Slots
    if store.dialect == "postgresql":
        slots = _AdvisorySlots(store.engine, target, limits.max_sessions)
    else:
        slots = _FileSlots(settings.locks_dir, target, limits.max_sessions)
    return TargetLimit(target, limits.max_sessions, limits.wait_s, slots)


@contextmanager
def target_session(settings: Settings, store: Store, target: str) -> Iterator[int | None]:
    """Hold one of ``target``'s session slots while open (its number; None: the target has no limit)."""
    limit = target_limit(settings, store, target)
    if limit is None:
        yield None
        return
    slot = limit.take()
    try:
        yield slot
    finally:
        limit.release(slot)


@asynccontextmanager
async def target_session_async(settings: Settings, store: Store, target: str) -> AsyncIterator[int | None]:
    """:func:`target_session` for coroutines."""
    limit = target_limit(settings, store, target)
    if limit is None:
        yield None
        return
    slot = await limit.take_async()
    try:
        yield slot
    finally:
        limit.release(slot)
