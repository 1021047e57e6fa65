"""The store's runs and their items (shared.store.history), on SQLite and (when KANSLI_TEST_POSTGRES_URL
is set) on PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from shared.store import ItemRecord, RunRecord, Store, utcnow


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
