"""Work items: a batch processed item by item, each with a stable key and a stored outcome.

Outcomes:

* ``done``: the handler returned; its return value is the item's output;
* ``business_error``: the handler raised :class:`~shared.errors.InputError` (bad data): never retried;
* ``app_error``: the target misbehaved (:class:`~shared.errors.TargetError`, retried with backoff
  until the attempts run out) or the handler failed unexpectedly (not retried);
* ``skipped``: an earlier run of the same robot on the same batch already did it.

Every attempt is written to the ledger before the handler runs (``in_progress``) and after, so a run
killed at any point resumes without doing an item twice. An item whose earlier attempt did not finish
may already have had its effect (a form submitted just before the crash): when the robot gives a
``reconcile`` step, it is asked first whether the effect exists, and its answer is taken as the output.
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
from typing import TYPE_CHECKING, Any, Protocol

from loguru import logger
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from shared.errors import InputError, KansliError, RunCancelledError, is_retryable
from shared.redaction import redact

if TYPE_CHECKING:  # shared.store (SQLAlchemy) is imported where items are recorded: robots import this
    from shared.runner import Run  # module, and listing them must not pay for the database layer
    from shared.store import LedgerEntry

OUTCOMES = ("done", "business_error", "app_error", "skipped")
UNFINISHED = ("in_progress", "app_error")
MAX_ERROR_LENGTH = 500
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
    """One unit of work: a key that names it across runs, and its data."""

    key: str
    data: Any = None
    position: int = 0
    attempt: int = 0
    reconcile_first: bool = False
    artifacts: list[str] = field(default_factory=list)


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

    @property
    def ok(self) -> bool:
        return self.outcome in ("done", "skipped")


Handler = Callable[[WorkItem], Any]
Reconcile = Callable[[WorkItem], Any]
AsyncHandler = Callable[[WorkItem], Awaitable[Any]]
AsyncReconcile = Callable[[WorkItem], Awaitable[Any]]


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


def describe_error(error: BaseException) -> str:
    """A one-line, redacted, bounded description of an error."""
    text = str(error) if isinstance(error, KansliError) else f"{type(error).__name__}: {error}"
    text = redact(" ".join(text.split()))
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


class ItemProcessor:
    """Runs a batch through a handler for one run, keeping the ledger."""

    def __init__(
        self, run: Run, handler: Handler, *, batch: str, reconcile: Reconcile | None = None
    ) -> None:
        self.run = run
        self.handler = handler
        self.batch = batch
        self.reconcile = reconcile
        self.store = run.store
        if run.rerun_all:
            self.store.reset_ledger(run.robot.name, batch)
        self.ledger: dict[str, LedgerEntry] = self.store.load_ledger(run.robot.name, batch)
        self._seen: set[str] = set()

    # -- planning ---------------------------------------------------------------------------------

    def plan(self, item: WorkItem) -> ItemResult | None:
        """The result for an item that needs no work (done before, or a duplicate key), or None."""
        if item.key in self._seen:
            return ItemResult(item.key, "business_error", item.position, data=item.data,
                              error=f"duplicate key {item.key!r} in the input",
                              error_class="InputError")
        self._seen.add(item.key)
        entry = self.ledger.get(item.key)
        if entry is None:
            return None
        if entry.status == "done":
            return ItemResult(item.key, "skipped", item.position, output=entry.output,
                              attempts=0, data=item.data)
        item.reconcile_first = entry.status in UNFINISHED and entry.attempts > 0
        item.attempt = entry.attempts
        return None

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
        settings = self.run.settings.retry
        return {
            "stop": stop_after_attempt(settings.attempts),
            "wait": wait_exponential(multiplier=settings.backoff_initial, max=settings.backoff_max),
            "retry": retry_if_exception(is_retryable),
            "before_sleep": _log_retry,
            "reraise": True,
        }

    def _attempt(self, item: WorkItem, started: str) -> tuple[Any, bool]:
        needs_reconcile = item.reconcile_first
        item.attempt += 1
        item.reconcile_first = True  # any later attempt follows one that may have had an effect
        self._record(item, "in_progress", started)
        if needs_reconcile and self.reconcile is not None:
            found = self.reconcile(item)
            if found is not None:
                logger.info("item {} was already done by an earlier attempt", item.key)
                return found, True
        return self.handler(item), False

    def _record(self, item: WorkItem, outcome: str, started: str, **fields: Any) -> None:
        from shared.store import ItemRecord

        record = ItemRecord(
            run_id=self.run.run_id, key=item.key, robot=self.run.robot.name, outcome=outcome,
            attempts=item.attempt, position=item.position, started_at=started,
            artifacts=list(dict.fromkeys(item.artifacts)), **fields,
        )
        self.store.record_item(record, self.batch)

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
        self._record(item, outcome, started, output=output, error=message,
                     error_class=error_class, finished_at=utcnow())
        crash_point("item.recorded")  # in the ledger, not yet in the audit trail
        if error is not None:
            logger.bind(console=False).warning("item {} ended {}: {}", item.key, outcome, message)
        return ItemResult(item.key, outcome, item.position, output=output, error=message,
                          error_class=error_class, attempts=item.attempt,
                          artifacts=list(dict.fromkeys(item.artifacts)), reconciled=reconciled,
                          data=item.data)

    # -- one item, async (handler and reconcile are coroutine functions) ---------------------------

    async def process_async(self, item: WorkItem) -> ItemResult:
        """:meth:`process` for an async handler: same ledger writes, same retries, same outcomes."""
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
        needs_reconcile = item.reconcile_first
        item.attempt += 1
        item.reconcile_first = True  # any later attempt follows one that may have had an effect
        self._record(item, "in_progress", started)
        if needs_reconcile and self.reconcile is not None:
            found = await self.reconcile(item)
            if found is not None:
                logger.info("item {} was already done by an earlier attempt", item.key)
                return found, True
        return await self.handler(item), False

    def record_skipped(self, results: list[ItemResult]) -> None:
        """Store the items this run did not need to do, so ``kansli show`` lists them too.

        A repeated key is stored as ``KEY (duplicate at POSITION)``: the run's items are unique by key.
        """
        from shared.store import ItemRecord

        self.store.record_items(
            ItemRecord(run_id=self.run.run_id, robot=self.run.robot.name,
                       key=r.key if r.outcome == "skipped" else f"{r.key} (duplicate at {r.position})",
                       outcome=r.outcome, position=r.position, output=r.output, error=r.error,
                       error_class=r.error_class)
            for r in results
        )


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0
    logger.warning("attempt {} failed ({}); retrying in {:.1f}s", state.attempt_number,
                   describe_error(error) if error else "?", delay)


def run_batch(
    processor: ItemProcessor, items: Iterable[WorkItem], progress: Progress, workers: int = 1
) -> list[ItemResult]:
    """Process every item (one worker in order, several in a thread pool), results in input order."""
    planned = _planned(processor, items, progress)
    if workers <= 1:
        results = []
        for _, item, ready in planned:
            result = ready or processor.process(item)
            progress.advance(result)
            results.append(result)
        return results
    return _run_parallel(processor, planned, progress, workers)


def _planned(
    processor: ItemProcessor, items: Iterable[WorkItem], progress: Progress
) -> Iterator[tuple[int, WorkItem, ItemResult | None]]:
    """Each item with its index in the input and, when it needs no work, its result."""
    skipped: list[ItemResult] = []
    for index, item in enumerate(items):
        ready = processor.plan(item)
        if ready is not None:
            skipped.append(ready)
        yield index, item, ready
    processor.record_skipped(skipped)


def _run_parallel(
    processor: ItemProcessor,
    planned: Iterator[tuple[int, WorkItem, ItemResult | None]],
    progress: Progress,
    workers: int,
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
                    pending = _collect(pending, results, progress, FIRST_COMPLETED)
            _collect(pending, results, progress, None)
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
    progress: Progress, return_when: str | None,
) -> set[Future[tuple[int, ItemResult]]]:
    done, still = wait(pending, return_when=return_when or "ALL_COMPLETED")
    for future in done:
        index, result = future.result()
        progress.advance(result)
        results.append((index, result))
    return still


# -- the async path: one event loop, ``workers`` items in flight --------------------------------


async def run_batch_async(
    processor: ItemProcessor, items: Iterable[WorkItem], progress: Progress, workers: int = 1
) -> list[ItemResult]:
    """Process every item with ``workers`` concurrent tasks on the running event loop.

    The processor's handler and reconcile must be coroutine functions. Ledger writes are the same
    (synchronous) store calls as on the sync path, made from the loop's thread. Results come back
    in input order.
    """
    planned = _planned(processor, items, progress)
    results: list[tuple[int, ItemResult]] = []

    async def worker() -> None:
        for index, item, ready in planned:  # one shared iterator: each item goes to one task
            result = ready or await processor.process_async(item)
            progress.advance(result)
            results.append((index, result))

    tasks = [asyncio.create_task(worker(), name=f"item-worker-{n}") for n in range(max(1, workers))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return _in_input_order(results)
