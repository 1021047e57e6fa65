"""The run history store, on SQLite and (when KANSLI_TEST_POSTGRES_URL is set) on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.store import ItemRecord, RunRecord, Store, utcnow

POSTGRES_URL = os.environ.get("KANSLI_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    if not POSTGRES_URL:
        pytest.skip("KANSLI_TEST_POSTGRES_URL is not set: PostgreSQL store tests not run")
    return POSTGRES_URL


def _record(robot: str, run_id: str | None = None, status: str = "running") -> RunRecord:
    return RunRecord(run_id=run_id or uuid.uuid4().hex, robot=robot, params={"input": "å.xlsx"},
                     trigger="test", actor="tester@host", status=status, started_at=utcnow())


def test_runs_round_trip(store_url: str) -> None:
    store = Store(store_url)
    robot = f"robot-{uuid.uuid4().hex[:8]}"
    record = _record(robot)
    store.create_run(record)
    record.status, record.finished_at, record.items_done = "succeeded", utcnow(), 4
    store.finish_run(record)
    loaded = store.get_run(record.run_id)
    assert loaded is not None and loaded.status == "succeeded" and loaded.items_done == 4
    assert loaded.params == {"input": "å.xlsx"}
    assert [run.run_id for run in store.list_runs(robot=robot)] == [record.run_id]
    assert store.find_run(record.run_id[:12]) is not None


def test_ledger_keeps_the_latest_state_per_item(store_url: str) -> None:
    store = Store(store_url)
    robot, batch = f"robot-{uuid.uuid4().hex[:8]}", "b1"
    store.record_item(ItemRecord("run1", "k1", robot, "in_progress", attempts=1), batch)
    store.record_item(ItemRecord("run1", "k1", robot, "done", attempts=1, output={"x": "ö"}), batch)
    store.record_item(ItemRecord("run1", "k2", robot, "app_error", attempts=3), batch)
    ledger = store.load_ledger(robot, batch)
    assert ledger["k1"].status == "done" and ledger["k1"].output == {"x": "ö"}
    assert ledger["k2"].status == "app_error" and ledger["k2"].attempts == 3
    store.reset_ledger(robot, batch)
    assert store.load_ledger(robot, batch) == {}


def _write_runs(url: str, robot: str, count: int) -> None:
    store = Store(url)
    for index in range(count):
        record = _record(robot)
        store.create_run(record)
        store.record_item(ItemRecord(record.run_id, f"k{index}", robot, "done"), "batch")
        record.status = "succeeded"
        store.finish_run(record)


def test_two_processes_share_one_database(store_url: str) -> None:
    robot = f"robot-{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_runs, args=(store_url, robot, 40)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = Store(store_url)
    assert len(store.list_runs(robot=robot, limit=1000)) == 80
    assert len(store.load_ledger(robot, "batch")) == 40


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert isinstance(store.engine, sa.engine.Engine)


def test_an_ambiguous_run_id_prefix_is_a_usage_error_naming_the_candidates(store_url: str) -> None:
    from shared.errors import UsageError

    store = Store(store_url)
    prefix = f"amb{uuid.uuid4().hex[:8]}-"
    run_ids = [f"{prefix}{index}" for index in range(7)]
    for run_id in run_ids:
        store.create_run(_record("ambiguous", run_id))
    with pytest.raises(UsageError, match=f"'{prefix}' is ambiguous: 7 runs match") as raised:
        store.find_run(prefix)
    assert f"{prefix}6, {prefix}5" in str(raised.value) and "and 2 more" in str(raised.value)
    assert store.find_run(f"{prefix}3") is not None  # a full id that is also a prefix of none
    assert store.find_run(f"{prefix}9") is None
