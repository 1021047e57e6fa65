"""Work queues: keys, versions, claims that give each item to one run, operators, stopping early.

On SQLite, and on PostgreSQL when KANSLI_TEST_POSTGRES_URL is set (``.ci/run`` sets it).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.audit import AuditLog
from shared.queue import WorkQueue, fingerprint, list_queues
from shared.runner import Runner
from shared.settings import load_settings
from shared.store import RunRecord, Store, queue_items, utcnow
from tests.conftest import kansli

POSTGRES_URL = os.environ.get("KANSLI_TEST_POSTGRES_URL")
SAMPLE = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'queue.db'}")
    if not POSTGRES_URL:
        pytest.skip("KANSLI_TEST_POSTGRES_URL is not set: PostgreSQL queue tests not run")
    return Store(POSTGRES_URL)


def fresh(store: Store) -> WorkQueue:
    return WorkQueue(store, f"q-{uuid.uuid4().hex[:8]}")


def test_enqueue_adds_a_key_once_and_says_what_it_did(store: Store) -> None:
    queue = fresh(store)
    assert queue.enqueue("A-1", {"belopp": 100}) == "added"
    assert queue.enqueue("A-1", {"belopp": 100}) == "known"
    assert queue.enqueue("A-1", {"belopp": 150}) == "updated"  # not done yet: the new data wins
    assert queue.get("A-1").data == {"belopp": 150}  # type: ignore[union-attr]
    queue.update("A-1", status="done")
    assert queue.enqueue("A-1", {"belopp": 200}) == "changed"  # done: left done, reported
    assert queue.get("A-1").status == "done"  # type: ignore[union-attr]
    assert queue.enqueue("A-1", {"belopp": 200}, on_change="redo") == "updated"
    item = queue.get("A-1")
    assert item is not None and (item.status, item.version, item.data) == ("pending", 2, {"belopp": 200})
    assert queue.counts() == {"pending": 1}


def test_the_fingerprint_sees_only_what_the_robot_reads() -> None:
    from pydantic import BaseModel, Field

    from shared.excel import Row

    class Case(BaseModel):
        ref: str = Field(alias="Ref")

    one = Row(2, {"Ref": "A", "Anteckning": "x"}, model=Case.model_validate({"Ref": "A"}))
    other = Row(9, {"Ref": "A", "Anteckning": "y", "Ny kolumn": 1}, model=Case.model_validate({"Ref": "A"}))
    assert fingerprint(one) == fingerprint(other)  # another row number, unused cells: the same item
    assert fingerprint(one) != fingerprint(Row(2, {"Ref": "B"}, model=Case.model_validate({"Ref": "B"})))


def _claim_all(url: str, queue: str, run_id: str, out: str) -> None:
    store = Store(url)
    work = WorkQueue(store, queue)
    store.create_run(RunRecord(run_id=run_id, robot="r", params={}, trigger="test", actor="t@h",
                               status="running", started_at=utcnow()))
    taken: list[str] = []
    while batch := work.claim(run_id, 7, max_attempts=5):
        taken += [item.key for item in batch]
        for item in batch:
            work.update(item.key, status="done")
    Path(out).write_text(json.dumps(taken))


def test_concurrent_consumers_each_take_every_item_exactly_once(store: Store, tmp_path: Path) -> None:
    queue = fresh(store)
    queue.add(({"key": f"k{n:04d}"} for n in range(600)), "producer")
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"taken-{n}.json" for n in range(3)]
    workers = [context.Process(target=_claim_all, args=(store.url, queue.name, f"run-{uuid.uuid4().hex}",
                                                        str(out))) for out in outs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    taken = [json.loads(out.read_text()) for out in outs]
    every = [key for keys in taken for key in keys]
    assert sorted(every) == [f"k{n:04d}" for n in range(600)]  # none lost, none twice
    assert queue.counts() == {"done": 600}


def test_a_claim_passes_over_items_another_run_is_claiming_right_now(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: claims cannot overlap there")
    queue = fresh(store)
    queue.add(({"key": f"k{n}"} for n in range(9)), "producer")
    taken: list[str] = []
    claiming = threading.Thread(target=lambda: taken.extend(
        item.key for item in queue.claim("run-b", 3, max_attempts=5)))
    with store.engine.connect() as other_run:
        claim = other_run.begin()  # another run's claim of the three oldest, not committed yet
        other_run.execute(sa.select(queue_items.c.key).where(
            queue_items.c.queue == queue.name, queue_items.c.key.in_(["k0", "k1", "k2"])).with_for_update())
        claiming.start()
        claiming.join(60)  # returns at once: the locked rows are passed over, not waited for
        done_while_locked = not claiming.is_alive()
        claim.rollback()
    claiming.join(60)
    assert done_while_locked and sorted(taken) == ["k3", "k4", "k5"]  # the next three, no more
    assert [item.key for item in queue.claim("run-c", 1, max_attempts=5)] == ["k0"]


def test_an_item_of_a_run_that_died_is_taken_again_and_reconciled_first(store: Store) -> None:
    queue = fresh(store)
    queue.add([{"key": "k1"}], None)
    dead = RunRecord(run_id=f"dead-{uuid.uuid4().hex}", robot="r", params={}, trigger="t", actor="t@h",
                     status="running", started_at=utcnow())
    store.create_run(dead)
    [first] = queue.claim(dead.run_id, 10, max_attempts=5)
    assert first.attempts == 1 and queue.claim("other", 10, max_attempts=5) == []  # still running
    store.mark_interrupted([dead.run_id], "gone")
    [again] = queue.claim("other", 10, max_attempts=5)
    assert (again.key, again.attempts) == ("k1", 2)


def test_failed_items_wait_their_turn_and_stop_at_the_attempt_limit(store: Store) -> None:
    queue = fresh(store)
    queue.add([{"key": "later"}, {"key": "spent"}, {"key": "bad"}], None)
    queue.update("later", status="app_error", attempts=1, not_before="2999-01-01T00:00:00+00:00")
    queue.update("spent", status="app_error", attempts=5)
    queue.update("bad", status="business_error", attempts=1)
    assert queue.claim("r", 10, max_attempts=5) == [] and queue.ready_count(5) == 0
    assert queue.retry(["spent", "later"]) == ["later", "spent"]
    assert sorted(item.key for item in queue.claim("r", 10, max_attempts=5)) == ["later", "spent"]
    assert queue.retry() == ["bad"]
    assert queue.forget("bad") and queue.get("bad") is None and not queue.forget("bad")


def test_retry_never_makes_a_done_key_doable(store: Store) -> None:
    queue = fresh(store)
    queue.add([{"key": "k"}], None)
    queue.update("k", status="done")
    assert queue.retry(["k"]) == [] and queue.get("k").status == "done"  # type: ignore[union-attr]


# -- through the runner: producers feed consumers, the attempt budget, stopping early ---------------


@pytest.fixture
def runner(kansli_env: Path, monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.setenv("KANSLI_QUEUE__RETRY_AFTER_S", "0")
    return Runner(load_settings(), robots_package="tests.sample_robots")


def test_a_producer_feeds_a_consumer_which_does_each_item_once(runner: Runner, tmp_path: Path) -> None:
    marker = tmp_path / "handled.txt"
    assert runner.run("producer", {"count": 4}).status == "succeeded"
    first = runner.run("consumer", {"marker": str(marker), "fail": "m2"})
    assert (first.status, first.items_done, first.items_app_error) == ("partial", 3, 1)
    assert runner.run("producer", {"count": 6}).status == "succeeded"  # m0-m3 known, m4, m5 new
    second = runner.run("consumer", {"marker": str(marker)})
    assert (second.status, second.items_done, second.items_total) == ("succeeded", 3, 3)  # m2 again
    assert sorted(marker.read_text().split()) == [f"m{n}" for n in range(6)]
    assert list_queues(runner.store)["inbox"] == {"done": 6}
    taken = {item.key: item.outcome for item in runner.store.list_items(second.run_id)}
    assert taken == {"m2": "done", "m4": "done", "m5": "done"}
    events = [event for event in AuditLog.from_settings(runner.settings).search()
              if event["event"] == "item.enqueued"]
    assert len(events) == 10 and {e["data"]["result"] for e in events} == {"added", "known"}


def test_an_item_that_keeps_failing_stays_app_error_until_an_operator_retries_it(
    runner: Runner, kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANSLI_QUEUE__MAX_ATTEMPTS", "3")  # the retry settings give 3 per run
    runner = Runner(load_settings(), robots_package="tests.sample_robots")
    runner.run("producer", {"count": 1})
    assert runner.run("consumer", {"fail": "m0"}).items_app_error == 1
    idle = runner.run("consumer", {})
    assert idle.items_total == 0  # its attempts are spent: not taken again
    listed = kansli("queue", "show", "inbox", "--status", "app_error", "--json", cwd=kansli_env,
                    env={**SAMPLE, "KANSLI_QUEUE__MAX_ATTEMPTS": "3"})
    [shown] = json.loads(listed.stdout)
    assert (shown["key"], shown["attempts"], shown["error_class"]) == ("m0", 3, "TargetError")
    retried = kansli("queue", "retry", "inbox", "m0", cwd=kansli_env, env=SAMPLE)
    assert retried.returncode == 0, retried.stderr
    assert runner.run("consumer", {}).items_done == 1
    [action] = [e for e in AuditLog.from_settings(runner.settings).search() if e["event"] == "queue.retry"]
    assert action["actor"] and action["data"] == {"queue": "inbox", "keys": ["m0"], "all_failed": False}


def test_a_target_down_stops_the_run_after_n_items_and_leaves_the_rest_pending(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANSLI_QUEUE__STOP_AFTER_FAILURES", "4")
    runner = Runner(load_settings(), robots_package="tests.sample_robots")
    runner.run("producer", {"count": 30})
    stopped = runner.run("consumer", {"fail": "*"})
    assert stopped.status == "failed" and stopped.items_app_error == 4 and stopped.items_total == 4
    assert "stopped early: 4 items in a row failed with TargetError" in (stopped.error or "")
    counts = list_queues(runner.store)["inbox"]
    assert counts == {"app_error": 4, "pending": 26}
    finished = runner.run("consumer", {})
    assert (finished.status, finished.items_done) == ("succeeded", 30)
