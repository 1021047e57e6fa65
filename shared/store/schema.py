"""The run history's schema: every table of the database, and the migrations between its versions.

All tables are in one :data:`metadata`, so that a store's opening (:class:`shared.store.history.Store`)
creates every one of them; the migrations run in that same transaction, under the schema lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from shared.store.history import Store

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


# -- scheduler ------------------------------------------------------------------------------------
# Tables of the scheduler daemon (shared.scheduler) and its operator CLI (shared.cli_schedules),
# their queries in shared.store.scheduler. The APScheduler job store keeps its own table,
# kansli_scheduler_jobs.

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


# -- audit anchor ---------------------------------------------------------------------------------
# The audit trail's head (a kansli_meta row) and checkpoints (shared.audit.AuditAnchor), their
# queries in shared.store.audit_anchor.

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


# -- migrations -----------------------------------------------------------------------------------


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
