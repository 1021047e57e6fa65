"""Work items: outcomes, retries, resuming a batch, reconcile, the async and thread paths, crash points."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from shared.errors import (
    InputError,
    LoginError,
    RunCancelledError,
    TargetUnavailableError,
    UncertainSubmitError,
)
from shared.items import CRASH_AT_ENV, MAX_ERROR_LENGTH, ItemResult, WorkItem, crash_point, describe_error
from shared.queue import QueueItem, WorkQueue
from shared.redaction import SECRET_MASK, register_secret
from shared.registry import robot, spec_of
from shared.runner import Run, new_run_id
from shared.settings import Settings, load_settings
from shared.store import Store, open_store

REPO = Path(__file__).resolve().parents[2]
ATTEMPTS = 4  # not the default (3): the retry count is seen to come from the settings
MODES = ["sync", "async"]
NewRun = Callable[[], Run]


@robot()
def items_probe(run: Run) -> None:
    """A robot whose items the tests hand to its run directly."""


SPEC = spec_of(items_probe)


def make_run(settings: Settings, store: Store) -> Run:
    run_id = new_run_id()
    return Run(run_id=run_id, robot=SPEC, params=SPEC.validate({}), trigger="test", actor="tester@host",
               run_dir=settings.runs_dir / run_id, settings=settings, store=store)


@pytest.fixture
def settings(kansli_env: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("KANSLI_RETRY__ATTEMPTS", str(ATTEMPTS))
    return load_settings()


@pytest.fixture
def new_run(settings: Settings) -> NewRun:
    store = open_store(settings.effective_database_url)
    return lambda: make_run(settings, store)


def keyed(count: int) -> list[WorkItem]:
    return [WorkItem(key=f"k{n}", data=n, position=n) for n in range(count)]


def earlier(run: Run, key: str, status: str, output: Any = None) -> None:
    """The robot's queue as an earlier run left it, written through the queue's own API."""
    queue = WorkQueue(run.store, SPEC.name)
    queue.add([{"key": key}], "earlier-run")
    queue.update(key, status=status, attempts=1, output=output, run_id="earlier-run")


def in_queue(run: Run) -> dict[str, QueueItem]:
    """The robot's queue, by key."""
    return {item.key: item for item in WorkQueue(run.store, SPEC.name).items(limit=1000)}


def process(run: Run, mode: str, items: Sequence[WorkItem], handler: Callable[[WorkItem], Any],
            reconcile: Callable[[WorkItem], Any] | None = None) -> list[ItemResult]:
    """``run.process``, or ``run.process_async`` with the same steps wrapped as coroutines."""
    if mode == "sync":
        return run.process(items, handler, reconcile=reconcile)

    async def handle(item: WorkItem) -> Any:
        return handler(item)

    async def check(item: WorkItem) -> Any:
        return reconcile(item) if reconcile else None

    return asyncio.run(run.process_async(items, handle, reconcile=reconcile and check))


