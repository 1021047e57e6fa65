"""The run history: :class:`Store` (runs, their items, meta values, the dialect's upsert), its records.

A store opens the database's engine (:mod:`shared.store.engine`) and creates or migrates its
schema (:mod:`shared.store.schema`) under a lock, so two processes opening one database at once
are safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from shared.errors import ConfigError, UsageError
from shared.store.engine import _engine_for
from shared.store.schema import (
    SCHEMA_VERSION,
    _migrate_audit_chains,
    _migrate_to_queues,
    _schema_version,
    kv,
    metadata,
    run_items,
    runs,
)

#: How many candidates an ambiguous run id prefix names.
AMBIGUOUS_SHOWN = 5

ACTIVE_STATUSES = ("running",)
#: A run waiting for a worker (KANSLI_EXECUTION=procrastinate): recorded when its job is added.
QUEUED = "queued"
#: How an item of a run ended (``in_progress`` while it runs).
OUTCOME_NAMES = ("done", "business_error", "app_error", "skipped")
FINAL_STATUSES = (
    "succeeded", "failed", "partial", "skipped", "cancelled", "timeout", "missed", "interrupted",
)


def utcnow() -> str:
    """Now, as the sortable UTC ISO-8601 text every timestamp in the store uses."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class RunRecord:
    """One run as stored."""

    run_id: str
    robot: str
    params: dict[str, Any]
    trigger: str
    actor: str
    status: str
    started_at: str
    finished_at: str | None = None
    pid: int | None = None
    items_total: int = 0
    items_done: int = 0
    items_skipped: int = 0
    items_business_error: int = 0
    items_app_error: int = 0
    error: str | None = None
    run_dir: str | None = None

    @property
    def items_failed(self) -> int:
        return self.items_business_error + self.items_app_error

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ItemRecord:
    """One item's outcome within a run."""

    run_id: str
    key: str
    robot: str
    outcome: str
    attempts: int = 0
    position: int = 0
    output: Any = None
    error: str | None = None
    error_class: str | None = None
    artifacts: list[str] = field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    queue: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Store:
    """The run history database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine_for(url)
        self.dialect = self.engine.dialect.name
        self._upserts: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Any] = {}
        self._migrate()

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        try:
            with self._schema_lock() as connection:
                before = _schema_version(connection)
                metadata.create_all(connection, checkfirst=True)
                if before is not None and before < 2:
                    _migrate_to_queues(connection, self)
                if before is None or before < 3:  # None: also a version-2 table without its version row
                    _migrate_audit_chains(connection)
                if before != SCHEMA_VERSION:
                    self._set_meta(connection, "schema_version", str(SCHEMA_VERSION))
        except sa.exc.DBAPIError as error:
            where = make_url(self.url).render_as_string(hide_password=True)
            reason = " ".join(line.strip() for line in str(error.orig).splitlines() if line.strip())
            raise ConfigError(f"cannot open the run history database {where}: {reason}") from None

    @contextmanager
    def _schema_lock(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(4242001)"))
            elif self.dialect == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield connection

    def _set_meta(self, connection: Connection, name: str, value: str) -> None:
        self._upsert(connection, kv, {"name": name, "value": value, "updated_at": utcnow()}, ["name"])

    def _upsert(
        self, connection: Connection, table: sa.Table, values: dict[str, Any], keys: list[str]
    ) -> None:
        statement = self._upsert_statement(table, tuple(values), tuple(keys))
        connection.execute(statement, values)

    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT for ``table``, which knows ON CONFLICT (SQLite and PostgreSQL alike)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        return insert(table)

    def _upsert_statement(self, table: sa.Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> Any:
        """INSERT ... ON CONFLICT DO UPDATE for these columns, built once (items write two per item)."""
        cache_key = (table.name, columns, keys)
        statement = self._upserts.get(cache_key)
        if statement is None:
            base = self.insert(table)
            update = {name: base.excluded[name] for name in columns if name not in keys}
            statement = base.on_conflict_do_update(index_elements=list(keys), set_=update)
            self._upserts[cache_key] = statement
        return statement

    # -- meta values (audit anchor, scheduler heartbeat, ...) -------------------------------

    def set_meta(self, name: str, value: str) -> None:
        with self.engine.begin() as connection:
            self._set_meta(connection, name, value)

    def get_meta(self, name: str) -> tuple[str, str] | None:
        """The value and its update time, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(kv.c.value, kv.c.updated_at).where(kv.c.name == name)
            ).first()
        return (row.value, row.updated_at) if row else None

    # -- runs ---------------------------------------------------------------------------------

    def create_run(self, record: RunRecord) -> None:
        """Record a new run; a run recorded ``queued`` (its job waited for a worker) starts under its id."""
        values = record.as_dict()
        values["params"] = json.dumps(record.params, ensure_ascii=False, default=str)
        with self.engine.begin() as connection:
            started = connection.execute(runs.update().where(runs.c.run_id == record.run_id,
                                                             runs.c.status == QUEUED).values(**values))
            if started.rowcount == 0:
                connection.execute(runs.insert().values(**values))

    def finish_run(self, record: RunRecord) -> None:
        values = {
            name: getattr(record, name)
            for name in (
                "status", "finished_at", "items_total", "items_done", "items_skipped",
                "items_business_error", "items_app_error", "error",
            )
        }
        with self.engine.begin() as connection:
            connection.execute(runs.update().where(runs.c.run_id == record.run_id).values(**values))

    def get_run(self, run_id: str) -> RunRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        return _run_from_row(row) if row else None

    def find_run(self, prefix: str) -> RunRecord | None:
        """A run by its id or a unique prefix of it; None when nothing matches.

        A prefix that several runs share is a :class:`UsageError` naming the newest of them.
        """
        exact = self.get_run(prefix)
        if exact is not None or not prefix:
            return exact
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(runs)
                .where(runs.c.run_id.startswith(prefix, autoescape=True))
                .order_by(runs.c.run_id.desc())
                .limit(AMBIGUOUS_SHOWN + 1)
            ).all()
        if len(rows) > 1:
            raise UsageError(_ambiguous(prefix, [row.run_id for row in rows], self._count_prefix(prefix)))
        return _run_from_row(rows[0]) if rows else None

    def _count_prefix(self, prefix: str) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(
                sa.select(sa.func.count()).select_from(runs)
                .where(runs.c.run_id.startswith(prefix, autoescape=True))
            ).scalar_one())

    def list_runs(
        self,
        *,
        robot: str | None = None,
        status: str | None = None,
        since: str | None = None,
        trigger: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        query = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        if robot:
            query = query.where(runs.c.robot == robot)
        if status:
            query = query.where(runs.c.status == status)
        if since:
            query = query.where(runs.c.started_at >= since)
        if trigger:
            query = query.where(runs.c.trigger == trigger)
        with self.engine.connect() as connection:
            rows = connection.execute(query.limit(limit)).all()
        return [_run_from_row(row) for row in rows]

    def mark_interrupted(self, run_ids: Sequence[str], reason: str) -> int:
        """Close runs still marked running whose process is gone, with the item counts it recorded."""
        closed = 0
        for run_id in run_ids:
            counts = self.count_items(run_id)
            with self.engine.begin() as connection:
                result = connection.execute(
                    runs.update()
                    .where(runs.c.run_id == run_id, runs.c.status == "running")
                    .values(status="interrupted", finished_at=utcnow(), error=reason,
                            **item_counts(counts))
                )
            closed += int(result.rowcount or 0)
        return closed

    # -- items of a run --------------------------------------------------------------------------

    def record_item(self, item: ItemRecord, connection: Connection | None = None) -> None:
        """Write (insert or update) one item of a run; inside ``connection``'s transaction if given."""
        values = item.as_dict()
        values["output"] = _dumps(item.output)
        values["artifacts"] = _dumps(item.artifacts)
        if connection is not None:
            self._upsert(connection, run_items, values, ["run_id", "key"])
            return
        with self.engine.begin() as own:
            self._upsert(own, run_items, values, ["run_id", "key"])

    def record_items(self, items: Iterable[ItemRecord]) -> None:
        """Write several new items of a run at once (items it did not need to do)."""
        rows = []
        for item in items:
            values = item.as_dict()
            values["output"] = _dumps(item.output)
            values["artifacts"] = _dumps(item.artifacts)
            rows.append(values)
        if rows:
            with self.engine.begin() as connection:
                connection.execute(run_items.insert(), rows)

    def list_items(self, run_id: str) -> list[ItemRecord]:
        query = (
            sa.select(run_items)
            .where(run_items.c.run_id == run_id)
            .order_by(run_items.c.position, run_items.c.key)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_item_from_row(row) for row in rows]


    def count_items(self, run_id: str) -> dict[str, int]:
        """A run's items by outcome, as its process recorded them (true after a crash too)."""
        query = (
            sa.select(run_items.c.outcome, sa.func.count())
            .where(run_items.c.run_id == run_id)
            .group_by(run_items.c.outcome)
        )
        with self.engine.connect() as connection:
            return {str(outcome): int(count) for outcome, count in connection.execute(query).all()}


def item_counts(counts: dict[str, int]) -> dict[str, int]:
    """A run record's ``items_*`` columns from its items by outcome."""
    return {
        "items_total": sum(counts.get(name, 0) for name in OUTCOME_NAMES),
        "items_done": counts.get("done", 0), "items_skipped": counts.get("skipped", 0),
        "items_business_error": counts.get("business_error", 0),
        "items_app_error": counts.get("app_error", 0),
    }


def _ambiguous(prefix: str, run_ids: list[str], count: int) -> str:
    shown = ", ".join(run_ids[:AMBIGUOUS_SHOWN])
    more = f", and {count - AMBIGUOUS_SHOWN} more" if count > AMBIGUOUS_SHOWN else ""
    return f"run id prefix {prefix!r} is ambiguous: {count} runs match ({shown}{more}); give more of the id"


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _run_from_row(row: sa.Row[Any]) -> RunRecord:
    values = dict(row._mapping)
    values["params"] = json.loads(values["params"] or "{}")
    return RunRecord(**values)


def _item_from_row(row: sa.Row[Any]) -> ItemRecord:
    values = dict(row._mapping)
    values["output"] = _loads(values["output"])
    values["artifacts"] = _loads(values["artifacts"]) or []
    return ItemRecord(**values)


def open_store(url: str | None = None) -> Store:
    """The store at ``url``, or at the settings' database URL."""
    if url is None:
        from shared.settings import get_settings

        url = get_settings().effective_database_url
    return Store(url)
