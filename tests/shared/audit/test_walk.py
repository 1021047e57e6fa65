"""shared.audit.walk: the pass over the files names each kind of tampering at its line, a missing day,
a line torn by a crash and a wrong key; while others append, too."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

from shared.audit import AuditLog, ProblemKind
from tests.shared.audit.conftest import (
    DAY1,
    day_file,
    read_lines,
    rechain,
    recompute,
    write_days,
    write_lines,
)

# -- tampering -----------------------------------------------------------------------------------


def test_edited_line(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    path = day_file(tmp_path)
    lines = read_lines(path)
    edited = lines[6].replace(b'"status":"failed"', b'"status":"done"')
    assert edited != lines[6]
    lines[6] = edited
    write_lines(path, lines)
    report = log.verify()
    assert not report.ok and report.status == "broken"
    assert report.problem is not None
    assert (report.problem.kind, report.problem.file, report.problem.line) == (
        ProblemKind.EDITED,
        path,
        7,
    )
    assert "edited" in report.summary()


def test_edited_and_rehashed_single_line(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    path = day_file(tmp_path)
    lines = read_lines(path)
    edited = lines[6].replace(b'"actor":"anna@ws1"', b'"actor":"bert@ws2"')
    lines[6] = recompute(edited, json.loads(edited)["prev_hash"])
    write_lines(path, lines)
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.line) == (ProblemKind.EDITED, 7)


def test_deleted_line(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    path = day_file(tmp_path)
    lines = read_lines(path)
    del lines[9]
    write_lines(path, lines)
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.file, problem.line) == (ProblemKind.DELETED, path, 10)
    assert "10..10" in problem.message


def test_inserted_copy(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    path = day_file(tmp_path)
    lines = read_lines(path)
    lines.insert(10, lines[2])  # a copy of line 3 after line 10
    write_lines(path, lines)
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.file, problem.line) == (ProblemKind.INSERTED, path, 11)


def test_inserted_copy_of_a_later_line(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    path = day_file(tmp_path)
    lines = read_lines(path)
    lines.insert(4, lines[15])
    write_lines(path, lines)
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.line) == (ProblemKind.INSERTED, 5)


def test_swapped_lines(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    path = day_file(tmp_path)
    lines = read_lines(path)
    lines[7], lines[8] = lines[8], lines[7]
    write_lines(path, lines)
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.file, problem.line) == (ProblemKind.REORDERED, path, 8)


def test_missing_middle_day_named_by_digest(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, days=4, per_day=5)
    assert len(list(tmp_path.glob("*.digest.json"))) == 3  # days 1-3 sealed at roll-over
    day_file(tmp_path, 1).unlink()
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.file) == (ProblemKind.MISSING_DAY, day_file(tmp_path, 1))
    assert "2026-11-21" in problem.message


def test_missing_middle_day_with_its_digest(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, days=3, per_day=5)
    day_file(tmp_path, 1).unlink()
    (tmp_path / "2026-11-21.digest.json").unlink()
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.file) == (ProblemKind.MISSING_DAY, day_file(tmp_path, 1))
    assert "6..10" in problem.message


def test_missing_day_among_quiet_days(tmp_path: Path) -> None:
    log, clock = write_days(tmp_path, days=2, per_day=5)
    clock.next_day()
    clock.next_day()  # 2026-11-22 has no events
    log.append("run.started")
    clock.next_day()
    log.append("run.started")
    day_file(tmp_path, 3).unlink()
    (tmp_path / "2026-11-23.digest.json").unlink()
    problem = log.verify().problem
    assert problem is not None and problem.kind == ProblemKind.MISSING_DAY
    assert "between 2026-11-21 and 2026-11-24" in problem.message


def test_lines_removed_from_end_of_closed_day(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, days=2, per_day=5)
    path = day_file(tmp_path)
    write_lines(path, read_lines(path)[:-1])
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.file, problem.line) == (ProblemKind.DELETED, path, 5)


# -- torn lines ----------------------------------------------------------------------------------


def test_torn_last_line_then_append(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, per_day=5)
    path = day_file(tmp_path)
    with path.open("ab") as handle:
        handle.write(b'{"actor":"anna@ws1","data":{"item_key":"K-0-5","sta')
    report = log.verify()
    assert report.ok and report.status == "torn" and report.torn_at_end
    assert report.torn is not None
    assert (report.torn.kind, report.torn.line) == (ProblemKind.TORN, 6)
    assert report.events == 5 and "not tampering" in report.summary()
    assert log.head()[0] == 5

    event = log.append("run.finished", data={"status": "done"})
    assert event["seq"] == 6
    lines = read_lines(path)
    assert len(lines) == 7 and json.loads(lines[6])["seq"] == 6
    report = log.verify()
    assert report.ok and report.status == "intact" and report.events == 6
    assert report.torn is not None and report.torn.line == 6 and not report.torn_at_end


def test_torn_line_at_end_of_closed_day(tmp_path: Path) -> None:
    log, clock = write_days(tmp_path, per_day=3)
    with day_file(tmp_path).open("ab") as handle:
        handle.write(b'{"actor":"an')
    clock.next_day()
    log.append("daemon.started")
    report = log.verify()
    assert report.ok and report.events == 4 and report.torn is not None
    assert report.torn.file == day_file(tmp_path)


def test_damaged_line_in_the_middle_is_not_torn(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path)
    path = day_file(tmp_path)
    lines = read_lines(path)
    lines[4] = lines[4][:50] + b"\n"
    write_lines(path, lines)
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.line) == (ProblemKind.EDITED, 5)


# -- keys ----------------------------------------------------------------------------------------


def test_wrong_key_fails(tmp_path: Path) -> None:
    write_days(tmp_path, key="right-key")
    assert AuditLog(tmp_path, key="right-key").verify().ok
    report = AuditLog(tmp_path, key="wrong-key").verify()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.line) == (ProblemKind.EDITED, 1)
    assert not AuditLog(tmp_path).verify().ok  # keyed log, verified without the key


def test_rehashing_without_the_key_is_detected(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, key="right-key")
    path = day_file(tmp_path)
    lines = read_lines(path)
    lines[4] = lines[4].replace(b'"robot":"bygglov"', b'"robot":"faktura"')
    write_lines(path, lines)
    rechain(path, 5)  # a forger without the key re-hashes from line 5 on
    problem = log.verify().problem
    assert problem is not None
    assert (problem.kind, problem.line) == (ProblemKind.EDITED, 5)
    assert "without the key" in problem.message


# -- ranges and concurrency ----------------------------------------------------------------------


def test_verify_since_and_until(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, days=4, per_day=5)
    report = log.verify(since=DAY1 + timedelta(days=2))
    assert report.ok and (report.first_seq, report.last_seq, report.files) == (11, 20, 2)
    report = log.verify(until=DAY1 + timedelta(days=1))
    assert report.ok and (report.first_seq, report.last_seq) == (1, 10)
    day_file(tmp_path).write_bytes(b"garbage\n")  # outside the range: not looked at
    assert log.verify(since=DAY1 + timedelta(days=1)).ok


def test_verify_since_checks_preceding_digest(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, days=3, per_day=5)
    path = day_file(tmp_path, 1)
    lines = read_lines(path)
    lines[0] = lines[0].replace(b'"robot":"bygglov"', b'"robot":"faktura"')
    write_lines(path, lines)
    rechain(path, 1)  # day 2 forged from its first line, linked to nothing real
    problem = log.verify(since=DAY1 + timedelta(days=1)).problem
    assert problem is not None and problem.kind == ProblemKind.EDITED
    assert problem.file == path and problem.line == 1


def test_verify_while_appending(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.append("daemon.started")
    done = threading.Event()

    def work() -> None:
        writer = AuditLog(tmp_path)
        for number in range(300):
            writer.append("item.outcome", data={"item_key": str(number), "text": "x" * 2000})
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    reports = []
    while not done.is_set():
        reports.append(log.verify())
    thread.join()
    assert reports and all(r.ok and r.status == "intact" for r in reports), [
        r.summary() for r in reports if not r.ok or r.status != "intact"
    ]
    assert log.verify().events == 301
