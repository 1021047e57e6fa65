"""The audit anchor's queries (shared.store.audit_anchor) on SQLite and PostgreSQL: a chain's head and
checkpoints. The trail they anchor, its tampering and retention are tested in
tests/shared/audit/test_anchor.py and tests/shared/test_audit_trails.py."""

from __future__ import annotations

import uuid

from shared.store import (
    Store,
    advance_audit_head,
    anchored_audit_chains,
    delete_audit_checkpoints_before,
    load_audit_checkpoints,
    load_audit_head,
    save_audit_anchor,
)


def test_the_head_moves_only_from_the_head_it_expects(store_url: str) -> None:
    store, chain = Store(store_url), f"host-{uuid.uuid4().hex[:8]}"
    assert load_audit_head(store, chain=chain) is None
    save_audit_anchor(store, (1, "h1"), [(1, "h1", None)], chain=chain)
    assert advance_audit_head(store, (1, "h1"), (2, "h2"), [], chain=chain)
    assert not advance_audit_head(store, (1, "h1"), (3, "h3"), [(3, "h3", None)], chain=chain)
    assert load_audit_head(store, chain=chain) == (2, "h2")
    assert advance_audit_head(store, (2, "h2"), (100, "h100"), [(100, "h100", "varje hundrade")], chain=chain)
    assert load_audit_checkpoints(store, chain=chain) == [(1, "h1", None), (100, "h100", "varje hundrade")]
    assert chain in anchored_audit_chains(store)


def test_checkpoints_are_insert_only_and_retention_drops_the_old_ones(store_url: str) -> None:
    store, chain = Store(store_url), f"host-{uuid.uuid4().hex[:8]}"
    save_audit_anchor(store, (200, "b"), [(100, "a", None), (200, "b", None)], chain=chain)
    save_audit_anchor(store, (200, "b"), [(100, "forged", None)], chain=chain)
    assert load_audit_checkpoints(store, chain=chain) == [(100, "a", None), (200, "b", None)]
    assert delete_audit_checkpoints_before(store, 150, chain=chain) == 1
    assert load_audit_checkpoints(store, chain=chain) == [(200, "b", None)]
    other = f"host-{uuid.uuid4().hex[:8]}"
    save_audit_anchor(store, (1, "x"), [(1, "x", None)], chain=other)
    assert load_audit_checkpoints(store, chain=chain) == [(200, "b", None)]  # chains apart
