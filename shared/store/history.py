"""Run history: runs, their items, and the work queues that make every item happen once.

SQLAlchemy Core over SQLite (WAL, the embedded default) or PostgreSQL (``KANSLI_DATABASE_URL``); the
same statements serve both. The schema is created or migrated when a store opens, under a lock, so
two processes opening one database at once are safe.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from shared.errors import ConfigError, UsageError

SCHEMA_VERSION = 3
#: Version 2 (work queues): items keyed by (queue, business key) in ``kansli_queue_items``; the
#: version-1 ledger ``kansli_item_ledger`` (keyed by robot and input file) is copied into it once
#: and then left unused. Version 3 (one audit chain per host): ``kansli_audit_checkpoints`` is keyed
#: by (chain, seq); the checkpoints of version 2 belong to the chain without a host (``chain`` '').

metadata = sa.MetaData()

runs = sa.Table(
    "kansli_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("robot", sa.String(128), nullable=False, index=True),
    sa.Column("params", sa.Text, nullable=False, default="{}"),
    sa.Column("trigger", sa.String(128), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("pid", sa.Integer),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("started_at", sa.String(40), nullable=False, index=True),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("items_total", sa.Integer, nullable=False, default=0),
    sa.Column("items_done", sa.Integer, nullable=False, default=0),
    sa.Column("items_skipped", sa.Integer, nullable=False, default=0),
    sa.Column("items_business_error", sa.Integer, nullable=False, default=0),
    sa.Column("items_app_error", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("run_dir", sa.Text),
)

run_items = sa.Table(
    "kansli_run_items",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("robot", sa.String(128), nullable=False),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("output", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("error_class", sa.String(128)),
    sa.Column("artifacts", sa.Text),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("queue", sa.String(128)),
    sa.Column("note", sa.Text),
)

#: A finished run's files (``log.jsonl``, ``log.txt``, ``report.html``), gzip-compressed, stored at its
#: end on PostgreSQL so any host can show them (shared.run_files); ``size``: bytes before compression.
run_files = sa.Table(
    "kansli_run_files",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("stored_at", sa.String(40), nullable=False, index=True),
)

#: The version-1 item ledger (robot, input batch, key): read once by the migration to version 2.
legacy_ledger = sa.Table(
    "kansli_item_ledger",
    sa.MetaData(),  # not created in new databases
    sa.Column("robot", sa.String(128), primary_key=True),
    sa.Column("batch", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("output", sa.Text),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

#: Work queues: one row per (queue, business key), whatever file, folder or run it came from.
queue_items = sa.Table(
    "kansli_queue_items",
    metadata,
    sa.Column("queue", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("data", sa.Text),
    sa.Column("data_hash", sa.String(64)),
    sa.Column("source", sa.Text),
    sa.Column("output", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("error_class", sa.String(128)),
    sa.Column("not_before", sa.String(40)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Index("ix_kansli_queue_items_status", "queue", "status"),
)

kv = sa.Table(
    "kansli_meta",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

#: The robot hosts (``kansli worker``, KANSLI_EXECUTION=procrastinate): what each serves, its heartbeat.
workers = sa.Table(
    "kansli_workers",
    metadata,
    sa.Column("worker", sa.String(160), primary_key=True),  # <host>:<pid>
    sa.Column("host", sa.String(64), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("robots", sa.Text, nullable=False),  # JSON list
    sa.Column("tags", sa.Text, nullable=False),  # JSON list
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("current_runs", sa.Text, nullable=False),  # JSON list of run ids
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("heartbeat_at", sa.String(40), nullable=False),
    sa.Column("stopped_at", sa.String(40)),
)

#: Runs queued as procrastinate jobs: their job, and the worker (host) that took them.
cluster_runs = sa.Table(
    "kansli_cluster_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.BigInteger),
    sa.Column("queue", sa.String(160), nullable=False),
    sa.Column("worker", sa.String(160), index=True),
    sa.Column("host", sa.String(64)),
    sa.Column("queued_at", sa.String(40), nullable=False),
    sa.Column("started_at", sa.String(40)),
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


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _engine_for(url: str) -> Engine:
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
        return engine


def _create_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as error:
        raise ConfigError(f"invalid setting KANSLI_DATABASE_URL: {error}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ConfigError(f"cannot create the database folder {folder}: {error.strerror}; "
                                  "check KANSLI_DATA_DIR / KANSLI_DATABASE_URL") from None
        engine = _new_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    return _new_engine(url, pool_pre_ping=True)


def _new_engine(url: str, **options: Any) -> Engine:
    try:
        return sa.create_engine(url, **options)
    except (sa.exc.ArgumentError, ImportError) as error:  # an unknown dialect, a driver not installed
        where = make_url(url).render_as_string(hide_password=True)
        raise ConfigError(f"invalid setting KANSLI_DATABASE_URL {where}: {error}") from None


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


def _schema_version(connection: Connection) -> int | None:
    """The stored schema version, or None for a new database."""
    if not sa.inspect(connection).has_table(kv.name):
        return None
    row = connection.execute(sa.select(kv.c.value).where(kv.c.name == "schema_version")).first()
    return int(row.value) if row else None


def _migrate_to_queues(connection: Connection, store: Store) -> None:
    """Version 1 -> 2: run items get ``queue`` and ``note``; the ledger's items move into queues.

    The ledger kept an item per robot *and input file*; a queue keeps it per business key. Of a key
    seen in several inputs, the ``done`` entry wins (a key done once is done), else the latest.
    """
    have = {column["name"] for column in sa.inspect(connection).get_columns(run_items.name)}
    for name, kind in (("queue", "VARCHAR(128)"), ("note", "TEXT")):
        if name not in have:
            connection.exec_driver_sql(f"ALTER TABLE {run_items.name} ADD COLUMN {name} {kind}")
    if not sa.inspect(connection).has_table(legacy_ledger.name):
        return
    best: dict[tuple[str, str], Any] = {}
    for row in connection.execute(sa.select(legacy_ledger).order_by(legacy_ledger.c.updated_at)):
        known = best.get((row.robot, row.key))
        if known is None or row.status == "done" or known.status != "done":
            best[(row.robot, row.key)] = row
    rows = [
        {"queue": row.robot, "key": row.key, "status": row.status, "version": 1,
         "attempts": row.attempts, "output": row.output, "run_id": row.run_id,
         "source": "version-1 ledger", "created_at": row.updated_at, "updated_at": row.updated_at}
        for row in best.values()
    ]
    if rows:  # a key already in its queue (migrated before, or done by version 2) is left as it is
        connection.execute(
            store.insert(queue_items).on_conflict_do_nothing(index_elements=["queue", "key"]), rows)


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


# -- scheduler ------------------------------------------------------------------------------------
# Tables and queries of the scheduler daemon (shared.scheduler) and its operator CLI
# (shared.cli_schedules). The APScheduler job store keeps its own table, kansli_scheduler_jobs.

schedule_state = sa.Table(
    "kansli_schedule_state",
    metadata,
    sa.Column("schedule_id", sa.String(128), primary_key=True),
    sa.Column("robot", sa.String(128)),
    sa.Column("fingerprint", sa.String(64)),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("paused_by", sa.String(256)),
    sa.Column("paused_at", sa.String(40)),
    sa.Column("synced_at", sa.String(40)),
)

schedule_requests = sa.Table(
    "kansli_schedule_requests",
    metadata,
    sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("schedule_id", sa.String(128), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("requested_at", sa.String(40), nullable=False),
    sa.Column("handled_at", sa.String(40), index=True),
    sa.Column("result", sa.Text),
)

#: One row per planned fire of a time schedule, whichever daemon led: the (schedule, planned time)
#: key lets a fire happen once across leaders (shared.leader.FireLedger).
schedule_fires = sa.Table(
    "kansli_schedule_fires",
    metadata,
    sa.Column("schedule_id", sa.String(128), primary_key=True),
    sa.Column("planned", sa.String(40), primary_key=True),
    sa.Column("host", sa.String(64), nullable=False),
    sa.Column("term", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("fired_at", sa.String(40), nullable=False, index=True),
)

operator_actions = sa.Table(
    "kansli_operator_actions",
    metadata,
    sa.Column("action_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False, index=True),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("schedule_id", sa.String(128), index=True),
    sa.Column("details", sa.Text, nullable=False, default="{}"),
)


@dataclass
class ScheduleState:
    """What the database knows of one schedule: the synced definition and whether it is paused."""

    schedule_id: str
    robot: str | None
    fingerprint: str | None
    paused: bool
    paused_by: str | None
    paused_at: str | None
    synced_at: str | None


@dataclass
class ScheduleRequest:
    """An operator's request (trigger, pause, resume) for the running daemon."""

    request_id: int
    schedule_id: str
    action: str
    actor: str
    requested_at: str
    handled_at: str | None
    result: str | None


