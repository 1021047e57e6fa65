"""The anchor of the audit trail in the run history database: its head and checkpoints.

:class:`AuditAnchor` records, at every append batch, the chain's head and every
``CHECKPOINT_EVERY``-th event where an attacker with write access to the audit folder cannot follow;
:func:`anchor_head` and :func:`read_anchor` record and read the head of a log without one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import date
from typing import TYPE_CHECKING, NamedTuple

from loguru import logger

from shared.audit.days import _read_json
from shared.audit.format import AuditEvent
from shared.errors import AuditError

if TYPE_CHECKING:
    from shared.audit.log import AuditLog
    from shared.store import Store

ANCHOR_NAME = "audit_head"
#: A checkpoint (seq -> hash) is kept for every event whose seq is a multiple of this.
CHECKPOINT_EVERY = 100
UNANCHORED_EVENT = "audit.unanchored"
MISMATCH_EVENT = "audit.anchor_mismatch"

_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def _shared_store(url: str) -> Store:
    """One open store per database URL and process (the scheduler appends through many AuditLogs)."""
    from shared.store import Store

    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = Store(url)
        return store


def anchor_head(log: AuditLog, store: Store) -> tuple[int, str]:
    """Record the trail's head in the run history database (never moving it backwards).

    Appends of a log with an :class:`AuditAnchor` anchor every batch, under the lock and after
    comparing with the database; for such a log this only returns the head (anchoring here could
    silently anchor events added to the files outside Kansli).
    """
    from shared.store import save_audit_anchor

    seq, digest = log.head()
    if log.anchor is not None:
        return seq, digest
    stored = read_anchor(store, chain=log.chain)
    if stored is None or stored[0] < seq:
        save_audit_anchor(store, (seq, digest), [], chain=log.chain)
    return seq, digest


def read_anchor(store: Store, *, chain: str | None = None) -> tuple[int, str] | None:
    """The head last anchored in the database for ``chain`` (None: the chain without a host), or None."""
    from shared.store import load_audit_head

    return load_audit_head(store, chain=chain)


class _AnchorPlan(NamedTuple):
    """What an append found when the database's head was not the files': an event, evidence."""

    event: AuditEvent | None = None
    evidence: tuple[tuple[int, str, str | None], ...] = ()


class AuditAnchor:
    """The trail's head and checkpoints in the run history database, kept at every append batch.

    After every batch, under the trail's lock, the head (``audit_head`` in ``kansli_meta``, or
    ``audit_head:<host>`` for a host's chain: the last event's seq and hash) moves from the files'
    head before the batch to the new one: one conditional UPDATE on the already open store. Every
    ``every``-th event also leaves a checkpoint (``kansli_audit_checkpoints``: chain, seq -> hash,
    insert-only), so :meth:`AuditLog.verify`
    can tell which span of events was changed after it was written. When the database's head was
    not the files' head, the database's head is kept as evidence and an event says so:
    ``audit.unanchored`` (the files held events without an anchor) or ``audit.anchor_mismatch`` (the
    files end before the anchored head, or differ from it). A failed database write is logged as an
    error and never fails the append: the event is already on disk.
    """

    def __init__(
        self, store: Store | Callable[[], Store], *, every: int = CHECKPOINT_EVERY, chain: str | None = None
    ) -> None:
        if every < 1:
            raise AuditError("the audit checkpoint interval must be at least 1")
        self._source = store
        self._store: Store | None = None
        self.every = every
        #: The chain anchored (a host id; None: the chain without a host); an AuditLog sets its own.
        self.chain = chain or None

    def for_chain(self, chain: str | None) -> AuditAnchor:
        """The same database and interval, anchoring ``chain``."""
        anchor = AuditAnchor(self._source, every=self.every, chain=chain)
        anchor._store = self._store
        return anchor

    @property
    def store(self) -> Store:
        if self._store is None:
            source = self._source
            self._store = source() if callable(source) else source
        return self._store

    def head(self) -> tuple[int, str] | None:
        """The head last anchored, or None."""
        from shared.store import load_audit_head

        return load_audit_head(self.store, chain=self.chain)

    def checkpoints(self) -> list[tuple[int, str, str | None]]:
        """Every checkpoint ``(seq, hash, note)``; a note marks evidence an append kept."""
        from shared.store import load_audit_checkpoints

        return load_audit_checkpoints(self.store, chain=self.chain)

    def record(
        self, before: tuple[int, str], head: tuple[int, str], written: Iterable[tuple[int, str]]
    ) -> AuditEvent | None:
        """After a batch that moved the files' head from ``before`` to ``head``: anchor it, with the
        batch's checkpoints. Returns the event to append when the database's head was not ``before``."""
        from shared.store import advance_audit_head, save_audit_anchor

        every = self.every
        points = [(seq, digest, None) for seq, digest in written if seq % every == 0]
        try:
            if advance_audit_head(self.store, before, head, points, chain=self.chain):
                return None
            plan = self._compare(self.head(), before)
            save_audit_anchor(self.store, head, [*plan.evidence, *points], chain=self.chain)
        except _database_errors() as error:
            logger.error(
                "audit events up to seq {} are written but could not be anchored in the run history "
                "database: {}",
                head[0],
                error,
            )
            return None
        return plan.event

    def _compare(self, stored: tuple[int, str] | None, before: tuple[int, str]) -> _AnchorPlan:
        if stored == before or (stored is None and before[0] == 0):
            return _AnchorPlan()
        if stored is None or stored[0] < before[0]:
            return self._unanchored(stored, *before)
        return self._mismatch(stored, before[0])

    def _unanchored(self, stored: tuple[int, str] | None, seq: int, digest: str) -> _AnchorPlan:
        anchored = stored[0] if stored is not None else 0
        logger.warning(
            "audit events seq {}..{} were found without an anchor in the database (written while it "
            "could not be reached, just before a crash, or outside Kansli); anchored now",
            anchored + 1,
            seq,
        )
        note = f"events seq {anchored + 1}..{seq} were found unanchored by a later append"
        evidence: list[tuple[int, str, str | None]] = [(seq, digest, note)]
        if stored is not None:
            evidence.append((stored[0], stored[1], "an anchored head"))
        data = {"first_seq": anchored + 1, "last_seq": seq, "anchored_seq": anchored}
        return _AnchorPlan(AuditEvent(UNANCHORED_EVENT, data=data), tuple(evidence))

    def _mismatch(self, stored: tuple[int, str], seq: int) -> _AnchorPlan:
        logger.error(
            "the audit trail ended at seq {} but the database anchored seq {} with another hash: the "
            "trail's tail was cut off or changed; the anchored head is kept as evidence",
            seq,
            stored[0],
        )
        note = f"an anchored head; a later append found the trail at seq {seq}"
        data = {"anchored_seq": stored[0], "trail_seq": seq}
        return _AnchorPlan(AuditEvent(MISMATCH_EVENT, data=data), ((stored[0], stored[1], note),))

    def prune(self, log: AuditLog, through: date) -> None:
        """Drop the checkpoints of days deleted by retention (up to ``through``, per its digest)."""
        from shared.store import delete_audit_checkpoints_before

        digest = _read_json(log.digest_path(through))
        if digest is None or not log._digest_valid(digest):
            return
        try:
            delete_audit_checkpoints_before(self.store, int(digest["last_seq"]) + 1, chain=self.chain)
        except _database_errors() as error:
            logger.error("cannot prune the audit checkpoints: {}", error)


def _database_errors() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    from shared.errors import KansliError

    return (SQLAlchemyError, KansliError, OSError)
