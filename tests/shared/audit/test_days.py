"""shared.audit.days: the digests that seal closed days, and retention (a deliberate gap is not a
missing day)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.audit import ProblemKind
from shared.errors import AuditError
from tests.shared.audit.conftest import DAY1, day_file, write_days


def test_close_day_is_idempotent_and_refuses_today(tmp_path: Path) -> None:
    log, clock = write_days(tmp_path, days=1, per_day=3)
    with pytest.raises(AuditError):
        log.close_day(DAY1)
    clock.next_day()
    digest = log.close_day(DAY1)
    assert digest is not None and digest.exists()
    before = digest.read_bytes()
    assert log.close_day(DAY1) == digest and digest.read_bytes() == before
    assert log.seal_closed_days() == []
    fields = json.loads(before)
    assert (fields["first_seq"], fields["last_seq"], fields["count"]) == (1, 3, 3)


def test_forged_digest(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, days=2, per_day=5)
    digest_path = tmp_path / "2026-11-20.digest.json"
    digest = json.loads(digest_path.read_text())
    digest["count"] = 4
    digest_path.write_text(json.dumps(digest))
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.file) == (ProblemKind.EDITED, digest_path)


def test_retention_gap_is_not_a_missing_day(tmp_path: Path) -> None:
    log, clock = write_days(tmp_path, days=5, per_day=4)
    assert log.apply_retention(0) == []
    deleted = log.apply_retention(2)
    assert [path.name for path in deleted] == ["2026-11-20.jsonl", "2026-11-21.jsonl"]
    assert not day_file(tmp_path).exists()
    report = log.verify()
    assert report.ok, report.summary()
    assert report.first_seq == 9 and report.last_seq == 21  # 20 events + audit.retention
    assert any("retention" in note for note in report.notes)
    day_file(tmp_path, 2).unlink()  # not covered by retention.json
    problem = log.verify().problem
    assert problem is not None and problem.kind == ProblemKind.MISSING_DAY
    assert problem.file == day_file(tmp_path, 2)


def test_forged_retention_marker_is_ignored_when_keyed(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, days=3, per_day=4, key="right-key")
    day_file(tmp_path).unlink()
    (tmp_path / "retention.json").write_text(
        json.dumps({"deleted_through": "2026-11-20", "marker_hash": "0" * 64})
    )
    problem = log.verify().problem
    assert problem is not None and problem.kind == ProblemKind.MISSING_DAY
