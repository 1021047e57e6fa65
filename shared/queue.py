"""Work queues: an item is identified by its queue and its business key, never by its file.

A queue row holds the latest state of one key: ``pending`` (to do), ``in_progress`` (a run has it),
``done``, ``business_error`` (its data is bad: it waits for corrected data or an operator) or
``app_error`` (the target failed: taken again after ``not_before``, until ``max_attempts``). A key
that is ``done`` is never done again by any later run, whatever file, folder, sort order or host it
comes from, unless an operator retries or forgets it, or its data changed and the robot asked for
``on_change="redo"`` (a new *version* of the item).

Producers add keys (a register read by a robot, or :meth:`WorkQueue.enqueue` from another robot);
consumers take pending keys with :meth:`WorkQueue.claim`, which is safe against other consumers:
the status check and the write are one statement, so each item is taken by exactly one run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from shared.store import Store, queue_items, runs, utcnow

STATUSES = ("pending", "in_progress", "done", "business_error", "app_error")
#: Keys are looked up and added this many at a time (SQL parameter limits, memory).
CHUNK = 500
_STATE_UPDATES: dict[tuple[str, ...], Any] = {}


@dataclass
class QueueItem:
    """One key of one queue, as stored."""

    queue: str
    key: str
    status: str
    version: int = 1
    attempts: int = 0
    data: Any = None
    data_hash: str | None = None
    source: str | None = None
    output: Any = None
    error: str | None = None
    error_class: str | None = None
    not_before: str | None = None
    run_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def payload(data: Any) -> Any:
    """What a queue stores of an item's data: a register row's cells, a model's fields, or ``data``."""
    values = getattr(data, "values", None)
    if isinstance(values, dict) and hasattr(data, "number"):  # shared.excel.Row
        return values
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True)
    return data


