"""Work items: each a key in a work queue, processed to a stored outcome exactly once.

Outcomes of an item in a run:

* ``done``: the handler returned; its return value is the item's output;
* ``business_error``: the handler raised :class:`~shared.errors.InputError` (bad data): never retried;
  also a row without a key, or a key that appears twice in one input (on the later row);
* ``app_error``: the target misbehaved (:class:`~shared.errors.TargetError`, retried with backoff
  until the attempts run out) or the handler failed unexpectedly (not retried);
* ``skipped``: the key is ``done`` in its queue (by any earlier run, from any file): not done again.
  When its data changed since, the result's ``note`` says "done before, data changed" and
  ``changed`` is true, unless the robot asked for ``on_change="redo"`` (a new version is done).

An item is identified by its queue (default: the robot's name) and its business key
(:mod:`shared.queue`). Every attempt is written to the queue before the handler runs
(``in_progress``) and after, so a run killed at any point resumes without doing an item twice. An
item whose earlier attempt did not finish may already have had its effect (a form submitted just
before the crash): when the robot gives a ``reconcile`` step, it is asked first whether the effect
exists, and its answer is taken as the output. ``--rerun-all`` asks it for every item.

When ``stop_after_failures`` items in a row fail with the same application error (the target is
down, a form changed), the run stops with :class:`~shared.errors.SystemicFailureError`; the items
not yet taken stay pending.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, Protocol

from loguru import logger
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from shared.errors import InputError, KansliError, RunCancelledError, SystemicFailureError, is_retryable
from shared.redaction import redact

if TYPE_CHECKING:  # SQLAlchemy (the store, the queue) is imported where items are recorded:
    # robots import this module, and listing them must not pay for the database layer
    from shared.queue import QueueItem
    from shared.settings import QueueSettings, RetrySettings
    from shared.store import Store

OUTCOMES = ("done", "business_error", "app_error", "skipped")
#: Items of an input are entered in the queue this many at a time (as shared.queue.CHUNK).
PLAN_CHUNK = 500
MAX_ERROR_LENGTH = 500
OnChange = Literal["skip", "redo"]
DONE_BEFORE = "done before"
DATA_CHANGED = "done before, data changed"
#: Crash tests: ``KANSLI_TEST_CRASH_AT=NAME:N`` SIGKILLs the process the N-th time it passes
#: ``crash_point(NAME)``; unset (always, outside tests), a crash point does nothing.
CRASH_AT_ENV = "KANSLI_TEST_CRASH_AT"
_crash_passes: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """Mark a point where a crash would hurt most (after an effect, before its ledger entry)."""
    wanted = os.environ.get(CRASH_AT_ENV)
    if not wanted or wanted.partition(":")[0] != name:
        return
    _crash_passes[name] += 1
    if _crash_passes[name] >= int(wanted.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class WorkItem:
    """One unit of work: its business key (unique in its queue), its data, its place in the input."""

    key: str
    data: Any = None
    position: int = 0
    attempt: int = 0
    reconcile_first: bool = False
    artifacts: list[str] = field(default_factory=list)
    #: Where it came from, for people (``intake.xlsx row 12``); not part of its identity.
    source: str | None = None
    version: int = 1
    #: A hash of the data it is done with (default: :func:`shared.queue.fingerprint` of ``data``).
    fingerprint: str | None = None
    #: Taken from the queue by :meth:`ItemProcessor.claim` (already marked ``in_progress``).
    claimed: bool = False


@dataclass
class ItemResult:
    """How one item ended in this run."""

    key: str
    outcome: str
    position: int = 0
    output: Any = None
    error: str | None = None
    error_class: str | None = None
    attempts: int = 0
    artifacts: list[str] = field(default_factory=list)
    reconciled: bool = False
    data: Any = None
    note: str | None = None
    changed: bool = False
    version: int = 1
    #: Why the queue refused it, for staff-facing words: ``("duplicate_key", {"key": ..., ...})``.
    problem: tuple[str, dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("done", "skipped")


Handler = Callable[[WorkItem], Any]
Reconcile = Callable[[WorkItem], Any]
AsyncHandler = Callable[[WorkItem], Awaitable[Any]]
AsyncReconcile = Callable[[WorkItem], Awaitable[Any]]
Planned = Iterator[tuple[int, WorkItem, "ItemResult | None"]]


class Progress(Protocol):
    """Receives progress over a batch (the CLI draws a bar from it)."""

    def start(self, total: int | None) -> None: ...

    def advance(self, result: ItemResult) -> None: ...


class NoProgress:
    """Progress that goes nowhere."""

    def start(self, total: int | None) -> None:
        return None

    def advance(self, result: ItemResult) -> None:
        return None


@dataclass(frozen=True)
class ItemContext:
    """What the item machinery needs of a run (the runner builds it; items never import the runner)."""

    run_id: str
    robot: str
    store: Store
    retry: RetrySettings
    queue: QueueSettings
    rerun_all: bool = False
    #: With ``rerun_all``: do done items again without asking ``reconcile`` first (a real second
    #: submission; loudly logged and audited by the runner).
    resubmit: bool = False


def describe_error(error: BaseException) -> str:
    """A one-line, redacted, bounded description of an error."""
    text = str(error) if isinstance(error, KansliError) else f"{type(error).__name__}: {error}"
    text = redact(" ".join(text.split()))
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


class ItemProcessor:
    """Runs the items of one queue through a handler for one run, keeping the queue's state."""

    def __init__(
        self, context: ItemContext, handler: Handler, *, queue: str, reconcile: Reconcile | None = None,
        on_change: OnChange = "skip",
    ) -> None:
        if on_change not in ("skip", "redo"):
            raise ValueError(f"on_change must be 'skip' or 'redo', not {on_change!r}")
        self.context = context
        self.handler = handler
        self.reconcile = reconcile
        self.on_change = on_change
        from shared.queue import WorkQueue

        self.queue = WorkQueue(context.store, queue)
        self.store = context.store
        self._seen: dict[str, int] = {}
        self._claimed: dict[str, WorkItem] = {}

    # -- planning: the items of an input (a register) enter the queue ------------------------------

    def plan(self, chunk: list[WorkItem]) -> list[ItemResult | None]:
        """Enqueue new keys; for each item, the result when it needs no work (None: do it)."""
        from shared.queue import fingerprint

        ready: list[ItemResult | None] = [self._input_problem(item) for item in chunk]
        todo = [item for item, result in zip(chunk, ready, strict=True) if result is None]
        known = self.queue.lookup([item.key for item in todo])
        new, adopt = [], {}
        for index, item in enumerate(chunk):
            if ready[index] is not None:
                continue
            item.fingerprint = item.fingerprint or fingerprint(item.data)
            entry = known.get(item.key)
            if entry is None:
                # no payload: a register's rows stay in the register (they hold personal data)
                new.append({"key": item.key, "data_hash": item.fingerprint, "source": item.source})
                continue
            if entry.data_hash is None:
                adopt[item.key] = item.fingerprint
            ready[index] = self._decide(item, entry)
        self.queue.add(new, self.context.run_id)
        self.queue.adopt_hashes(adopt)
        return ready

    def _input_problem(self, item: WorkItem) -> ItemResult | None:
        """A row without a key, or a key already met in this input: a business error."""
        if not item.key.strip():
            own = getattr(item.data, "error", None)  # a row whose key cell failed validation says so
            return ItemResult(f"row-{item.position} (no key)", "business_error", item.position,
                              data=item.data, error=own or f"row {item.position} has no key",
                              error_class="InputError",
                              problem=None if own else ("no_key", {"row": item.position}))
        first = self._seen.get(item.key)
        if first is None:
            self._seen[item.key] = item.position
            return None
        return ItemResult(f"{item.key} (duplicate at {item.position})", "business_error", item.position,
                          data=item.data, error_class="InputError",
                          problem=("duplicate_key", {"key": item.key, "first": first, "row": item.position}),
                          error=f"key {item.key!r} appears twice in the input: rows {first} and "
                                f"{item.position}; row {item.position} was not done")

    def _decide(self, item: WorkItem, entry: QueueItem) -> ItemResult | None:
        """What a known key needs: nothing (done), a new version, or the rest of its attempts."""
        item.version, item.attempt = entry.version, entry.attempts
        changed = entry.data_hash is not None and entry.data_hash != item.fingerprint
        if entry.status == "done":
            if self.context.rerun_all:
                item.attempt = 0
                item.reconcile_first = self.reconcile is not None and not self.context.resubmit
                return None
            if changed and self.on_change == "redo":
                item.version, item.attempt = entry.version + 1, 0
                return None
            return ItemResult(item.key, "skipped", item.position, output=entry.output, data=item.data,
                              note=DATA_CHANGED if changed else DONE_BEFORE, changed=changed,
                              version=entry.version, problem=("data_changed", {}) if changed else None)
        limit = self.context.queue.max_attempts
        if entry.status == "app_error" and entry.attempts >= limit and not self.context.rerun_all:
            return ItemResult(item.key, "app_error", item.position, data=item.data, attempts=0,
                              error_class=entry.error_class, version=entry.version,
                              error=f"gave up after {entry.attempts} attempts (last: {entry.error}); "
                                    f"'kansli queue retry {self.queue.name} KEY' lets it run again")
        item.reconcile_first = entry.status in ("in_progress", "app_error") and entry.attempts > 0
        return None

    def record_planned(self, results: Iterable[ItemResult]) -> None:
        """Store the items this run did not need to do, so ``kansli show`` lists them too."""
        from shared.store import ItemRecord

        self.store.record_items(
            ItemRecord(run_id=self.context.run_id, robot=self.context.robot, key=r.key,
                       outcome=r.outcome, position=r.position, output=r.output, error=r.error,
                       error_class=r.error_class, queue=self.queue.name, note=r.note)
            for r in results
        )

    # -- consuming: pending items of the queue ------------------------------------------------------

    def claim(self, limit: int) -> list[WorkItem]:
        """Take up to ``limit`` ready items of the queue for this run."""
        taken = self.queue.claim(self.context.run_id, limit, self.context.queue.max_attempts)
        items = []
        for entry in taken:
            item = WorkItem(key=entry.key, data=entry.data, source=entry.source, version=entry.version,
                            attempt=entry.attempts - 1, reconcile_first=entry.attempts > 1,
                            fingerprint=entry.data_hash, claimed=True)
            self._claimed[item.key] = item
            items.append(item)
        return items

    def release_unstarted(self) -> None:
        """Give back claimed items that never started (the run stopped early)."""
        self.queue.release(list(self._claimed), self.context.run_id)
        self._claimed.clear()

    # -- one item ---------------------------------------------------------------------------------

    def process(self, item: WorkItem) -> ItemResult:
        """Run one item to its outcome, with retries for application errors."""
        from shared.store import utcnow

        started = utcnow()
        with logger.contextualize(item=item.key):
            try:
                output, reconciled = self._attempts(item, started)
            except RunCancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - every failure is the item's outcome
                return self._failed(item, started, error)
            return self._finish(item, started, "done", output=output, reconciled=reconciled)

    def _attempts(self, item: WorkItem, started: str) -> tuple[Any, bool]:
        for attempt in Retrying(sleep=time.sleep, **self._retry_policy()):
            with attempt:
                return self._attempt(item, started)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_policy(self) -> dict[str, Any]:
        """Target errors are retried with exponential backoff; everything else ends the item."""
        settings = self.context.retry
        can_reconcile = self.reconcile is not None  # an uncertain submit is retried only after a look
        return {
            "stop": stop_after_attempt(settings.attempts),
            "wait": wait_exponential(multiplier=settings.backoff_initial, max=settings.backoff_max),
            "retry": retry_if_exception(lambda error: is_retryable(error, can_reconcile=can_reconcile)),
            "before_sleep": _log_retry,
            "reraise": True,
        }

    def _begin(self, item: WorkItem, started: str) -> bool:
        """Count and record an attempt; True when reconcile must be asked first."""
        needs_reconcile = item.reconcile_first
        item.attempt += 1
        item.reconcile_first = True  # any later attempt follows one that may have had an effect
        if item.claimed:  # the claim already wrote in_progress and counted the attempt
            item.claimed = False
            self._claimed.pop(item.key, None)
        else:
            self._record(item, "in_progress", started, data=True)
        return needs_reconcile and self.reconcile is not None

    def _attempt(self, item: WorkItem, started: str) -> tuple[Any, bool]:
        if self._begin(item, started):
            assert self.reconcile is not None
            found = self.reconcile(item)
            if found is not None:
                logger.info("item {} was already done by an earlier attempt", item.key)
                return found, True
        return self.handler(item), False

    def _record(self, item: WorkItem, outcome: str, started: str, *, data: bool = False,
                **fields: Any) -> None:
        """The item's state in its queue and in the run's items, in one transaction."""
        from shared.queue import fingerprint
        from shared.store import ItemRecord

        record = ItemRecord(
            run_id=self.context.run_id, key=item.key, robot=self.context.robot, outcome=outcome,
            attempts=item.attempt, position=item.position, started_at=started,
            artifacts=list(dict.fromkeys(item.artifacts)), queue=self.queue.name, **fields,
        )
        state: dict[str, Any] = {"status": outcome, "attempts": item.attempt, "run_id": self.context.run_id}
        if data:
            state.update(data_hash=item.fingerprint or fingerprint(item.data), version=item.version,
                         not_before=None)
        if outcome != "in_progress":
            state.update(output=record.output, error=record.error, error_class=record.error_class,
                         not_before=self._retry_at(item) if outcome == "app_error" else None)
        with self.store.engine.begin() as connection:
            self.queue.set_state(connection, item.key, state)
            self.store.record_item(record, connection)

    def _retry_at(self, item: WorkItem) -> str:
        from shared.queue import retry_at

        settings = self.context.queue
        return retry_at(self.context.retry.attempts, item.attempt, settings.retry_after_s,
                        settings.retry_after_max_s)

    def _failed(self, item: WorkItem, started: str, error: Exception) -> ItemResult:
        """Bad data is a business error; anything else (the target, a bug) an application error."""
        outcome = "business_error" if isinstance(error, InputError) else "app_error"
        return self._finish(item, started, outcome, error=error)

    def _finish(
        self,
        item: WorkItem,
        started: str,
        outcome: str,
        *,
        output: Any = None,
        error: BaseException | None = None,
        reconciled: bool = False,
    ) -> ItemResult:
        from shared.store import utcnow

        message = describe_error(error) if error is not None else None
        error_class = type(error).__name__ if error is not None else None
        note = f"version {item.version}" if item.version > 1 and outcome == "done" else None
        self._record(item, outcome, started, output=output, error=message,
                     error_class=error_class, finished_at=utcnow(), note=note)
        crash_point("item.recorded")  # in the queue, not yet in the audit trail
        if error is not None:
            logger.bind(console=False).warning("item {} ended {}: {}", item.key, outcome, message)
        return ItemResult(item.key, outcome, item.position, output=output, error=message,
                          error_class=error_class, attempts=item.attempt,
                          artifacts=list(dict.fromkeys(item.artifacts)), reconciled=reconciled,
                          data=item.data, note=note, version=item.version)

    # -- one item, async (handler and reconcile are coroutine functions) ---------------------------

    async def process_async(self, item: WorkItem) -> ItemResult:
        """:meth:`process` for an async handler: same queue writes, same retries, same outcomes."""
        from shared.store import utcnow

        started = utcnow()
        with logger.contextualize(item=item.key):
            try:
                output, reconciled = await self._attempts_async(item, started)
            except RunCancelledError:  # asyncio.CancelledError is no Exception: it passes too
                raise
            except Exception as error:  # noqa: BLE001 - every failure is the item's outcome
                return self._failed(item, started, error)
            return self._finish(item, started, "done", output=output, reconciled=reconciled)

    async def _attempts_async(self, item: WorkItem, started: str) -> tuple[Any, bool]:
        async for attempt in AsyncRetrying(sleep=asyncio.sleep, **self._retry_policy()):
            with attempt:
                return await self._attempt_async(item, started)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt_async(self, item: WorkItem, started: str) -> tuple[Any, bool]:
        if self._begin(item, started):
            found = await self.reconcile(item)  # type: ignore[misc]
            if found is not None:
                logger.info("item {} was already done by an earlier attempt", item.key)
                return found, True
        return await self.handler(item), False


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0
    logger.warning("attempt {} failed ({}); retrying in {:.1f}s", state.attempt_number,
                   describe_error(error) if error else "?", delay)


