"""A run's log and report from any host: copies in the (PostgreSQL) database, read where the folder is not."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.run_files import load_run_file, run_file, store_run_files
from shared.store import RunRecord, open_store, run_files, utcnow
from tests.conftest import kansli

SAMPLE = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}
on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def host(kansli_env: Path, name: str) -> dict[str, str]:
    """The environment of one robot host: its own data dir (the audit trail's log dir is shared)."""
    return {**SAMPLE, "KANSLI_HOST_ID": name, "KANSLI_DATA_DIR": str(kansli_env / name / "data")}


def out_of_sight(kansli_env: Path, name: str) -> Path:
    """Move a host's data dir away: the hosts of a test share one machine, other hosts' do not."""
    return (kansli_env / name).rename(kansli_env / f"{name}-elsewhere")


def run_on(kansli_env: Path, name: str, *args: str) -> str:
    result = kansli("run", *args, "--json", cwd=kansli_env, env=host(kansli_env, name))
    return str(json.loads(result.stdout)["run"]["run_id"])


@on_postgres
def test_a_run_on_host_a_is_seen_in_full_from_host_b(database_url: str, kansli_env: Path) -> None:
    run_id = run_on(kansli_env, "host-a", "counting", "-p", "count=3", "-p", "bad=k1")
    folder = out_of_sight(kansli_env, "host-a") / "data" / "runs" / run_id
    b = host(kansli_env, "host-b")
    shown = json.loads(kansli("show", run_id, "--json", cwd=kansli_env, env=b).stdout)
    assert shown["run"]["status"] == "partial" and [i["key"] for i in shown["items"]] == ["k0", "k1", "k2"]
    assert run_id in kansli("runs", cwd=kansli_env, env=b).stdout

    logs = kansli("logs", run_id, cwd=kansli_env, env=b)
    assert logs.returncode == 0, logs.stderr
    local = (folder / "log.txt").read_text(encoding="utf-8")
    assert logs.stdout == local and f"run {run_id} of counting started" in logs.stdout
    assert f"log of run {run_id} from the database (the run ran on host host-a; stored " in logs.stderr
    lines = kansli("logs", run_id, "--json", cwd=kansli_env, env=b).stdout.splitlines()
    assert lines and all(json.loads(line)["record"]["extra"]["run_id"] == run_id for line in lines)

    report = kansli("report", run_id, cwd=kansli_env, env=b)
    assert report.returncode == 0, report.stderr
    copy = Path(report.stdout.strip())
    assert copy == kansli_env / "host-b" / "data" / "runs" / run_id / "report.html"
    assert copy.read_bytes() == (folder / "report.html").read_bytes()
    assert f"report of run {run_id} from the database (the run ran on host host-a" in report.stderr

    folder.parent.parent.parent.rename(kansli_env / "host-a")  # back on its host
    here = kansli("logs", run_id, cwd=kansli_env, env=host(kansli_env, "host-a"))
    assert here.stdout == local and "from the database" not in here.stderr  # its own host: the file


@on_postgres
def test_a_run_still_running_on_another_host_says_where_its_log_is(
    database_url: str, kansli_env: Path
) -> None:
    store = open_store(database_url)
    elsewhere = "/srv/kansli/data/runs/20260101-120000-000-abcd"
    store.create_run(RunRecord(run_id="20260101-120000-000-abcd", robot="counting", params={}, trigger="cli",
                               actor="robot@host-a", status="running", started_at=utcnow(), pid=1,
                               run_dir=elsewhere))
    b = host(kansli_env, "host-b")
    logs = kansli("logs", "20260101-120000-000-abcd", cwd=kansli_env, env=b)
    assert logs.returncode == 1
    assert ("run 20260101-120000-000-abcd is still running on host host-a: its log is stored in the "
            f"database when it ends; until then it is in {elsewhere}/log.txt on that host") in logs.stderr
    report = kansli("report", "20260101-120000-000-abcd", cwd=kansli_env, env=b)
    assert report.returncode == 0, report.stderr
    assert "made here from the run history: the run is still running on host host-a" in report.stderr
    assert "counting" in Path(report.stdout.strip()).read_text(encoding="utf-8")


@on_postgres
def test_a_killed_run_closed_on_its_host_leaves_its_log_for_the_others(
    database_url: str, kansli_env: Path
) -> None:
    a = {**host(kansli_env, "host-a"), "KANSLI_TEST_CRASH_AT": "item.recorded:2"}
    killed = kansli("run", "counting", "-p", "count=4", cwd=kansli_env, env=a)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = open_store(database_url)
    [record] = store.list_runs(robot="counting")
    assert load_run_file(store, record.run_id, "log.txt") is None  # it died before it could store it
    assert kansli("runs", cwd=kansli_env, env=host(kansli_env, "host-a")).returncode == 0  # reaps it
    stored = load_run_file(store, record.run_id, "log.txt")
    out_of_sight(kansli_env, "host-a")
    assert stored is not None and stored.host == "host-a" and f"run {record.run_id}" in stored.data.decode()
    logs = kansli("logs", record.run_id, cwd=kansli_env, env=host(kansli_env, "host-b"))
    assert logs.returncode == 0 and "from the database" in logs.stderr and "k1" in logs.stdout


@on_postgres
def test_storing_is_never_fatal_and_compresses(database_url: str, kansli_env: Path, tmp_path: Path) -> None:
    store = open_store(database_url)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "log.txt").write_text("rad\n" * 10_000, encoding="utf-8")
    assert store_run_files(store, "r1", folder, "host-a") == ["log.txt"]
    with store.engine.connect() as connection:
        query = sa.select(run_files.c.size, sa.func.length(run_files.c.content))
        size, stored = connection.execute(query).one()
    assert size == 40_000 and stored < 1_000
    assert store_run_files(store, "r1", tmp_path / "gone", "host-a") == []
    with store.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE kansli_run_files"))
    assert store_run_files(store, "r2", folder, "host-a") == []  # logged, not raised


def test_on_sqlite_nothing_is_stored_and_the_folder_is_read(kansli_env: Path) -> None:
    result = kansli("run", "counting", "-p", "count=2", "--json", cwd=kansli_env, env=SAMPLE)
    run_id = json.loads(result.stdout)["run"]["run_id"]
    store = open_store()
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(run_files)).scalar() == 0
    record = store.get_run(run_id)
    assert record is not None and isinstance(run_file(store, record, "log.txt"), Path)
    logs = kansli("logs", run_id, cwd=kansli_env)
    assert logs.returncode == 0 and "from the database" not in logs.stderr
    (Path(record.run_dir or "") / "log.txt").unlink()
    missing = kansli("logs", run_id, cwd=kansli_env)
    assert missing.returncode == 1 and f"run {run_id} has no log at" in missing.stderr


@on_postgres
def test_cleanup_deletes_the_copies_with_the_run_folders(database_url: str, kansli_env: Path) -> None:
    run_id = run_on(kansli_env, "host-a", "counting", "-p", "count=1")
    newer = run_on(kansli_env, "host-a", "counting", "-p", "count=1")
    store = open_store(database_url)
    with store.engine.begin() as connection:
        connection.execute(run_files.update().where(run_files.c.run_id == run_id)
                           .values(stored_at="2020-01-01T00:00:00.000000+00:00"))
    env = {**host(kansli_env, "host-a"), "KANSLI_RETENTION__RUNS_DAYS": "30"}
    assert kansli("cleanup", cwd=kansli_env, env=env).returncode == 0
    assert load_run_file(store, run_id, "log.txt") is None
    assert load_run_file(store, newer, "log.txt") is not None