@dataclass
class OperatorAction:
    """One recorded operator action or daemon event."""

    action_id: int
    at: str
    actor: str
    action: str
    schedule_id: str | None
    details: dict[str, Any]


def load_schedule_states(store: Store) -> dict[str, ScheduleState]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(schedule_state)).all()
    return {row.schedule_id: ScheduleState(**dict(row._mapping)) for row in rows}


def save_schedule_states(store: Store, states: Sequence[tuple[str, str, str]]) -> None:
    """Upsert (schedule id, robot, fingerprint) after a sync; the paused flag is kept."""
    now = utcnow()
    with store.engine.begin() as connection:
        for schedule_id, robot, fingerprint in states:
            values = {"schedule_id": schedule_id, "robot": robot, "fingerprint": fingerprint,
                      "synced_at": now}
            store._upsert(connection, schedule_state, values, ["schedule_id"])


def delete_schedule_states(store: Store, schedule_ids: Sequence[str]) -> None:
    if schedule_ids:
        with store.engine.begin() as connection:
            connection.execute(
                schedule_state.delete().where(schedule_state.c.schedule_id.in_(list(schedule_ids)))
            )


def set_schedule_paused(store: Store, schedule_id: str, paused: bool, actor: str) -> None:
    values = {"schedule_id": schedule_id, "paused": paused, "paused_by": actor if paused else None,
              "paused_at": utcnow() if paused else None}
    with store.engine.begin() as connection:
        store._upsert(connection, schedule_state, values, ["schedule_id"])