# -- where the items come from ----------------------------------------------------------------------


def planned_items(processor: ItemProcessor, items: Iterable[WorkItem]) -> Planned:
    """The items of an input, entered in the queue a chunk at a time, each with its ready result."""
    source = iter(items)
    index = 0
    while chunk := list(islice(source, PLAN_CHUNK)):
        ready = processor.plan(chunk)
        processor.record_planned(result for result in ready if result is not None)
        for item, result in zip(chunk, ready, strict=True):
            yield index, item, result
            index += 1


#: A consumer claims about this many seconds of work at a time (see :func:`claimed_items`).
CLAIM_SECONDS = 1.0


def claimed_items(
    processor: ItemProcessor, limit: int | None = None, chunk: int = 50, seconds: float = CLAIM_SECONDS
) -> Planned:
    """Ready items of the queue, claimed a few at a time as the run gets to them: one at first, then
    twice as many each time, up to what the run did in about ``seconds`` (at most ``chunk``).

    Claimed items are this run's alone, so with slow items (a target system's latency) a big claim
    would leave other runs of the queue, on other hosts, idle while this one still holds work; fast
    items still go ``chunk`` a claim.
    """
    index, wanted = 0, 1
    while limit is None or index < limit:
        began = time.monotonic()
        taken = processor.claim(wanted if limit is None else min(wanted, limit - index))
        if not taken:
            return
        for item in taken:
            item.position = index + 1
            yield index, item, None
            index += 1
        pace = (time.monotonic() - began) / len(taken)  # seconds per item, the claim included
        wanted = max(1, min(chunk, 2 * len(taken), int(seconds / pace) if pace > 0 else chunk))