def fingerprint(data: Any) -> str:
    """A hash of the data an item is done with: a valid row's model fields, else its stored payload.

    Only what the robot reads counts: a column added to the register, or cells the model does not
    use, do not make a done key "changed".
    """
    model = getattr(data, "model", None)
    basis = model.model_dump(mode="json") if isinstance(model, BaseModel) else payload(data)
    text = json.dumps(basis, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _item(row: Any) -> QueueItem:
    values = dict(row._mapping)
    values["data"], values["output"] = _loads(values["data"]), _loads(values["output"])
    return QueueItem(**values)


def retry_at(attempts_per_run: int, attempts: int, first_s: float, max_s: float) -> str:
    """When a failed item may be taken again: ``first_s`` after its first failed run, doubling."""
    failed_runs = max(1, -(-attempts // max(1, attempts_per_run)))
    delay = min(max_s, first_s * 2 ** (failed_runs - 1))
    return (datetime.now(UTC) + timedelta(seconds=delay)).isoformat(timespec="microseconds")


class WorkQueue:
    """One named queue in the run history database."""

    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, name
        self._where = queue_items.c.queue == name

    # -- reading ----------------------------------------------------------------------------------

    def lookup(self, keys: Sequence[str]) -> dict[str, QueueItem]:
        """The stored state of each of ``keys`` that the queue knows."""
        found: dict[str, QueueItem] = {}
        with self.store.engine.connect() as connection:
            for start in range(0, len(keys), CHUNK):
                chunk = list(keys[start:start + CHUNK])
                query = sa.select(queue_items).where(self._where, queue_items.c.key.in_(chunk))
                found.update((row.key, _item(row)) for row in connection.execute(query))
        return found

    def get(self, key: str) -> QueueItem | None:
        return self.lookup([key]).get(key)

    def items(
        self, *, status: str | None = None, key: str | None = None, limit: int = 100
    ) -> list[QueueItem]:
        query = sa.select(queue_items).where(self._where).order_by(queue_items.c.created_at,
                                                                     queue_items.c.key)
        if status:
            query = query.where(queue_items.c.status == status)
        if key:
            query = query.where(queue_items.c.key == key)
        with self.store.engine.connect() as connection:
            return [_item(row) for row in connection.execute(query.limit(limit))]

    def counts(self) -> dict[str, int]:
        query = (sa.select(queue_items.c.status, sa.func.count()).where(self._where)
                 .group_by(queue_items.c.status))
        with self.store.engine.connect() as connection:
            return {str(status): int(count) for status, count in connection.execute(query)}

    def ready_count(self, max_attempts: int) -> int:
        """How many items a consumer could take now."""
        query = sa.select(sa.func.count()).where(self._claimable(max_attempts, utcnow()))
        with self.store.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    # -- producing --------------------------------------------------------------------------------

    def add(self, entries: Iterable[dict[str, Any]], run_id: str | None) -> int:
        """Insert new keys as ``pending`` (keys already there are left as they are); returns how many.

        ``run_id`` is the producing run: named in ``source`` when the entry has none (the item's
        ``run_id`` is the last run that worked on it, and a run never takes an item twice).
        """
        now = utcnow()
        rows = [{"queue": self.name, "status": "pending", "version": 1, "attempts": 0, "run_id": None,
                 "created_at": now, "updated_at": now, "source": f"run {run_id}" if run_id else None,
                 **{name: value for name, value in entry.items() if value is not None or name != "source"},
                 "data": _dumps(entry.get("data"))} for entry in entries]
        if not rows:
            return 0
        insert = self.store.insert(queue_items)
        with self.store.engine.begin() as connection:
            result = connection.execute(insert.on_conflict_do_nothing(index_elements=["queue", "key"]),
                                        rows)
        return len(rows) if result.rowcount is None or result.rowcount < 0 else int(result.rowcount)

    def enqueue(self, key: str, data: Any, *, source: str | None = None, run_id: str | None = None,
                on_change: str = "skip") -> str:
        """Add ``key`` with ``data``; returns ``added``, ``known``, ``updated`` or ``changed``.

        A key not yet done whose data changed gets the new data (``updated``). A done key whose
        data changed is ``changed`` and left done, unless ``on_change="redo"``: then it becomes a
        new version, pending again (``updated``).
        """
        digest = fingerprint(data)
        known = self.get(key)
        if known is None:
            added = self.add([{"key": key, "data": payload(data), "data_hash": digest,
                               "source": source}], run_id)
            return "added" if added else "known"
        if known.data_hash in (None, digest):
            return "known"
        if known.status == "done" and on_change != "redo":
            return "changed"
        values: dict[str, Any] = {"data": payload(data), "data_hash": digest, "source": source}
        if known.status == "done":
            values.update(status="pending", version=known.version + 1, attempts=0, not_before=None)
        elif known.status == "business_error":
            values.update(status="pending", attempts=0)
        self.update(key, **values)
        return "updated"

    def enqueue_many(self, entries: Iterable[tuple[str, Any]], *, source: str | None = None,
                     run_id: str | None = None, on_change: str = "skip") -> dict[str, int]:
        """:meth:`enqueue` for many ``(key, data)`` at once; counts of what happened to them."""
        counts = {"added": 0, "known": 0, "updated": 0, "changed": 0}
        pending = iter(entries)
        while chunk := [entry for _, entry in zip(range(CHUNK), pending, strict=False)]:
            known = self.lookup([key for key, _ in chunk])
            fresh = [(key, data) for key, data in chunk if key not in known]
            counts["added"] += self.add(({"key": key, "data": payload(data), "data_hash": fingerprint(data),
                                          "source": source} for key, data in fresh), run_id)
            for key, data in chunk:
                if key in known:
                    counts[self.enqueue(key, data, source=source, run_id=run_id, on_change=on_change)] += 1
        return counts

    # -- consuming --------------------------------------------------------------------------------

    def _claimable(self, max_attempts: int, now: str) -> Any:
        running = sa.select(runs.c.run_id).where(runs.c.status == "running")
        return sa.and_(
            self._where,
            sa.or_(
                queue_items.c.status == "pending",
                sa.and_(queue_items.c.status == "app_error", queue_items.c.attempts < max_attempts),
                # taken by a run that has ended without finishing it (killed): reconciled first
                sa.and_(queue_items.c.status == "in_progress",
                        sa.or_(queue_items.c.run_id.is_(None), queue_items.c.run_id.not_in(running))),
            ),
            sa.or_(queue_items.c.not_before.is_(None), queue_items.c.not_before <= now),
        )

    def claim(self, run_id: str, limit: int, max_attempts: int) -> list[QueueItem]:
        """Take up to ``limit`` items for ``run_id`` (oldest first): each goes to one run only.

        A run does not take again an item it already worked on (it failed, or was given back).
        """
        now = utcnow()
        condition = sa.and_(self._claimable(max_attempts, now),
                            sa.or_(queue_items.c.run_id.is_(None), queue_items.c.run_id != run_id))
        oldest = (sa.select(queue_items.c.key).where(condition)
                  .order_by(queue_items.c.created_at, queue_items.c.key).limit(limit))
        with self.store.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # rows another run is claiming right now are passed over, not waited for and then
                # found taken (which would leave this run nothing while items remain); locked first,
                # in a statement of their own (SKIP LOCKED in the UPDATE's subquery may be run again
                # for each row, taking more than ``limit``)
                keys = connection.execute(oldest.with_for_update(skip_locked=True)).scalars().all()
                chosen = queue_items.c.key.in_(keys)
            else:  # SQLite: one writer at a time, the claim is one statement
                keys, chosen = [None], queue_items.c.key.in_(oldest.scalar_subquery())
            statement = (
                queue_items.update().where(condition, chosen)
                .values(status="in_progress", run_id=run_id, attempts=queue_items.c.attempts + 1,
                        updated_at=now)
                .returning(*queue_items.c)
            )
            claimed = [_item(row) for row in connection.execute(statement)] if keys else []
        return sorted(claimed, key=lambda item: (item.created_at or "", item.key))

    def release(self, keys: Sequence[str], run_id: str) -> None:
        """Give back items a run took and never started (it stopped early)."""
        if not keys:
            return
        with self.store.engine.begin() as connection:
            connection.execute(
                queue_items.update()
                .where(self._where, queue_items.c.key.in_(list(keys)),
                       queue_items.c.run_id == run_id, queue_items.c.status == "in_progress")
                .values(status=sa.case((queue_items.c.attempts > 1, "app_error"), else_="pending"),
                        attempts=queue_items.c.attempts - 1, updated_at=utcnow())
            )

    # -- writing state ------------------------------------------------------------------------------

    def update(self, key: str, connection: Connection | None = None, **values: Any) -> None:
        """Set columns of one key (``data`` and ``output`` are JSON-encoded here)."""
        for name in ("data", "output"):
            if name in values:
                values[name] = _dumps(values[name])
        statement = (queue_items.update().where(self._where, queue_items.c.key == key)
                     .values(updated_at=utcnow(), **values))
        if connection is not None:
            connection.execute(statement)
            return
        with self.store.engine.begin() as own:
            own.execute(statement)

    def set_state(self, connection: Connection, key: str, state: dict[str, Any]) -> None:
        """The hot path of an item's attempt: one prepared UPDATE for a fixed set of columns.

        ``state`` holds exactly the columns of :data:`BEGIN_COLUMNS` or :data:`FINISH_COLUMNS`
        (``output`` JSON-encoded here); built once, a statement costs no SQL construction per item.
        """
        columns = tuple(state)
        statement = _STATE_UPDATES.get(columns)
        if statement is None:
            assignments = ", ".join(f"{name} = :{name}" for name in columns)
            statement = sa.text(f"UPDATE {queue_items.name} SET {assignments}, updated_at = :updated_at "
                                "WHERE queue = :queue AND key = :key")
            _STATE_UPDATES[columns] = statement
        values = {**state, "updated_at": utcnow(), "queue": self.name, "key": key}
        if "output" in values:
            values["output"] = _dumps(values["output"])
        connection.execute(statement, values)

    def adopt_hashes(self, hashes: dict[str, str]) -> None:
        """Store the data hash of keys that had none (migrated from the version-1 ledger)."""
        if not hashes:
            return
        statement = (queue_items.update()
                     .where(self._where, queue_items.c.key == sa.bindparam("k"),
                            queue_items.c.data_hash.is_(None))
                     .values(data_hash=sa.bindparam("h")))
        with self.store.engine.begin() as connection:
            connection.execute(statement, [{"k": key, "h": digest} for key, digest in hashes.items()])

    # -- operators ----------------------------------------------------------------------------------

    def retry(self, keys: Sequence[str] | None = None) -> list[str]:
        """Make failed keys pending again, with fresh attempts: ``keys``, or every failed one.

        A done key is not touched (only :meth:`forget` makes it doable again).
        """
        where = sa.and_(self._where, queue_items.c.status.in_(("business_error", "app_error")))
        if keys:
            where = sa.and_(where, queue_items.c.key.in_(list(keys)))
        with self.store.engine.begin() as connection:
            rows = connection.execute(
                queue_items.update().where(where)
                .values(status="pending", attempts=0, not_before=None, updated_at=utcnow())
                .returning(queue_items.c.key)
            ).all()
        return sorted(str(row.key) for row in rows)

    def forget(self, key: str) -> bool:
        """Delete a key: the next run that meets it does it as new. The only undo of ``done``."""
        with self.store.engine.begin() as connection:
            result = connection.execute(queue_items.delete().where(self._where, queue_items.c.key == key))
        return bool(result.rowcount)


def list_queues(store: Store) -> dict[str, dict[str, int]]:
    """Every queue with its item counts by status."""
    query = (sa.select(queue_items.c.queue, queue_items.c.status, sa.func.count())
             .group_by(queue_items.c.queue, queue_items.c.status))
    found: dict[str, dict[str, int]] = {}
    with store.engine.connect() as connection:
        for queue, status, count in connection.execute(query):
            found.setdefault(str(queue), {})[str(status)] = int(count)
    return dict(sorted(found.items()))