def add_schedule_request(store: Store, schedule_id: str, action: str, actor: str) -> int:
    values = {"schedule_id": schedule_id, "action": action, "actor": actor, "requested_at": utcnow()}
    with store.engine.begin() as connection:
        result = connection.execute(schedule_requests.insert().values(**values))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def pending_schedule_requests(store: Store) -> list[ScheduleRequest]:
    query = (
        sa.select(schedule_requests)
        .where(schedule_requests.c.handled_at.is_(None))
        .order_by(schedule_requests.c.request_id)
    )
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    return [ScheduleRequest(**dict(row._mapping)) for row in rows]


def get_schedule_request(store: Store, request_id: int) -> ScheduleRequest | None:
    query = sa.select(schedule_requests).where(schedule_requests.c.request_id == request_id)
    with store.engine.connect() as connection:
        row = connection.execute(query).first()
    return ScheduleRequest(**dict(row._mapping)) if row else None


def finish_schedule_request(store: Store, request_id: int, result: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            schedule_requests.update()
            .where(schedule_requests.c.request_id == request_id)
            .values(handled_at=utcnow(), result=result)
        )


def add_operator_action(
    store: Store, actor: str, action: str, schedule_id: str | None, details: dict[str, Any]
) -> None:
    values = {"at": utcnow(), "actor": actor, "action": action, "schedule_id": schedule_id,
              "details": json.dumps(details, ensure_ascii=False, default=str)}
    with store.engine.begin() as connection:
        connection.execute(operator_actions.insert().values(**values))


def list_operator_actions(
    store: Store, schedule_id: str | None = None, limit: int = 50
) -> list[OperatorAction]:
    query = sa.select(operator_actions).order_by(operator_actions.c.action_id.desc()).limit(limit)
    if schedule_id is not None:
        query = query.where(operator_actions.c.schedule_id == schedule_id)
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    actions = []
    for row in rows:
        values = dict(row._mapping)
        values["details"] = json.loads(values["details"] or "{}")
        actions.append(OperatorAction(**values))
    return actions


