"""The scheduler's queries: schedule states, operator requests and actions, meta leases.

For the scheduler daemon (shared.scheduler), its leader election (shared.leader) and its operator
CLI (shared.cli_schedules); the tables are in :mod:`shared.store.schema`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shared.store.history import Store, utcnow
from shared.store.schema import kv, operator_actions, schedule_requests, schedule_state


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