def python(code: str, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **({CRASH_AT_ENV: crash_at} if crash_at else {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("mode", MODES)
def test_a_returning_handler_ends_done_with_its_output_also_once_target_errors_clear(
    new_run: NewRun, mode: str
) -> None:
    run, asked = new_run(), []

    def handle(item: WorkItem) -> dict[str, int]:
        if item.key == "k1" and item.attempt < 3:
            raise TargetUnavailableError("the target answered 502")
        return {"double": item.data * 2}

    results = process(run, mode, keyed(2), handle, reconcile=lambda item: asked.append(item.attempt))
    assert [(r.outcome, r.output, r.attempts, r.error, r.reconciled) for r in results] == [
        ("done", {"double": 0}, 1, None, False), ("done", {"double": 2}, 3, None, False)]
    assert asked == [2, 3]  # before each retry of k1, never before a first attempt
    assert [(i.outcome, i.output, i.attempts) for i in run.store.list_items(run.run_id)] == [
        ("done", {"double": 0}, 1), ("done", {"double": 2}, 3)]
    assert [e.status for e in in_queue(run).values()] == ["done", "done"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("error", "outcome", "tries"), [
    (InputError("rad 3: ogiltigt datum"), "business_error", 1),
    (TargetUnavailableError("the target answered 503"), "app_error", ATTEMPTS),
    (LoginError("the credentials were refused"), "app_error", 1),
    (UncertainSubmitError("no answer to the submit"), "app_error", 1),  # no reconcile step: no retry
    (KeyError("Diarienummer"), "app_error", 1),
], ids=["input", "target", "login", "uncertain-without-reconcile", "unexpected"])
def test_a_failing_handler_is_tried_as_often_as_its_error_allows(
    new_run: NewRun, mode: str, error: Exception, outcome: str, tries: int
) -> None:
    run, attempts_seen = new_run(), []

    def handle(item: WorkItem) -> None:
        attempts_seen.append(item.attempt)
        raise error

    [result] = process(run, mode, keyed(1), handle)
    assert (result.outcome, result.attempts, result.error_class) == (outcome, tries, type(error).__name__)
    assert attempts_seen == list(range(1, tries + 1))
    [stored] = run.store.list_items(run.run_id)
    assert (stored.outcome, stored.attempts, stored.error) == (outcome, tries, describe_error(error))
    assert in_queue(run)["k0"].status == outcome


def test_items_done_by_an_earlier_run_are_skipped_in_its_queue_only(new_run: NewRun) -> None:
    new_run().process(keyed(2), lambda item: item.data * 10)
    second, handled = new_run(), []
    results = second.process(keyed(3), lambda item: handled.append(item.key) or "new")
    assert [(r.outcome, r.output) for r in results] == [("skipped", 0), ("skipped", 10), ("done", "new")]
    assert handled == ["k2"]
    assert [i.outcome for i in second.store.list_items(second.run_id)] == ["skipped", "skipped", "done"]
    assert [r.outcome for r in new_run().process(keyed(2), str, queue="another")] == ["done", "done"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("status", "answer", "reconciles", "handles"), [
    ("in_progress", "KS-found", True, False),
    ("in_progress", None, True, True),
    ("app_error", "KS-found", True, False),
    ("business_error", "KS-found", False, True),
])
def test_an_unfinished_item_is_reconciled_before_it_is_handled_again(
    new_run: NewRun, mode: str, status: str, answer: str | None, reconciles: bool, handles: bool
) -> None:
    run, asked, handled = new_run(), [], []
    earlier(run, "k0", status)

    def reconcile(item: WorkItem) -> str | None:
        asked.append(item.attempt)
        return answer

    [result] = process(run, mode, keyed(1), lambda item: handled.append(item.attempt) or "KS-new",
                       reconcile=reconcile)
    assert (asked == [2], handled == [2]) == (reconciles, handles)
    assert (result.outcome, result.attempts, result.reconciled) == ("done", 2, not handles)
    assert result.output == ("KS-new" if handles else answer)
    assert in_queue(run)["k0"].output == result.output


def crashing_batch() -> None:
    """Run in a subprocess by the test below: each item has its effect (a file), then a crash point."""
    settings = load_settings()
    run = make_run(settings, open_store(settings.effective_database_url))

    def submit(item: WorkItem) -> str:
        Path(f"case-{item.key}").write_text(f"KS-{item.key}")
        crash_point("submitted")
        sys.stdout.write(f"{item.position + 1}\n")
        sys.stdout.flush()
        return f"KS-{item.key}"

    run.process(keyed(4), submit)


def test_a_run_killed_after_an_effect_resumes_by_reconciling_that_item(new_run: NewRun) -> None:
    killed = python("from tests.shared.test_items import crashing_batch; crashing_batch()", "submitted:3")
    assert (killed.returncode, killed.stdout.split()) == (-signal.SIGKILL, ["1", "2"]), killed.stderr
    handled: list[str] = []

    def reconcile(item: WorkItem) -> str | None:
        case = Path(f"case-{item.key}")
        return case.read_text() if case.exists() else None

    results = new_run().process(keyed(4), lambda item: handled.append(item.key) or f"KS-{item.key}",
                                reconcile=reconcile)
    assert [(r.outcome, r.output, r.reconciled) for r in results] == [
        ("skipped", "KS-k0", False), ("skipped", "KS-k1", False), ("done", "KS-k2", True),
        ("done", "KS-k3", False)]
    assert handled == ["k3"]


@pytest.mark.parametrize("workers", [1, 3])
def test_the_async_path_handles_each_item_once_workers_at_a_time_in_input_order(
    new_run: NewRun, workers: int
) -> None:
    run, handled = new_run(), []
    earlier(run, "k0", "done", output=0)
    active = peak = 0

    async def handle(item: WorkItem) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        for _ in range(10 - item.position):  # later items finish first when several are in flight
            await asyncio.sleep(0)
        active -= 1
        handled.append(item.key)
        return item.position

    results = asyncio.run(run.process_async(keyed(7), handle, workers=workers))
    assert sorted(handled) == [f"k{n}" for n in range(1, 7)]
    assert [(r.key, r.outcome, r.output) for r in results] == [
        (f"k{n}", "skipped" if n == 0 else "done", n) for n in range(7)]
    assert peak == workers
    assert (handled == sorted(handled)) == (workers == 1)


def test_the_thread_pool_path_handles_each_item_once_two_at_a_time_in_input_order(new_run: NewRun) -> None:
    run, handled, threads = new_run(), [], set()
    earlier(run, "k0", "done", output=0)
    together = threading.Barrier(2, timeout=10)  # broken (items fail) unless two handlers overlap

    def handle(item: WorkItem) -> int:
        together.wait()
        handled.append(item.key)
        threads.add(threading.current_thread().name)
        return item.position

    results = run.process(keyed(7), handle, workers=2)
    assert [(r.key, r.outcome, r.output) for r in results] == [
        (f"k{n}", "skipped" if n == 0 else "done", n) for n in range(7)]
    assert sorted(handled) == [f"k{n}" for n in range(1, 7)] and len(threads) == 2


def claimed_ahead(run: Run, handler: Callable[[WorkItem], Any] = lambda item: None) -> list[int]:
    """Consume the robot's queue; at each item, how many items the run holds (claimed, not done)."""
    queue, held = WorkQueue(run.store, SPEC.name), []

    def handle(item: WorkItem) -> None:
        held.append(queue.counts().get("in_progress", 0))
        handler(item)

    run.consume(handle)
    return held


def test_a_consumer_claims_one_item_first_then_up_to_fifty_when_items_are_fast(new_run: NewRun) -> None:
    run = new_run()
    WorkQueue(run.store, SPEC.name).add(({"key": f"k{n:03d}"} for n in range(200)), "producer")
    held = claimed_ahead(run)
    assert len(held) == 200 and held[:4] == [1, 2, 1, 4]  # claims of 1, 2, 4, ... items
    assert max(held) == 50  # fast items: a chunk of 50 a claim, as before


def test_a_consumer_of_slow_items_holds_about_a_second_of_them_so_other_runs_get_the_rest(
    new_run: NewRun,
) -> None:
    run = new_run()
    WorkQueue(run.store, SPEC.name).add(({"key": f"k{n:02d}"} for n in range(25)), "producer")
    held = claimed_ahead(run, lambda item: time.sleep(0.1))  # a slow target: 100 ms an item
    assert len(held) == 25 and held[0] == 1
    assert max(held) <= 10  # never more than about 1 s of work (CLAIM_SECONDS), a slow machine less


CRASH_LOOP = ("from shared.items import crash_point\n"
              "for n in range(1, 6): crash_point('submitted'); print(n, flush=True); crash_point('other')")


@pytest.mark.parametrize(("crash_at", "returncode", "passes"), [
    (None, 0, ["1", "2", "3", "4", "5"]),
    ("validated:1", 0, ["1", "2", "3", "4", "5"]),
    ("submitted:3", -signal.SIGKILL, ["1", "2"]),
])
def test_a_crash_point_kills_the_process_only_at_its_named_nth_pass(
    crash_at: str | None, returncode: int, passes: list[str]
) -> None:
    done = python(CRASH_LOOP, crash_at)
    assert (done.returncode, done.stdout.split()) == (returncode, passes), done.stderr


def test_describe_error_gives_one_bounded_line() -> None:
    assert describe_error(KeyError("Diarienummer")) == "KeyError: 'Diarienummer'"
    assert describe_error(InputError("rad 7:\n  fel\tdatum")) == "rad 7: fel datum"
    assert describe_error(InputError("x" * MAX_ERROR_LENGTH)) == "x" * MAX_ERROR_LENGTH
    long = describe_error(InputError("rad 7: " + "y" * 2000))
    assert len(long) == MAX_ERROR_LENGTH and long.startswith("rad 7: yyy") and long.endswith("…")


def test_no_personnummer_or_secret_reaches_the_stored_error(new_run: NewRun, settings: Settings) -> None:
    secret = "kanarie-hemlighet-5521"
    register_secret(secret)

    def handle(item: WorkItem) -> None:
        raise TargetUnavailableError(f"POST /arende for 19811218-9876 with {secret} failed: " + "z" * 900)

    run = new_run()
    [result] = run.process(keyed(1), handle)
    [stored] = run.store.list_items(run.run_id)
    assert stored.error == result.error and len(stored.error or "") == MAX_ERROR_LENGTH
    assert "for ******-**** with " + SECRET_MASK in (stored.error or "")
    for path in settings.data_dir.rglob("*"):  # the database and its WAL, byte for byte
        if path.is_file():
            assert b"811218" not in path.read_bytes() and secret.encode() not in path.read_bytes()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_cancelled_run_stops_the_batch_instead_of_failing_the_item(new_run: NewRun, mode: str) -> None:
    handled: list[str] = []

    def handle(item: WorkItem) -> None:
        handled.append(item.key)
        raise RunCancelledError("run cancelled by signal SIGTERM")

    with pytest.raises(RunCancelledError):
        process(new_run(), mode, keyed(2), handle)
    assert handled == ["k0"]


def test_a_duplicate_key_is_a_business_error_not_the_end_of_the_batch(new_run: NewRun) -> None:
    items = [WorkItem("k0", position=0), WorkItem("k0", position=1), WorkItem("k1", position=2)]
    run = new_run()
    results = run.process(items, lambda item: "ok")
    assert [(r.outcome, r.error_class) for r in results] == [
        ("done", None), ("business_error", "InputError"), ("done", None)]
    stored = {item.key: item.outcome for item in run.store.list_items(run.run_id)}
    assert stored == {"k0": "done", "k0 (duplicate at 1)": "business_error", "k1": "done"}
    again = new_run()  # k0 done before and repeated: one skip, one duplicate, no crash
    assert [r.outcome for r in again.process(items, lambda item: "ok")] == [
        "skipped", "business_error", "skipped"]