def claim_meta_lease(
    store: Store, name: str, owner: str, holder_alive: Callable[[str, str], bool]
) -> tuple[str, str] | None:
    """Take the lease ``name`` for ``owner`` unless a live holder has it (then return its row).

    ``holder_alive(value, updated_at)`` judges the current holder. Check and write are one
    serialised transaction, so two daemons starting at once cannot both win.
    """
    with store._schema_lock() as connection:
        row = connection.execute(
            sa.select(kv.c.value, kv.c.updated_at).where(kv.c.name == name)
        ).first()
        if row is not None and row.value != owner and holder_alive(row.value, row.updated_at):
            return (row.value, row.updated_at)
        store._set_meta(connection, name, owner)
    return None


def renew_meta_lease(store: Store, name: str, owner: str) -> bool:
    """Refresh the lease's time stamp (the heartbeat); False when ``owner`` no longer holds it."""
    with store.engine.begin() as connection:
        result = connection.execute(
            kv.update().where(kv.c.name == name, kv.c.value == owner).values(updated_at=utcnow())
        )
    return bool(result.rowcount)


def release_meta_lease(store: Store, name: str, owner: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(kv.delete().where(kv.c.name == name, kv.c.value == owner))


# -- audit anchor ---------------------------------------------------------------------------------
# The audit trail's head and checkpoints (shared.audit.AuditAnchor): evidence kept away from the
# audit files, so that a cut or re-hashed trail no longer matches what was recorded when it was written.
# One chain per host (``chain``: its host id; '' or None: the chain of an installation without host ids).

AUDIT_HEAD = "audit_head"

audit_checkpoints = sa.Table(
    "kansli_audit_checkpoints",
    metadata,
    sa.Column("chain", sa.String(64), nullable=False, server_default=""),
    sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("recorded_at", sa.String(40), nullable=False),
    # named, so that the version-2 table's primary key (renamed away by the migration) does not clash
    sa.PrimaryKeyConstraint("chain", "seq", name="kansli_audit_checkpoints_chain_pkey"),
)


def _migrate_audit_chains(connection: Connection) -> None:
    """Version 2 -> 3: the checkpoints get ``chain`` ('' for the rows there are) in their key.

    The table is rebuilt (SQLite cannot change a primary key in place), in the migration's
    transaction; a table that already has ``chain`` is left alone."""
    inspector = sa.inspect(connection)
    name = audit_checkpoints.name
    if not inspector.has_table(name) or "chain" in {c["name"] for c in inspector.get_columns(name)}:
        return
    connection.exec_driver_sql(f"ALTER TABLE {name} RENAME TO {name}_v2")
    audit_checkpoints.create(connection)
    connection.exec_driver_sql(
        f"INSERT INTO {name} (chain, seq, hash, note, recorded_at) "
        f"SELECT '', seq, hash, note, recorded_at FROM {name}_v2")
    connection.exec_driver_sql(f"DROP TABLE {name}_v2")


def audit_head_name(chain: str | None) -> str:
    """The ``kansli_meta`` row of a chain's head: ``audit_head``, or ``audit_head:<host>``."""
    return f"{AUDIT_HEAD}:{chain}" if chain else AUDIT_HEAD


def save_audit_anchor(
    store: Store,
    head: tuple[int, str],
    checkpoints: Sequence[tuple[int, str, str | None]],
    *,
    chain: str | None = None,
) -> None:
    """Set the head and add checkpoints ``(seq, hash, note)`` in one short transaction.

    Checkpoints are insert-only: one already recorded for a seq is never replaced.
    """
    with store.engine.begin() as connection:
        store._set_meta(connection, audit_head_name(chain), _head_value(head))
        if checkpoints:
            connection.execute(_insert_new_checkpoints(store), _checkpoint_rows(chain, checkpoints))


def _checkpoint_rows(
    chain: str | None, checkpoints: Sequence[tuple[int, str, str | None]]
) -> list[dict[str, Any]]:
    now = utcnow()
    return [{"chain": chain or "", "seq": seq, "hash": digest, "note": note, "recorded_at": now}
            for seq, digest, note in checkpoints]


_advance_head = (
    kv.update()
    .where(kv.c.name == sa.bindparam("head_name"), kv.c.value == sa.bindparam("expected_value"))
    .values(value=sa.bindparam("new_value"), updated_at=sa.bindparam("new_time"))
)


def _head_value(head: tuple[int, str]) -> str:
    return json.dumps({"seq": head[0], "hash": head[1]})


def advance_audit_head(
    store: Store,
    expected: tuple[int, str],
    head: tuple[int, str],
    checkpoints: Sequence[tuple[int, str, str | None]],
    *,
    chain: str | None = None,
) -> bool:
    """Move the head from ``expected`` to ``head`` and add checkpoints, in one transaction; False
    (nothing written) when the stored head is not ``expected``. One UPDATE in the common case."""
    values = {"head_name": audit_head_name(chain), "expected_value": _head_value(expected),
              "new_value": _head_value(head), "new_time": utcnow()}
    if not checkpoints:  # all but one batch in a hundred: the bare statement
        return _raw_rowcount(store, _advance_head, values) == 1
    with store.engine.begin() as connection:
        if connection.execute(_advance_head, values).rowcount != 1:
            return False
        connection.execute(_insert_new_checkpoints(store), _checkpoint_rows(chain, checkpoints))
    return True


_raw_statements: dict[tuple[str, int], tuple[str, tuple[str, ...] | None]] = {}


def _raw_rowcount(store: Store, statement: Any, values: dict[str, Any]) -> int:
    """One statement on a pooled DBAPI connection, committed: a tenth of SQLAlchemy Core's cost per
    call (every audit append runs one). Its rowcount; DBAPI errors become SQLAlchemy errors."""
    cache_key = (store.dialect, id(statement))
    found = _raw_statements.get(cache_key)
    if found is None:
        compiled = statement.compile(dialect=store.engine.dialect)
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        found = _raw_statements[cache_key] = (str(compiled), order)
    sql, order = found
    params: Any = tuple(values[name] for name in order) if order is not None else values
    connection = store.engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, params)
            count = int(cursor.rowcount)
        finally:
            cursor.close()
        connection.commit()
    except store.engine.dialect.loaded_dbapi.Error as error:
        dbapi_error = store.engine.dialect.loaded_dbapi.Error
        raise sa.exc.DBAPIError.instance(sql, params, error, dbapi_error) from None
    finally:
        connection.close()  # back to the pool, rolled back if not committed
    return count


