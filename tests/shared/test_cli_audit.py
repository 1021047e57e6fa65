"""The audit trail as runs write it, and `kansli audit verify/search` on it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from shared.audit import (
    EVENT_TYPES,
    MISMATCH_EVENT,
    UNANCHORED_EVENT,
    AuditAnchor,
    AuditLog,
    read_anchor,
)
from shared.clock import local_time
from shared.runner import Runner
from shared.settings import get_settings
from shared.store import open_store
from tests.conftest import REPO, kansli

SAMPLE = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}


def test_a_run_leaves_start_items_end_and_an_anchor(sample_runner: Runner, kansli_env: Path) -> None:
    record = sample_runner.run("counting", {"count": 3, "bad": "k1"}, trigger="schedule:nightly")
    log = AuditLog(kansli_env / "log" / "audit")
    events = [event for event in log.search(run_id=record.run_id)]
    assert [e["event"] for e in events] == [
        "config.loaded", "run.started", "item.outcome", "item.outcome", "item.outcome", "run.finished",
    ]
    assert {e["actor"] for e in events} == {"schedule:nightly"}
    assert events[-1]["data"]["status"] == "partial"
    assert [e["data"]["outcome"] for e in events[2:5]] == ["done", "business_error", "done"]
    assert events[3]["data"]["error_class"] == "InputError"
    assert read_anchor(sample_runner.store) == log.head()
    assert log.verify(anchor=log.head()).ok


def test_verify_and_search_from_the_cli(kansli_env: Path) -> None:
    for count in (2, 3):
        kansli("run", "counting", "-p", f"count={count}", "-p", "bad=k1", cwd=kansli_env, env=SAMPLE)
    verified = kansli("audit", "verify", cwd=kansli_env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("audit trail intact: 11 events")

    found = json.loads(kansli("audit", "search", "--item", "k1", "--json", cwd=kansli_env).stdout)
    assert [event["data"]["outcome"] for event in found] == ["business_error", "business_error"]
    rows = list(csv.reader(io.StringIO(
        kansli("audit", "search", "--event", "run.finished", "--csv", cwd=kansli_env).stdout)))
    assert rows[0][:3] == ["seq", "time", "event"] and len(rows) == 3
    assert {row[6] for row in rows[1:]} == {"partial"}
    table = kansli("audit", "search", "--robot", "counting", "--status", "partial", cwd=kansli_env)
    assert table.returncode == 0 and "run.finished" in table.stdout
    assert kansli("audit", "search", "--since", "igår", cwd=kansli_env).returncode == 2


def test_verify_names_an_edited_line_and_a_cut_tail(kansli_env: Path) -> None:
    kansli("run", "counting", "-p", "count=3", cwd=kansli_env, env=SAMPLE)
    day_file = next((kansli_env / "log" / "audit").glob("*.jsonl"))
    lines = day_file.read_bytes().splitlines(keepends=True)

    day_file.write_bytes(b"".join(lines[:-2]))  # cut the tail: the database's anchor notices
    cut = kansli("audit", "verify", cwd=kansli_env)
    assert cut.returncode == 1 and "truncated" in cut.stderr

    edited = lines[3].replace(b'"outcome":"done"', b'"outcome":"business_error"')
    assert edited != lines[3]
    day_file.write_bytes(b"".join([*lines[:3], edited, *lines[4:]]))
    broken = kansli("audit", "verify", cwd=kansli_env)
    assert broken.returncode == 1
    assert "edited" in broken.stderr and f"{day_file}:4" in broken.stderr  # the full path


def test_a_rehashed_edit_is_located_between_two_checkpoints(kansli_env: Path) -> None:
    kansli("run", "counting", "-p", "count=150", cwd=kansli_env, env=SAMPLE)  # seq 1..153
    day_file = next((kansli_env / "log" / "audit").glob("*.jsonl"))
    lines = day_file.read_bytes().splitlines(keepends=True)
    prev = json.loads(lines[118])["hash"]
    for index in range(119, len(lines)):  # line 120 edited, every later hash re-computed
        event = json.loads(lines[index])
        event.pop("hash")
        event["prev_hash"] = prev
        if index == 119:
            event["data"]["outcome"] = "skipped"
        body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        prev = hashlib.sha256(body).hexdigest()
        lines[index] = body[:-1] + b',"hash":"' + prev.encode() + b'"}\n'
    day_file.write_bytes(b"".join(lines))
    head = json.loads((day_file.parent / "head.json").read_text())
    (day_file.parent / "head.json").write_text(json.dumps({**head, "hash": prev}))
    broken = kansli("audit", "verify", cwd=kansli_env)
    assert broken.returncode == 1
    assert "events seq 101..153 were changed after they were written" in broken.stderr
    assert f"{day_file}:101" in broken.stderr


def test_verify_over_days_without_events_is_intact(kansli_env: Path) -> None:
    settings = get_settings()
    store = open_store(settings.effective_database_url)
    late = datetime.combine(date.today() - timedelta(days=1), time(23, 59), UTC)
    log = AuditLog(settings.log_dir / "audit", clock=lambda: late, anchor=AuditAnchor(store))
    for action in ("daemon.started", "schedule.paused", "daemon.stopped"):
        log.append(action, actor="kansli@srv")
    today = datetime.now(UTC).date()  # just after midnight: no event today yet
    for since in (today, today + timedelta(days=1)):
        verified = kansli("audit", "verify", "--since", since.isoformat(), cwd=kansli_env)
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("audit trail intact: 0 events")
    for options in ([], ["--until", (today - timedelta(days=5)).isoformat()],
                    ["--since", (today - timedelta(days=1)).isoformat(), "--until", today.isoformat()]):
        verified = kansli("audit", "verify", *options, cwd=kansli_env)
        assert verified.returncode == 0, verified.stderr


def test_search_takes_a_run_id_prefix_and_refuses_unknown_filter_values(kansli_env: Path) -> None:
    for _ in range(2):
        kansli("run", "counting", "-p", "count=1", cwd=kansli_env, env=SAMPLE)
    first, second = sorted({e["run_id"] for e in AuditLog(kansli_env / "log" / "audit").search()})
    found = json.loads(kansli("audit", "search", "--run", second[:-1], "--json", cwd=kansli_env).stdout)
    assert {event["run_id"] for event in found} == {second} and len(found) == 4
    ambiguous = kansli("audit", "search", "--run", "20", cwd=kansli_env)
    assert ambiguous.returncode == 2 and first in ambiguous.stderr and second in ambiguous.stderr
    assert "ambiguous" in ambiguous.stderr and ambiguous.stdout == ""
    nothing = kansli("audit", "search", "--run", "19990101", "--json", cwd=kansli_env)
    assert nothing.returncode == 0 and json.loads(nothing.stdout) == []

    status = kansli("audit", "search", "--status", "klar", cwd=kansli_env)
    assert status.returncode == 2 and "'klar'" in status.stderr
    assert all(value in status.stderr for value in ("succeeded", "partial", "business_error", "done"))
    event = kansli("audit", "search", "--event", "run.finish", cwd=kansli_env)
    assert event.returncode == 2 and "run.finished" in event.stderr and "item.outcome" in event.stderr


def test_the_search_table_shows_local_times_and_json_stays_iso(kansli_env: Path) -> None:
    kansli("run", "counting", "-p", "count=1", cwd=kansli_env, env=SAMPLE)
    [finished] = AuditLog(kansli_env / "log" / "audit").search(event="run.finished")
    env = {"KANSLI_TIMEZONE": "Europe/Stockholm", "COLUMNS": "300"}
    table = kansli("audit", "search", "--event", "run.finished", cwd=kansli_env, env=env)
    shown = local_time(finished["time"], zone_name="Europe/Stockholm", seconds=True)
    assert shown.endswith((" CET", " CEST")) and shown in table.stdout
    assert finished["time"] not in table.stdout
    [as_json] = json.loads(kansli("audit", "search", "--event", "run.finished", "--json",
                                  cwd=kansli_env, env=env).stdout)
    assert as_json["time"] == finished["time"] and as_json["time"].endswith("+00:00")


def test_every_event_type_written_is_known_to_search() -> None:
    """``--event`` accepts EVENT_TYPES only: every type the code writes must be listed there."""
    from shared.scheduler import AUDIT_EVENTS

    written: set[str] = set(AUDIT_EVENTS.values()) | {UNANCHORED_EVENT, MISMATCH_EVENT}
    call = r"(?:\.append|\.event|_append_audit|AuditEvent)\(\s*(?:settings, )?"
    pattern = re.compile(call + r'"([a-z]+\.[a-z_.]+)"')
    for source in (REPO / "shared").rglob("*.py"):
        written |= set(pattern.findall(source.read_text(encoding="utf-8")))
    written |= {"run.missed", "run.skipped", "run.finished", "schedule.trigger.started"}
    assert written <= set(EVENT_TYPES), written - set(EVENT_TYPES)
    assert {"run.started", "item.outcome", "audit.retention", "run.status_changed"} <= written
