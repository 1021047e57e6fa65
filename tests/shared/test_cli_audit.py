"""The audit trail as runs write it, and `kansli audit verify/search` on it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from shared.audit import AuditLog, read_anchor
from shared.runner import Runner
from tests.conftest import kansli

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
    assert "edited" in broken.stderr and f"{day_file.name}:4" in broken.stderr
