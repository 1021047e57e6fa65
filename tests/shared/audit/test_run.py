"""shared.audit.run: a run's events are written in batches, and every batch is anchored as it is written."""

from __future__ import annotations

from pathlib import Path

from shared.audit import RunAudit
from shared.store import load_audit_checkpoints, load_audit_head
from tests.shared.audit.conftest import Trail


def test_every_append_batch_anchors_the_head_and_every_hundredth_event(tmp_path: Path) -> None:
    trail = Trail(tmp_path, events=3)
    assert load_audit_head(trail.store) == trail.log.head()
    run = RunAudit(trail.log, "r2", "faktura", "anna@ws1", batch_size=40, batch_seconds=3600)
    for number in range(130):
        run.item(f"K-{number}", "done", {})
        if (number + 1) % 40 == 0:  # a batch was written: anchored with it, not at the run's end
            seq = 3 + number + 1
            assert load_audit_head(trail.store) == trail.log.head() == (seq, trail.hash_at(seq))
    run.event("run.finished", {"status": "succeeded"})
    assert load_audit_head(trail.store) == trail.log.head() == (134, trail.hash_at(134))
    assert [(seq, digest) for seq, digest, _ in load_audit_checkpoints(trail.store)] == [
        (100, trail.hash_at(100))
    ]
    assert trail.verify().ok
