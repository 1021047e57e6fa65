"""The audit anchor: the audit trail's head and checkpoints (shared.audit.AuditAnchor).

Evidence kept away from the audit files, so that a cut or re-hashed trail no longer matches what
was recorded when it was written. One chain per host (``chain``: its host id; '' or None: the chain
of an installation without host ids). The head is a ``kansli_meta`` row, the checkpoints the table
``kansli_audit_checkpoints`` (:mod:`shared.store.schema`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from shared.store.history import Store, utcnow
from shared.store.schema import audit_checkpoints, kv

AUDIT_HEAD = "audit_head"


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
