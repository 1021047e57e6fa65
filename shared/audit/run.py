"""The audit events of one run, written in small batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.audit.format import AuditEvent

if TYPE_CHECKING:
    from shared.audit.log import AuditLog


class RunAudit:
    """The audit events of one run: start and end at once, item outcomes in small batches.

    Item outcomes are written every ``batch_size`` items or ``batch_seconds`` seconds (one lock and
    one fsync per batch instead of per item), and always before the run's end event. A run killed
    between two batches loses at most that batch's item events from the trail; the run history
    (ledger) still has the items, and the next run of the robot starts with a fresh ``run.started``.
    """

    def __init__(
        self,
        log: AuditLog,
        run_id: str,
        robot: str,
        actor: str,
        *,
        batch_size: int = 50,
        batch_seconds: float = 1.0,
    ) -> None:
        self.log = log
        self.run_id, self.robot, self.actor = run_id, robot, actor
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self._pending: list[AuditEvent] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def event(self, event: str, data: Mapping[str, Any] | None = None) -> None:
        """Append ``event`` now, after any pending item events."""
        with self._lock:
            self._pending.append(AuditEvent(event, self.run_id, self.robot, self.actor, data))
            self._flush_locked()

    def item(self, key: str, outcome: str, data: Mapping[str, Any]) -> None:
        """Queue an item's outcome; written with the next batch."""
        with self._lock:
            payload = {"item_key": key, "outcome": outcome, **data}
            self._pending.append(
                AuditEvent("item.outcome", self.run_id, self.robot, self.actor, payload)
            )
            due = time.monotonic() - self._last_flush >= self.batch_seconds
            if len(self._pending) >= self.batch_size or due:
                self._flush_locked()

    def later(self, event: str, data: Mapping[str, Any]) -> None:
        """Queue any event (``item.enqueued``, ...); written with the next batch, in order."""
        with self._lock:
            self._pending.append(AuditEvent(event, self.run_id, self.robot, self.actor, data))
            if len(self._pending) >= self.batch_size:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending:
            self.log.append_many(self._pending)
            self._pending = []
        self._last_flush = time.monotonic()
