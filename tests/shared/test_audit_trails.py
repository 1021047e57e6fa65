"""One audit chain per host (KANSLI_HOST_ID) on a shared log directory, anchored in one database:
hosts appending at once as separate processes, `kansli audit verify/search` over all chains, a break
named with its host, a deleted host folder found from its anchor, and the version-2 checkpoints
migrated into the chain without a host."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.audit import CHECKPOINT_EVERY, AuditAnchor, AuditLog, ProblemKind
from shared.audit_trails import AuditTrails
from shared.errors import AuditError
from shared.settings import Settings, load_settings, reset_settings
from shared.store import (
    SCHEMA_VERSION,
    Store,
    anchored_audit_chains,
    audit_checkpoints,
    load_audit_checkpoints,
    load_audit_head,
)
from shared.testing import import_path
from tests.conftest import kansli
from tests.shared.audit.conftest import Clock, read_lines, recompute, write_lines

HOSTS = ("web1", "web2", "web3")
PER_HOST = 230  # checkpoints at seq 100 and 200 of every chain

WRITER = """
import sys, time
from pathlib import Path
from shared.audit import AuditLog, RunAudit
from shared.settings import load_settings

go, count = Path(sys.argv[1]), int(sys.argv[2])
while not go.exists():  # every writer starts at once
    time.sleep(0.005)
settings = load_settings()
log = AuditLog.from_settings(settings)
run = RunAudit(log, f"run-{settings.host_id}", "counting", "kansli@" + settings.host, batch_size=7,
               batch_seconds=3600)
run.event("run.started", {"trigger": "cli"})
for number in range(count - 2):
    if number % 10 == 0:
        log.append("schedule.paused", actor="anna@ws1", data={"schedule": f"s{number}"})
    else:
        run.item(f"k{number}", "done", {})
run.event("run.finished", {"status": "succeeded"})
"""


def host_env(host: str | None, url: str, work: Path) -> dict[str, str]:
    """A host of its own: its host id and data dir; the log dir (from the test) and database shared."""
    env = {"KANSLI_DATABASE_URL": url, "KANSLI_DATA_DIR": str(work / f"data-{host or 'none'}")}
    if host is not None:
        env["KANSLI_HOST_ID"] = host
    return env


def settings_of(host: str | None, monkeypatch: pytest.MonkeyPatch) -> Settings:
    if host is None:
        monkeypatch.delenv("KANSLI_HOST_ID", raising=False)
    else:
        monkeypatch.setenv("KANSLI_HOST_ID", host)
    reset_settings()
    return load_settings()


def chain_dir(work: Path, host: str) -> Path:
    return work / "log" / "audit" / "hosts" / host


def write_chains(monkeypatch: pytest.MonkeyPatch, hosts: tuple[str | None, ...] = HOSTS,
                 count: int = 12) -> dict[str | None, AuditLog]:
    """In this process, ``count`` events in each host's chain (as each host would write them)."""
    logs = {}
    for host in hosts:
        log = AuditLog.from_settings(settings_of(host, monkeypatch))
        for number in range(count):
            log.append("item.outcome", run_id=f"r-{host}", robot="faktura", actor="anna@ws1",
                       data={"item_key": f"K-{number}", "outcome": "done"})
        logs[host] = log
    settings_of(None, monkeypatch)
    return logs