def _insert_new_checkpoints(store: Store) -> Any:
    return store.insert(audit_checkpoints).on_conflict_do_nothing(index_elements=["chain", "seq"])


def load_audit_head(store: Store, *, chain: str | None = None) -> tuple[int, str] | None:
    """The head last anchored for ``chain``, or None."""
    found = store.get_meta(audit_head_name(chain))
    if found is None:
        return None
    value = json.loads(found[0])
    return int(value["seq"]), str(value["hash"])


def load_audit_checkpoints(store: Store, *, chain: str | None = None) -> list[tuple[int, str, str | None]]:
    """Every checkpoint ``(seq, hash, note)`` of ``chain``, by seq."""
    table = audit_checkpoints
    query = sa.select(table.c.seq, table.c.hash, table.c.note).where(table.c.chain == (chain or ""))
    with store.engine.connect() as connection:
        rows = connection.execute(query.order_by(table.c.seq)).all()
    return [(int(row.seq), str(row.hash), row.note) for row in rows]


def delete_audit_checkpoints_before(store: Store, seq: int, *, chain: str | None = None) -> int:
    """Drop the checkpoints of ``chain``'s events deleted by retention (seq below ``seq``)."""
    table = audit_checkpoints
    with store.engine.begin() as connection:
        result = connection.execute(table.delete().where(table.c.chain == (chain or ""), table.c.seq < seq))
    return int(result.rowcount or 0)


def anchored_audit_chains(store: Store) -> list[str | None]:
    """Every chain the database holds a head or checkpoints of (None: the chain without a host)."""
    prefix = f"{AUDIT_HEAD}:"
    with store.engine.connect() as connection:
        names = connection.execute(sa.select(kv.c.name).where(
            sa.or_(kv.c.name == AUDIT_HEAD, kv.c.name.startswith(prefix, autoescape=True)))).scalars()
        heads = {name[len(prefix):] if name != AUDIT_HEAD else "" for name in names}
        points = set(connection.execute(sa.select(audit_checkpoints.c.chain).distinct()).scalars())
    return [chain or None for chain in sorted(heads | points)]
