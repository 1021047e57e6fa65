"""shared.audit.verify: the files checked against heads recorded elsewhere (head.json, an anchor): a
cut tail, a cut and re-grown one, and the documented limit of an unkeyed chain."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from shared.audit import ProblemKind
from tests.shared.audit.conftest import (
    DAY,
    Trail,
    day_file,
    problem_of,
    read_lines,
    rechain,
    write_days,
    write_lines,
)


def test_truncated_tail_against_anchor(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    anchor = log.head()
    path = day_file(tmp_path)
    write_lines(path, read_lines(path)[:-3])
    (tmp_path / "head.json").unlink()  # the attacker also removes the local head
    assert log.verify().ok  # without an anchor a clean cut is undetectable
    report = log.verify(anchor=anchor)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.file, report.problem.line) == (
        ProblemKind.TRUNCATED,
        path,
        18,
    )


def test_truncated_tail_against_head_file(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    path = day_file(tmp_path)
    write_lines(path, read_lines(path)[:-2])
    problem = log.verify().problem
    assert problem is not None and problem.kind == ProblemKind.TRUNCATED
    assert "head.json" in problem.message


def test_cut_and_regrown_tail_against_anchor(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    anchor = log.head()
    path = day_file(tmp_path)
    write_lines(path, read_lines(path)[:-3])
    for _ in range(5):
        log.append("run.started")  # continues from the file, the truth
    problem = log.verify(anchor=anchor).problem
    assert problem is not None and problem.kind == ProblemKind.EDITED
    assert problem.line == 20 and "events up to seq 20 were changed" in problem.message


def test_unkeyed_chain_can_be_rehashed_by_a_forger(tmp_path: Path) -> None:
    """The documented limit of the unkeyed chain (head.json removed, no anchor)."""
    log, _ = write_days(tmp_path)
    anchor = log.head()
    path = day_file(tmp_path)
    lines = read_lines(path)
    lines[4] = lines[4].replace(b'"robot":"bygglov"', b'"robot":"faktura"')
    write_lines(path, lines)
    rechain(path, 5)
    (tmp_path / "head.json").unlink()
    assert log.verify().ok
    assert not log.verify(anchor=anchor).ok  # but not past an external anchor


def test_verify_over_days_without_events(tmp_path: Path) -> None:
    trail = Trail(tmp_path, events=5)
    log = trail.open()
    for since in (DAY + timedelta(days=1), DAY + timedelta(days=2)):  # "today after midnight", later
        report = log.verify(since=since)
        assert report.ok and report.events == 0, report.summary()
    report = log.verify(since=DAY + timedelta(days=1), until=DAY + timedelta(days=3))
    assert report.ok and report.events == 0
    assert log.verify(until=DAY - timedelta(days=1)).ok
    trail.cut(2)  # and with nothing in range, a cut tail before it is still caught
    assert problem_of(log.verify(since=DAY + timedelta(days=1)))[0] == ProblemKind.TRUNCATED