def verify_json(cwd: Path, *options: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    done = kansli("audit", "verify", "--json", *options, cwd=cwd, env=env)
    return done.returncode, json.loads(done.stdout)


def test_hosts_append_at_once_each_to_its_own_chain(
    database_url: str, kansli_env: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(go), str(PER_HOST)], cwd=kansli_env,
                         env={**os.environ, "PYTHONPATH": import_path(),
                              **host_env(host, database_url, kansli_env)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for host in HOSTS
    ]
    go.touch()
    for writer in writers:
        _, errors = writer.communicate(timeout=300)
        assert writer.returncode == 0, errors

    audit = kansli_env / "log" / "audit"
    assert sorted(path.name for path in (audit / "hosts").iterdir()) == list(HOSTS)
    assert not (audit / ".lock").exists()  # no lock outside the hosts' own folders
    store = Store(database_url)
    assert anchored_audit_chains(store) == list(HOSTS)
    for host in HOSTS:
        lines = [json.loads(line) for path in sorted(chain_dir(kansli_env, host).glob("*.jsonl"))
                 for line in read_lines(path)]
        assert [event["seq"] for event in lines] == list(range(1, PER_HOST + 1))
        assert {event["host"] for event in lines} == {host}
        assert load_audit_head(store, chain=host) == (PER_HOST, lines[-1]["hash"])
        assert [seq for seq, _, _ in load_audit_checkpoints(store, chain=host)] == [100, 200]

    env = host_env("web1", database_url, kansli_env)
    code, verified = verify_json(kansli_env, env=env)
    assert code == 0 and verified["ok"], verified
    assert [(chain["host"], chain["status"], chain["events"]) for chain in verified["chains"]] == [
        (host, "intact", PER_HOST) for host in HOSTS
    ]
    text = kansli("audit", "verify", cwd=kansli_env, env=env)
    assert text.returncode == 0 and "audit trail of host web2 intact: 230 events" in text.stdout
    assert text.stdout.rstrip().endswith("3 audit chains intact")

    found = json.loads(kansli("audit", "search", "--json", cwd=kansli_env, env=env).stdout)
    assert len(found) == 3 * PER_HOST
    assert [event["time"] for event in found] == sorted(event["time"] for event in found)
    assert {event["host"] for event in found} == set(HOSTS)
    only = json.loads(kansli("audit", "search", "--json", "--host", "web3", "--event", "run.finished",
                             cwd=kansli_env, env=env).stdout)
    assert [(event["host"], event["run_id"]) for event in only] == [("web3", "run-web3")]


def test_an_edited_line_is_named_with_its_host_file_and_line(
    kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_chains(monkeypatch)
    [path] = chain_dir(kansli_env, "web2").glob("*.jsonl")
    lines = read_lines(path)
    lines[4] = lines[4].replace(b'"outcome":"done"', b'"outcome":"app_error"')
    write_lines(path, lines)

    broken = kansli("audit", "verify", cwd=kansli_env)
    assert broken.returncode == 1
    assert f"audit trail of host web2 BROKEN (edited) at {path}:5" in broken.stderr
    assert "3 audit chains, 1 BROKEN: audit trail of host web2" in broken.stderr
    assert "host web1 intact: 12 events" in broken.stdout and "host web3 intact" in broken.stdout
    code, verified = verify_json(kansli_env)
    assert code == 1 and not verified["ok"]
    [bad] = [chain for chain in verified["chains"] if not chain["ok"]]
    assert bad["host"] == "web2" and bad["problem"]["kind"] == "edited"
    assert (bad["problem"]["file"], bad["problem"]["line"]) == (str(path), 5)

    assert verify_json(kansli_env, "--host", "web1")[0] == 0  # the other hosts' chains alone
    code, verified = verify_json(kansli_env, "--host", "web2")
    assert code == 1 and [chain["host"] for chain in verified["chains"]] == ["web2"]


def test_a_rehashed_edit_in_one_chain_is_located_by_that_hosts_checkpoints(
    kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_chains(monkeypatch, ("web1", "web2"), count=CHECKPOINT_EVERY * 2 + 10)
    [path] = chain_dir(kansli_env, "web1").glob("*.jsonl")
    lines = read_lines(path)
    lines[149] = lines[149].replace(b'"outcome":"done"', b'"outcome":"skipped"')
    prev = json.loads(lines[148])["hash"]
    for index in range(149, len(lines)):  # re-hashed to the end, as a forger with the files would
        lines[index] = recompute(lines[index], prev)
        prev = json.loads(lines[index])["hash"]
    write_lines(path, lines)
    head = json.loads((path.parent / "head.json").read_text())
    (path.parent / "head.json").write_text(json.dumps({**head, "hash": prev}))

    broken = kansli("audit", "verify", cwd=kansli_env)
    assert broken.returncode == 1
    assert f"audit trail of host web1 BROKEN (edited) at {path}:101" in broken.stderr
    assert "events seq 101..200 were changed after they were written" in broken.stderr
    assert "host web2 intact: 210 events" in broken.stdout


def test_a_deleted_host_folder_is_named_from_its_database_anchor(
    kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_chains(monkeypatch)
    shutil.rmtree(chain_dir(kansli_env, "web3"))
    broken = kansli("audit", "verify", cwd=kansli_env, env={"KANSLI_HOST_ID": "web1"})
    assert broken.returncode == 1
    where = chain_dir(kansli_env, "web3")
    assert f"audit trail of host web3 BROKEN (missing chain) at {where}" in broken.stderr
    assert "host web3's trail is gone" in broken.stderr and "up to seq 12" in broken.stderr
    code, verified = verify_json(kansli_env, "--host", "web3")
    assert code == 1 and verified["chains"][0]["problem"]["kind"] == "missing chain"

    chain_dir(kansli_env, "web3").mkdir(parents=True)  # an empty folder is no better
    (chain_dir(kansli_env, "web3") / ".lock").touch()
    assert "missing chain" in kansli("audit", "verify", "--host", "web3", cwd=kansli_env).stderr

    unknown = kansli("audit", "verify", "--host", "web9", cwd=kansli_env)
    assert unknown.returncode == 2 and "web1, web2, web3" in unknown.stderr
    assert kansli("audit", "search", "--host", "web9", cwd=kansli_env).returncode == 2


def test_another_hosts_chain_is_read_without_its_lock_and_never_written(
    kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filelock import FileLock

    write_chains(monkeypatch, ("web1", "web2"))
    [path] = chain_dir(kansli_env, "web2").glob("*.jsonl")
    lines = read_lines(path)
    last = json.loads(lines[-1])
    forged = {**last, "seq": last["seq"] + 1, "data": {"item_key": "FORGED"}}
    write_lines(path, [*lines, recompute(json.dumps(forged).encode(), last["hash"])])

    # web2's lock is held (say, by web2 appending): web1 reads web2's chain without waiting for it,
    # so the unanchored forged event is still compared with web2's anchor and named
    with FileLock(str(chain_dir(kansli_env, "web2") / ".lock")):
        broken = kansli("audit", "verify", "--host", "web2", cwd=kansli_env, env={"KANSLI_HOST_ID": "web1"})
    assert broken.returncode == 1, broken.stdout
    assert f"host web2 BROKEN (unanchored) at {path}:13" in broken.stderr

    trails = AuditTrails(settings_of("web1", monkeypatch))
    assert not trails.log("web1").read_only and trails.log("web2").read_only
    with pytest.raises(AuditError, match="another host's"):
        trails.log("web2").append("run.started")


def test_the_chain_without_a_host_and_host_chains_share_one_database(
    kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = CHECKPOINT_EVERY + 20
    logs = write_chains(monkeypatch, (None, "web1"), count=count)
    store = Store(load_settings().effective_database_url)
    assert anchored_audit_chains(store) == [None, "web1"]
    assert load_audit_head(store) == logs[None].head() != logs["web1"].head()
    assert load_audit_head(store, chain="web1") == logs["web1"].head()
    assert len(load_audit_checkpoints(store)) == len(load_audit_checkpoints(store, chain="web1")) == 1
    legacy = read_lines(next((kansli_env / "log" / "audit").glob("*.jsonl")))
    assert b'"host"' not in legacy[0]  # the chain without a host keeps its format

    verified = kansli("audit", "verify", cwd=kansli_env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.splitlines() == [
        f"audit trail intact: {count} events (seq 1..{count}) in 1 files",
        f"audit trail of host web1 intact: {count} events (seq 1..{count}) in 1 files",
        "2 audit chains intact",
    ]
    rows = list(csv.reader(io.StringIO(kansli("audit", "search", "--csv", cwd=kansli_env).stdout)))
    assert rows[0][-1] == "host" and {row[-1] for row in rows[1:]} == {"", "web1"}
    table = kansli("audit", "search", "--event", "item.outcome", "--limit", "3", cwd=kansli_env)
    assert table.stdout.splitlines()[2].split("┃")[1].strip() == "host"


def test_sealing_and_retention_work_on_each_chain_alone(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'kansli.db'}")
    clock = Clock(date(2026, 11, 1))
    logs = {host: AuditLog(tmp_path / "audit" / "hosts" / host, clock=clock, anchor=AuditAnchor(store),
                           chain=host) for host in ("web1", "web2")}
    for host, log in logs.items():
        for number in range(CHECKPOINT_EVERY + 5):
            log.append("item.outcome", run_id=f"r-{host}", data={"item_key": f"K{number}"})
    clock.now += timedelta(days=40)
    digest = logs["web2"].close_day(date(2026, 11, 1))
    assert digest is not None and digest.parent == logs["web2"].directory
    assert not logs["web1"].digest_files()  # each chain is sealed on its own
    logs["web1"].append("run.started")  # a new day: web1's last one is sealed, in web1's folder
    assert list(logs["web1"].digest_files()) == [date(2026, 11, 1)]

    assert len(logs["web1"].apply_retention(30)) == 1
    assert load_audit_checkpoints(store, chain="web1") == []
    assert [seq for seq, _, _ in load_audit_checkpoints(store, chain="web2")] == [100]
    assert [event["event"] for event in logs["web1"].search()] == ["run.started", "audit.retention"]
    assert logs["web2"].head()[0] == CHECKPOINT_EVERY + 5
    for log in logs.values():
        report = log.verify()
        assert report.ok, report.summary()
    assert "deleted by retention" in logs["web1"].verify().summary()


# -- the migration of the checkpoints from schema version 2 ---------------------------------------


def build_version_2(url: str, head: tuple[int, str], checkpoints: list[tuple[int, str]]) -> None:
    """The anchor tables as the version-2 code created them (its DDL, copied), with an anchor."""
    old = sa.MetaData()
    meta = sa.Table("kansli_meta", old, sa.Column("name", sa.String(128), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False),
                    sa.Column("updated_at", sa.String(40), nullable=False))
    points = sa.Table("kansli_audit_checkpoints", old,
                      sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
                      sa.Column("hash", sa.String(64), nullable=False), sa.Column("note", sa.Text),
                      sa.Column("recorded_at", sa.String(40), nullable=False))
    database = sa.engine.make_url(url).database
    if url.startswith("sqlite") and database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        old.create_all(engine)
        with engine.begin() as connection:
            connection.execute(meta.insert(), [
                {"name": "schema_version", "value": "2", "updated_at": "x"},
                {"name": "audit_head", "value": json.dumps({"seq": head[0], "hash": head[1]}),
                 "updated_at": "x"}])
            rows = [{"seq": seq, "hash": digest, "note": None, "recorded_at": "x"}
                    for seq, digest in checkpoints]
            connection.execute(points.insert(), rows)
    finally:
        engine.dispose()


def test_version_2_checkpoints_become_the_chain_without_a_host(
    database_url: str, kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = AuditLog(kansli_env / "log" / "audit")  # written by version 2, anchored by hand below
    for number in range(2 * CHECKPOINT_EVERY + 30):
        trail.append("item.outcome", data={"item_key": f"K{number}", "outcome": "done"})
    events = [json.loads(line) for line in read_lines(next(trail.directory.glob("*.jsonl")))]
    build_version_2(database_url, trail.head(),
                    [(event["seq"], event["hash"]) for event in events if event["seq"] % 100 == 0])

    store = Store(database_url)  # migrates
    assert store.get_meta("schema_version")[0] == str(SCHEMA_VERSION) == "3"  # type: ignore[index]
    with store.engine.connect() as connection:
        key = sa.inspect(connection).get_pk_constraint(audit_checkpoints.name)
    assert key["constrained_columns"] == ["chain", "seq"]
    assert [seq for seq, _, _ in load_audit_checkpoints(store)] == [100, 200]
    assert anchored_audit_chains(store) == [None]
    assert Store(database_url).get_meta("schema_version")[0] == "3"  # type: ignore[index]
    store.set_meta("schema_version", "2")  # a host still on version 2 opened it meanwhile
    assert [seq for seq, _, _ in load_audit_checkpoints(Store(database_url))] == [100, 200]

    web1 = AuditLog.from_settings(settings_of("web1", monkeypatch), store=store)
    for number in range(CHECKPOINT_EVERY):  # seq 100 again, in another chain
        web1.append("item.outcome", data={"item_key": f"W{number}"})
    assert [seq for seq, _, _ in load_audit_checkpoints(store, chain="web1")] == [100]
    assert load_audit_checkpoints(store)[0][1] == events[99]["hash"]
    verified = kansli("audit", "verify", cwd=kansli_env)
    assert verified.returncode == 0, verified.stderr
    assert "audit trail intact: 230 events" in verified.stdout

    # the migrated checkpoints still locate a re-hashed edit of the old chain
    path = next(trail.directory.glob("*.jsonl"))
    lines = read_lines(path)
    lines[149] = lines[149].replace(b'"outcome":"done"', b'"outcome":"skipped"')
    prev = json.loads(lines[148])["hash"]
    for index in range(149, len(lines)):
        lines[index] = recompute(lines[index], prev)
        prev = json.loads(lines[index])["hash"]
    write_lines(path, lines)
    broken = kansli("audit", "verify", cwd=kansli_env)
    assert broken.returncode == 1 and "events seq 101..200 were changed" in broken.stderr
    report = AuditLog.from_settings(settings_of(None, monkeypatch), store=store).verify()
    assert report.problem is not None and report.problem.kind == ProblemKind.EDITED


# -- the several-hosts rows of docs/audit.md's table "What an attacker can hide" ----------------------


def verdicts(settings: Settings) -> dict[str | None, tuple[str, str | None]]:
    """Per chain: its status and its problem's kind."""
    return {report.chain: (report.status, report.problem.kind if report.problem else None)
            for report in AuditTrails(settings).verify()}


def forge_chain(directory: Path, count: int, key: str | None = None) -> None:
    """A chain of ``count`` events written by hand (a valid unkeyed chain, or an HMAC with a guess)."""
    directory.mkdir(parents=True)
    prev, lines = "0" * 64, []
    for seq in range(1, count + 1):
        event = {"actor": "x@y", "data": {}, "event": "run.started", "host": directory.name, "seq": seq,
                 "prev_hash": prev, "robot": None, "run_id": None, "hash": "",
                 "time": "2026-11-20T08:00:00.000000+00:00"}
        lines.append(recompute(json.dumps(event).encode(), prev, key.encode() if key else None))
        prev = json.loads(lines[-1])["hash"]
    write_lines(directory / "2026-11-20.jsonl", lines)


@pytest.mark.parametrize("key", [None, "the-right-key"])
def test_files_of_several_hosts(key: str | None, kansli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if key:
        monkeypatch.setenv("KANSLI_AUDIT__KEY", key)
    write_chains(monkeypatch, ("web1", "web2", "web3"))
    settings = load_settings()
    # a line of web1's chain copied into web2's: caught in web2's chain, the others intact
    [source] = chain_dir(kansli_env, "web1").glob("*.jsonl")
    [target] = chain_dir(kansli_env, "web2").glob("*.jsonl")
    lines = read_lines(target)
    write_lines(target, [*lines[:6], read_lines(source)[6], *lines[6:]])
    # web3's folder deleted: found from its anchor in the database
    shutil.rmtree(chain_dir(kansli_env, "web3"))
    # a host that never existed, with a chain forged by hand (an HMAC guessed when keyed)
    forge_chain(chain_dir(kansli_env, "fake"), 5, key="a-guess" if key else None)
    assert verdicts(settings) == {
        "fake": ("broken", ProblemKind.EDITED if key else ProblemKind.UNANCHORED),
        "web1": ("intact", None),
        "web2": ("broken", ProblemKind.EDITED),  # line 7 does not link to web2's line 6
        "web3": ("broken", ProblemKind.MISSING_CHAIN),
    }


def test_files_and_database_of_several_hosts(kansli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.store import audit_head_name, kv

    write_chains(monkeypatch, ("web1", "web2"))
    settings = load_settings()
    # NOT caught: a host's folder deleted together with its head and checkpoints in the database
    shutil.rmtree(chain_dir(kansli_env, "web2"))
    store = Store(settings.effective_database_url)
    with store.engine.begin() as connection:
        connection.execute(kv.delete().where(kv.c.name == audit_head_name("web2")))
        connection.execute(audit_checkpoints.delete().where(audit_checkpoints.c.chain == "web2"))
    assert verdicts(settings) == {"web1": ("intact", None)}
