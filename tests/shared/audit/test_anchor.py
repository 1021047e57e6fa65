"""The audit trail anchored in the run history database at every append, and the attacks of
docs/audit.md's table "What an attacker can hide": one test per row (files / database / both, unkeyed
and keyed), each asserting what the table says is caught and what it says is not."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.audit import AuditAnchor, AuditLog, ProblemKind
from shared.errors import ConfigError
from shared.store import Store, audit_checkpoints, kv, load_audit_checkpoints, load_audit_head
from tests.shared.audit.conftest import EVENTS, Trail, problem_of, read_lines, write_lines

# -- anchoring at every append -------------------------------------------------------------------


def test_operator_actions_and_daemon_events_are_anchored(kansli_env: Path) -> None:
    from shared.scheduler import record_action
    from shared.settings import get_settings
    from shared.store import open_store

    store = open_store(get_settings().effective_database_url)
    record_action(store, "daemon.start", details={"pid": 1}, actor="kansli@srv")
    record_action(store, "schedule.pause", "nightly", actor="anna@ws1")
    log = AuditLog.from_settings(get_settings(), store=store)
    assert [event["event"] for event in log.search()] == ["daemon.started", "schedule.paused"]
    assert load_audit_head(store) == log.head() and log.head()[0] == 2


def test_a_database_that_cannot_be_written_never_fails_an_append(tmp_path: Path) -> None:
    def unreachable() -> Store:
        raise ConfigError("cannot open the run history database")

    trail = Trail(tmp_path, events=5)
    down = AuditLog(trail.directory, clock=trail.clock, anchor=AuditAnchor(unreachable))
    assert down.append("daemon.stopped")["seq"] == 6
    assert load_audit_head(trail.store) == (5, trail.hash_at(5))
    report = trail.verify()  # unkeyed: events past the anchor could be forged
    assert problem_of(report)[0] == ProblemKind.UNANCHORED and "seq 6..6" in problem_of(report)[2]
    trail.log.append("daemon.started")  # the next append with a database names the gap
    events = [event["event"] for event in trail.log.search()]
    assert events[-3:] == ["daemon.stopped", "daemon.started", "audit.unanchored"]
    report = trail.verify()
    assert report.ok and "events seq 6..6 were found unanchored by a later append" in report.summary()

    broken = Store(f"sqlite:///{tmp_path / 'broken.db'}")  # a database whose writes fail
    with broken.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE kansli_meta"))
    assert trail.open(store=broken).append("daemon.stopped")["seq"] == 9


def test_the_run_end_anchor_never_anchors_events_added_outside_kansli(tmp_path: Path) -> None:
    from shared.audit import anchor_head

    trail = Trail(tmp_path, events=5)
    trail.forge_appended(2)
    assert anchor_head(trail.log, trail.store) == (7, trail.hash_at(7))
    assert load_audit_head(trail.store) == (5, trail.hash_at(5))
    assert problem_of(trail.verify())[0] == ProblemKind.UNANCHORED


def test_checkpoints_of_days_deleted_by_retention_are_dropped(tmp_path: Path) -> None:
    trail = Trail(tmp_path, events=120)
    trail.clock.now += timedelta(days=40)
    trail.log.append("run.started")
    assert [seq for seq, _, _ in load_audit_checkpoints(trail.store)] == [100]
    assert len(trail.log.apply_retention(30)) == 1
    assert load_audit_checkpoints(trail.store) == []
    assert trail.verify().ok


def test_the_anchor_round_trips_on_postgresql() -> None:
    import os

    url = os.environ.get("KANSLI_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("KANSLI_TEST_POSTGRES_URL is not set")
    from shared.store import save_audit_anchor

    store = Store(url)
    saved = load_audit_head(store)
    try:
        save_audit_anchor(store, (900_000_100, "a" * 64), [(900_000_100, "a" * 64, None)])
        save_audit_anchor(store, (900_000_101, "b" * 64), [(900_000_100, "c" * 64, "ignored")])
        assert load_audit_head(store) == (900_000_101, "b" * 64)
        assert (900_000_100, "a" * 64, None) in load_audit_checkpoints(store)  # insert-only
    finally:
        with store.engine.begin() as connection:
            connection.execute(audit_checkpoints.delete().where(audit_checkpoints.c.seq >= 900_000_000))
        if saved is None:
            with store.engine.begin() as connection:
                connection.execute(kv.delete().where(kv.c.name == "audit_head"))
        else:
            save_audit_anchor(store, saved, [])


# -- the attack table of docs/audit.md: one test per row -----------------------------------------


def test_files_only_unkeyed(tmp_path: Path) -> None:
    # an edit without re-hashing: the line itself
    trail = Trail(tmp_path / "edit")
    lines = read_lines(trail.path)
    lines[149] = lines[149].replace(b'"outcome":"done"', b'"outcome":"app_error"')
    write_lines(trail.path, lines)
    assert problem_of(trail.verify())[:2] == (ProblemKind.EDITED, 150)

    # an edit re-hashed to the end (head.json fixed): located between two checkpoints
    trail = Trail(tmp_path / "rehash")
    trail.rehash_from(150)
    kind, line, message = problem_of(trail.verify())
    assert (kind, line) == (ProblemKind.EDITED, 101)
    assert message.startswith("events seq 101..200 were changed after they were written")

    # the tail cut off (head.json fixed)
    trail = Trail(tmp_path / "cut")
    trail.cut(30)
    kind, line, message = problem_of(trail.verify())
    assert (kind, line) == (ProblemKind.TRUNCATED, 221)
    assert "events seq 221..250) was cut off" in message

    # forged events appended with a valid chain: not anchored, so named; and a later append by
    # Kansli records them in the trail (audit.unanchored) instead of silently anchoring them
    trail = Trail(tmp_path / "forge")
    trail.forge_appended(3)
    kind, line, message = problem_of(trail.verify())
    assert (kind, line) == (ProblemKind.UNANCHORED, 251) and "events seq 251..253" in message
    trail.log.append("run.started")
    [note] = [e for e in trail.log.search(event="audit.unanchored")]
    assert note["data"] == {"first_seq": 251, "last_seq": 253, "anchored_seq": 250}
    assert "events seq 251..253 were found unanchored" in trail.verify().summary()

    # NOT caught: events written while the database could not be written, cut before the next
    # anchored append (they were never anchored; the failed anchoring is in the log)
    trail = Trail(tmp_path / "hidden")
    AuditLog(trail.directory, clock=trail.clock).append("schedule.paused")  # the database was down
    trail.cut(1)
    assert trail.verify().ok


def test_files_only_keyed(tmp_path: Path) -> None:
    key = "the-right-key"
    # re-hashing needs the key: the first re-hashed line is named
    trail = Trail(tmp_path / "rehash", key=key)
    trail.rehash_from(150)  # without the key
    kind, line, message = problem_of(trail.verify())
    assert (kind, line) == (ProblemKind.EDITED, 150) and "without the key" in message

    # the tail cut off (head.json fixed)
    trail = Trail(tmp_path / "cut", key=key)
    trail.cut(30)
    assert problem_of(trail.verify())[:2] == (ProblemKind.TRUNCATED, 221)

    # forged events appended: their HMAC cannot be made
    trail = Trail(tmp_path / "forge", key=key)
    trail.forge_appended(2, key="a-guess")
    assert problem_of(trail.verify())[:2] == (ProblemKind.EDITED, 251)

    # NOT caught: unanchored events (database down) cut before the next anchored append
    trail = Trail(tmp_path / "hidden", key=key)
    AuditLog(trail.directory, key=key, clock=trail.clock).append("schedule.paused")
    trail.cut(1)
    assert trail.verify().ok


def test_database_only_unkeyed(tmp_path: Path) -> None:
    # nothing in the files can be hidden: every change to the anchor raises an alarm instead
    trail = Trail(tmp_path / "changed")
    trail.set_database_head(250, "f" * 64)
    kind, line, message = problem_of(trail.verify())
    assert (kind, line) == (ProblemKind.EDITED, 201) and "database's head anchor" in message

    trail = Trail(tmp_path / "moved-back")
    trail.drop_database_anchor(above=100)
    trail.set_database_head(100, trail.hash_at(100))
    kind, _, message = problem_of(trail.verify())
    assert kind == ProblemKind.UNANCHORED and "events seq 101..250" in message

    trail = Trail(tmp_path / "deleted")
    trail.drop_database_anchor()
    assert problem_of(trail.verify())[0] == ProblemKind.UNANCHORED
    assert len(list(trail.log.search(event="item.outcome"))) == EVENTS  # every event still there


def test_database_only_keyed(tmp_path: Path) -> None:
    key = "the-right-key"
    trail = Trail(tmp_path / "changed", key=key)
    trail.set_database_head(250, "f" * 64)
    assert problem_of(trail.verify())[0] == ProblemKind.EDITED

    # a deleted anchor: a keyed trail cannot have been extended by anyone without the key, so the
    # unanchored events are a note; nothing in the files was hidden
    trail = Trail(tmp_path / "deleted", key=key)
    trail.drop_database_anchor()
    report = trail.verify()
    assert report.ok and report.events == EVENTS
    assert "events seq 1..250 are not anchored in the database yet" in report.summary()


def test_files_and_database_unkeyed(tmp_path: Path) -> None:
    # NOT caught: the whole trail can be rewritten, and the database made to match
    trail = Trail(tmp_path / "rehash")
    trail.rehash_from(150)
    trail.match_database_to_files()
    assert trail.verify().ok

    trail = Trail(tmp_path / "cut")
    trail.cut(30)
    trail.match_database_to_files()
    assert trail.verify().ok


def test_files_and_database_keyed(tmp_path: Path) -> None:
    key = "the-right-key"
    # caught: an edit cannot be re-hashed without the key, whatever the database says
    trail = Trail(tmp_path / "rehash", key=key)
    trail.rehash_from(150)
    trail.match_database_to_files()
    assert problem_of(trail.verify())[:2] == (ProblemKind.EDITED, 150)

    # caught: a line deleted from the middle
    trail = Trail(tmp_path / "deleted", key=key)
    lines = read_lines(trail.path)
    write_lines(trail.path, lines[:120] + lines[121:])
    trail.match_database_to_files()
    assert problem_of(trail.verify())[:2] == (ProblemKind.DELETED, 121)

    # NOT caught: the newest events cut off, head.json and the database moved back to match
    trail = Trail(tmp_path / "cut", key=key)
    trail.cut(30)
    trail.drop_database_anchor(above=220)
    trail.set_database_head(220, trail.hash_at(220))
    assert trail.verify().ok
