"""The store's schema and its migrations (shared.store.schema)."""

from __future__ import annotations

from pathlib import Path

from shared.store import SCHEMA_VERSION, Store

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
