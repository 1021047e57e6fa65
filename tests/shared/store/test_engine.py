"""The store's engines (shared.store.engine): SQLite in WAL mode, one database shared by two processes
(on PostgreSQL too when KANSLI_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path

import sqlalchemy as sa

from shared.store import ItemRecord, Store
from tests.shared.store.test_history import _record


def _write_runs(url: str, robot: str, count: int) -> None:
    from shared.queue import WorkQueue

    store = Store(url)
    for index in range(count):
        record = _record(robot)
        store.create_run(record)
        store.record_item(ItemRecord(record.run_id, f"k{index}", robot, "done"))
        WorkQueue(store, robot).add([{"key": f"k{index}"}], record.run_id)
        record.status = "succeeded"
        store.finish_run(record)


def test_two_processes_share_one_database(store_url: str) -> None:
    from shared.queue import WorkQueue

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
    assert WorkQueue(store, robot).counts() == {"pending": 40}


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert isinstance(store.engine, sa.engine.Engine)
