"""Run history: runs, their items, and the work queues that make every item happen once.

SQLAlchemy Core over SQLite (WAL, the embedded default) or PostgreSQL (``KANSLI_DATABASE_URL``); the
same statements serve both. The schema is created or migrated when a store opens, under a lock, so
two processes opening one database at once are safe.

The package, by concern (every name is importable from ``shared.store`` itself):

- :mod:`shared.store.engine`: one engine per database URL; SQLite in WAL mode, PostgreSQL.
- :mod:`shared.store.schema`: every table, and the migrations between schema versions.
- :mod:`shared.store.history`: :class:`Store` (runs, their items, meta values, the dialect's upsert),
  :class:`RunRecord`, :class:`ItemRecord`, the run statuses, :func:`utcnow`, :func:`open_store`.
- :mod:`shared.store.scheduler`: the scheduler's queries (schedule states, requests, operator
  actions, meta leases).
- :mod:`shared.store.audit_anchor`: the audit trail's head and checkpoints.
"""

from __future__ import annotations

from shared.store.audit_anchor import (
    AUDIT_HEAD,
    advance_audit_head,
    anchored_audit_chains,
    audit_head_name,
    delete_audit_checkpoints_before,
    load_audit_checkpoints,
    load_audit_head,
    save_audit_anchor,
)
from shared.store.engine import _engines
from shared.store.history import (
    ACTIVE_STATUSES,
    AMBIGUOUS_SHOWN,
    FINAL_STATUSES,
    OUTCOME_NAMES,
    QUEUED,
    ItemRecord,
    RunRecord,
    Store,
    item_counts,
    open_store,
    utcnow,
)
from shared.store.scheduler import (
    OperatorAction,
    ScheduleRequest,
    ScheduleState,
    add_operator_action,
    add_schedule_request,
    claim_meta_lease,
    delete_schedule_states,
    finish_schedule_request,
    get_schedule_request,
    list_operator_actions,
    load_schedule_states,
    pending_schedule_requests,
    release_meta_lease,
    renew_meta_lease,
    save_schedule_states,
    set_schedule_paused,
)
from shared.store.schema import (
    SCHEMA_VERSION,
    audit_checkpoints,
    cluster_runs,
    kv,
    legacy_ledger,
    metadata,
    operator_actions,
    queue_items,
    run_files,
    run_items,
    runs,
    schedule_fires,
    schedule_requests,
    schedule_state,
    workers,
)

__all__ = [
    # history: the store, its records and the run statuses
    "ACTIVE_STATUSES",
    "AMBIGUOUS_SHOWN",
    "FINAL_STATUSES",
    "OUTCOME_NAMES",
    "QUEUED",
    "ItemRecord",
    "RunRecord",
    "Store",
    "item_counts",
    "open_store",
    "utcnow",
    # engine: the engine cache (tests and benchmarks dispose of an engine whose database they drop)
    "_engines",
    # schema: the version and the tables
    "SCHEMA_VERSION",
    "audit_checkpoints",
    "cluster_runs",
    "kv",
    "legacy_ledger",
    "metadata",
    "operator_actions",
    "queue_items",
    "run_files",
    "run_items",
    "runs",
    "schedule_fires",
    "schedule_requests",
    "schedule_state",
    "workers",
    # scheduler
    "OperatorAction",
    "ScheduleRequest",
    "ScheduleState",
    "add_operator_action",
    "add_schedule_request",
    "claim_meta_lease",
    "delete_schedule_states",
    "finish_schedule_request",
    "get_schedule_request",
    "list_operator_actions",
    "load_schedule_states",
    "pending_schedule_requests",
    "release_meta_lease",
    "renew_meta_lease",
    "save_schedule_states",
    "set_schedule_paused",
    # audit anchor
    "AUDIT_HEAD",
    "advance_audit_head",
    "anchored_audit_chains",
    "audit_head_name",
    "delete_audit_checkpoints_before",
    "load_audit_checkpoints",
    "load_audit_head",
    "save_audit_anchor",
]
