"""The run history store, on SQLite and (when KANSLI_TEST_POSTGRES_URL is set) on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.store import SCHEMA_VERSION, ItemRecord, RunRecord, Store, utcnow

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


def test_a_runs_items_keep_their_latest_state_and_count_by_outcome(store_url: str) -> None:
    store = Store(store_url)
    robot = f"robot-{uuid.uuid4().hex[:8]}"
    record = _record(robot)
    store.create_run(record)
    store.record_item(ItemRecord(record.run_id, "k1", robot, "in_progress", attempts=1))
    store.record_item(ItemRecord(record.run_id, "k1", robot, "done", attempts=1, output={"x": "ö"},
                                 queue=robot, note="version 2"))
    store.record_item(ItemRecord(record.run_id, "k2", robot, "app_error", attempts=3))
    items = {item.key: item for item in store.list_items(record.run_id)}
    assert (items["k1"].outcome, items["k1"].output, items["k1"].note) == ("done", {"x": "ö"}, "version 2")
    assert store.count_items(record.run_id) == {"done": 1, "app_error": 1}


def test_a_run_closed_by_another_process_gets_the_counts_of_its_items(store_url: str) -> None:
    store = Store(store_url)
    robot = f"robot-{uuid.uuid4().hex[:8]}"
    record = _record(robot)
    store.create_run(record)
    for index in range(7):
        store.record_item(ItemRecord(record.run_id, f"k{index}", robot, "done" if index < 6 else "app_error"))
    assert store.mark_interrupted([record.run_id], "gone") == 1
    closed = store.get_run(record.run_id)
    assert closed is not None and closed.status == "interrupted"
    assert (closed.items_total, closed.items_done, closed.items_app_error) == (7, 6, 1)


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


V1_LEDGER = Path(__file__).parent / "data" / "ledger-v1.sqlite"


def test_a_version_1_ledger_is_migrated_into_queues_keyed_by_business_key(tmp_path: Path) -> None:
    """The fixture was written by the version-1 code (robot + input-file ledger), never edited since."""
    import shutil

    from shared.queue import WorkQueue, list_queues

    copy = tmp_path / "kansli.db"
    shutil.copy(V1_LEDGER, copy)
    store = Store(f"sqlite:///{copy}")
    assert store.get_meta("schema_version") is not None
    assert store.get_meta("schema_version")[0] == str(SCHEMA_VERSION)  # type: ignore[index]
    assert list_queues(store) == {"counting": {"done": 6}, "evidence": {"done": 2, "business_error": 1,
                                                                        "app_error": 1}}
    counting = WorkQueue(store, "counting")
    # k2 was a business error in one input and done in another: done wins, once
    assert counting.get("k2").status == "done"  # type: ignore[union-attr]
    assert counting.get("k1").output == {"value": 2}  # type: ignore[union-attr]
    evidence = WorkQueue(store, "evidence").get("k2")
    assert evidence is not None and (evidence.status, evidence.attempts) == ("app_error", 3)
    runs = store.list_runs(limit=10)
    assert len(runs) == 3 and all(run.status == "partial" or run.status == "succeeded" for run in runs)
    assert {item.queue for run in runs for item in store.list_items(run.run_id)} == {None}
    Store(f"sqlite:///{copy}")  # opening again migrates nothing twice
    assert list_queues(store)["counting"] == {"done": 6}
    store.set_meta("schema_version", "1")  # a host still on version 1 opened the database meanwhile
    Store(f"sqlite:///{copy}")  # the ledger is copied again: keys already in their queue are kept
    assert list_queues(store)["counting"] == {"done": 6}


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