# -- stopping early ---------------------------------------------------------------------------------


class FailureStreak:
    """Counts items in a row failing with the same application error (the same error class)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.kind: str | None = None
        self.first: ItemResult | None = None

    def observe(self, result: ItemResult) -> None:
        """Note a result; raises :class:`SystemicFailureError` when the streak reaches the limit."""
        if result.outcome == "done":
            self.count, self.kind, self.first = 0, None, None
        elif result.outcome == "app_error" and result.attempts > 0:
            if result.error_class != self.kind:
                self.count, self.kind, self.first = 0, result.error_class, result
            self.count += 1
            if self.limit and self.count >= self.limit and self.first is not None:
                raise SystemicFailureError(
                    f"stopped early: {self.count} items in a row failed with {self.kind} "
                    f"(first: {self.first.key}: {self.first.error}); the items not yet done stay "
                    "in the queue for the next run")


def _stopping(results: list[ItemResult], streak: FailureStreak, result: ItemResult) -> None:
    results.append(result)
    streak.observe(result)


class StoppedEarly(SystemicFailureError):
    """A :class:`SystemicFailureError` carrying the results the run had reached."""

    def __init__(self, error: SystemicFailureError, results: list[ItemResult]) -> None:
        super().__init__(error.message)
        self.results = results


# -- running a batch ----------------------------------------------------------------------------------


def run_batch(
    processor: ItemProcessor, planned: Planned, progress: Progress, workers: int = 1
) -> list[ItemResult]:
    """Process every item (one worker in order, several in a thread pool), results in input order."""
    streak = FailureStreak(processor.context.queue.stop_after_failures)
    if workers > 1:
        return _run_parallel(processor, planned, progress, workers, streak)
    results: list[ItemResult] = []
    try:
        for _, item, ready in planned:
            result = ready or processor.process(item)
            progress.advance(result)
            _stopping(results, streak, result)
    except SystemicFailureError as error:
        raise StoppedEarly(error, results) from None
    return results


def _run_parallel(
    processor: ItemProcessor, planned: Planned, progress: Progress, workers: int, streak: FailureStreak,
) -> list[ItemResult]:
    results: list[tuple[int, ItemResult]] = []
    pending: set[Future[tuple[int, ItemResult]]] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="item") as pool:
        try:
            for index, item, ready in planned:
                if ready is not None:
                    progress.advance(ready)
                    results.append((index, ready))
                    continue
                context = contextvars.copy_context()
                pending.add(pool.submit(context.run, _indexed, index, processor.process, item))
                if len(pending) >= workers * 2:
                    pending = _collect(pending, results, progress, FIRST_COMPLETED, streak)
            _collect(pending, results, progress, None, streak)
        except SystemicFailureError as error:
            for future in pending:
                future.cancel()
            _collect({f for f in pending if not f.cancelled()}, results, progress, None, None)
            raise StoppedEarly(error, _in_input_order(results)) from None
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return _in_input_order(results)


def _indexed(index: int, process: Callable[[WorkItem], ItemResult], item: WorkItem) -> tuple[int, ItemResult]:
    return index, process(item)


def _in_input_order(results: list[tuple[int, ItemResult]]) -> list[ItemResult]:
    return [result for _, result in sorted(results, key=lambda pair: pair[0])]


def _collect(
    pending: set[Future[tuple[int, ItemResult]]], results: list[tuple[int, ItemResult]],
    progress: Progress, return_when: str | None, streak: FailureStreak | None,
) -> set[Future[tuple[int, ItemResult]]]:
    done, still = wait(pending, return_when=return_when or "ALL_COMPLETED")
    tripped: SystemicFailureError | None = None
    for future in done:
        index, result = future.result()
        progress.advance(result)
        results.append((index, result))
        try:
            if streak is not None:
                streak.observe(result)
        except SystemicFailureError as error:
            tripped = tripped or error
    if tripped is not None:
        pending.clear()
        pending.update(still)
        raise tripped
    return still


# -- the async path: one event loop, ``workers`` items in flight --------------------------------


async def run_batch_async(
    processor: ItemProcessor, planned: Planned, progress: Progress, workers: int = 1
) -> list[ItemResult]:
    """Process every item with ``workers`` concurrent tasks on the running event loop.

    The processor's handler and reconcile must be coroutine functions. Queue writes are the same
    (synchronous) store calls as on the sync path, made from the loop's thread. Results come back
    in input order.
    """
    results: list[tuple[int, ItemResult]] = []
    streak = FailureStreak(processor.context.queue.stop_after_failures)
    tripped: list[SystemicFailureError] = []

    async def worker() -> None:
        for index, item, ready in planned:  # one shared iterator: each item goes to one task
            result = ready or await processor.process_async(item)
            progress.advance(result)
            results.append((index, result))
            try:
                streak.observe(result)
            except SystemicFailureError as error:
                tripped.append(error)
            if tripped:
                return

    tasks = [asyncio.create_task(worker(), name=f"item-worker-{n}") for n in range(max(1, workers))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if tripped:
        raise StoppedEarly(tripped[0], _in_input_order(results))
    return _in_input_order(results)
