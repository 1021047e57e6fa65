"""The one way a robot runs, from the CLI, a schedule or a test.

A run gets a sortable id, a folder ``<data>/runs/<run id>/`` (``log.jsonl``, ``log.txt``,
``artifacts/``), a record in the run history, and the robot's lock, so two runs of one robot never
overlap, also across processes. SIGTERM and Ctrl-C end it as ``cancelled`` with its record closed.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import signal
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import filelock
import psutil
from loguru import logger

from shared.audit import AuditLog, RunAudit, anchor_head
from shared.errors import AlreadyRunningError, ConfigError, KansliError, RunCancelledError
from shared.items import (
    OUTCOMES,
    AsyncHandler,
    AsyncReconcile,
    Handler,
    ItemProcessor,
    ItemResult,
    NoProgress,
    Progress,
    Reconcile,
    WorkItem,
    describe_error,
    run_batch,
    run_batch_async,
)
from shared.logs import run_sinks
from shared.redaction import redact_value
from shared.registry import RobotParams, RobotSpec, discover, get_robot
from shared.settings import Settings, get_settings
from shared.store import RunRecord, Store, open_store, utcnow

EXIT_CODES = {
    "succeeded": 0, "failed": 1, "partial": 3, "skipped": 5, "cancelled": 130,
    "timeout": 1, "missed": 1, "interrupted": 1,
}


def current_actor() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def new_run_id() -> str:
    """A run id that sorts by start time: ``20261125-142001-123-a1b2``."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}-{secrets.token_hex(2)}"


@dataclass
class Run:
    """What a robot gets while it runs: its id, folder, settings and the item machinery."""

    run_id: str
    robot: RobotSpec
    params: RobotParams
    trigger: str
    actor: str
    run_dir: Path
    settings: Settings
    store: Store
    rerun_all: bool = False
    progress: Progress = field(default_factory=NoProgress)
    results: list[ItemResult] = field(default_factory=list)
    audit: RunAudit | None = None

    @property
    def artifacts_dir(self) -> Path:
        return self.run_dir / "artifacts"

    def process(
        self,
        items: Iterable[WorkItem],
        handler: Handler,
        *,
        batch: str | None = None,
        reconcile: Reconcile | None = None,
        total: int | None = None,
        workers: int = 1,
    ) -> list[ItemResult]:
        """Run every item through ``handler``; items done by an earlier run are skipped.

        ``batch`` names the input (default: a fingerprint of the run's parameters); the ledger
        that lets a re-run resume is kept per robot and batch.
        """
        processor = ItemProcessor(self, handler, batch=batch or self.default_batch(),
                                  reconcile=reconcile)
        with self._batch_progress(total) as progress:
            return self._keep(run_batch(processor, items, progress, workers))

    async def process_async(
        self,
        items: Iterable[WorkItem],
        handler: AsyncHandler,
        *,
        batch: str | None = None,
        reconcile: AsyncReconcile | None = None,
        total: int | None = None,
        workers: int = 1,
    ) -> list[ItemResult]:
        """:meth:`process` for coroutine handlers: ``workers`` items at a time on one event loop."""
        processor = ItemProcessor(self, handler, batch=batch or self.default_batch(),
                                  reconcile=reconcile)
        with self._batch_progress(total) as progress:
            return self._keep(await run_batch_async(processor, items, progress, workers))

    @contextmanager
    def _batch_progress(self, total: int | None) -> Iterator[Progress]:
        """The run's progress, also queueing item outcomes for the audit trail (flushed at the end)."""
        progress = _AuditedProgress(self.progress, self.audit)
        progress.start(total)
        try:
            yield progress
        finally:
            if self.audit is not None:
                self.audit.flush()

    def _keep(self, results: list[ItemResult]) -> list[ItemResult]:
        self.results.extend(results)
        return results

    def default_batch(self) -> str:
        canonical = json.dumps(self.params.model_dump(mode="json"), sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class _AuditedProgress:
    """Passes progress on, and queues each item's outcome for the audit trail."""

    def __init__(self, inner: Progress, audit: RunAudit | None) -> None:
        self.inner, self.audit = inner, audit

    def start(self, total: int | None) -> None:
        self.inner.start(total)

    def advance(self, result: ItemResult) -> None:
        if self.audit is not None:
            self.audit.item(result.key, result.outcome, item_audit_data(
                result.output, result.attempts, result.error_class, result.reconciled))
        self.inner.advance(result)


def item_audit_data(output: Any, attempts: int, error_class: str | None, reconciled: bool) -> dict[str, Any]:
    """What an ``item.outcome`` event says besides the key and outcome (an error's class, never its text)."""
    text = None if output is None else json.dumps(output, ensure_ascii=False, default=str)
    return {"attempts": attempts, "output_ref": (text or "")[:200] or None,
            "error_class": error_class, "reconciled": reconciled}


def finished_event_data(record: RunRecord, error_class: str | None) -> dict[str, Any]:
    """What ``run.finished`` says of a run: its status and item counts (an error's class only)."""
    return {
        "status": record.status, "items_total": record.items_total, "items_done": record.items_done,
        "items_skipped": record.items_skipped, "items_business_error": record.items_business_error,
        "items_app_error": record.items_app_error, "error_class": error_class,
    }


def audit_closed_run(log: AuditLog, store: Store, run_id: str, cause: str) -> int:
    """Close in the trail a run that its own process could not close (it died or was killed).

    Item outcomes the ledger holds and the trail lacks (the process died between two batches of
    item events) are written first, with ``recovered: true``; then ``run.finished`` with the status
    the run was closed with, ``cause`` (``process_gone``, ``timeout``, ...) and ``closed_by``. When the
    trail already has the run's end with another status (the process ended "cancelled" on the
    daemon's SIGTERM, the daemon records "timeout"), ``run.status_changed`` says so. Returns the
    number of recovered items.
    """
    record = store.get_run(run_id)
    if record is None:
        return 0
    since = datetime.fromisoformat(record.started_at).astimezone(UTC).date()
    written: Counter[str] = Counter()
    audit = RunAudit(log, run_id, record.robot, audit_actor(record.trigger))
    for event in log.search(since=since, run_id=run_id):
        if event["event"] == "run.finished":  # its process closed it, then was overruled (timeout)
            was = event["data"].get("status")
            if was != record.status:
                audit.event("run.status_changed", {"status": record.status, "was": was, "cause": cause,
                                                   "closed_by": current_actor()})
            return 0
        if event["event"] == "item.outcome":
            written[str(event["data"].get("item_key"))] += 1
    items = [item for item in store.list_items(run_id) if item.outcome in OUTCOMES]
    recovered = 0
    for item in items:
        key = str(log.clean(item.key))
        if written[key] > 0:
            written[key] -= 1
            continue
        data = item_audit_data(item.output, item.attempts, item.error_class, False)
        audit.item(item.key, item.outcome, {**data, "reconciled": None, "recovered": True})
        recovered += 1
    counts = Counter(item.outcome for item in items)
    record.items_total, record.items_done = len(items), counts["done"]
    record.items_skipped, record.items_business_error = counts["skipped"], counts["business_error"]
    record.items_app_error = counts["app_error"]
    audit.event("run.finished", {**finished_event_data(record, None), "cause": cause,
                                 "closed_by": current_actor(), "recovered_items": recovered})
    anchor_head(log, store)
    return recovered


def audit_actor(trigger: str) -> str:
    """Who a run is attributed to in the audit trail: the schedule, or the OS user."""
    return trigger if trigger.startswith("schedule:") else current_actor()


def file_batch(path: Path, *extra: object) -> str:
    """A batch name for an input file: its resolved path, its content's hash, and ``extra``."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    parts = ":".join([str(path.resolve()), digest.hexdigest(), *map(str, extra)])
    return hashlib.sha256(parts.encode()).hexdigest()[:32]


def run_status(results: list[ItemResult], error: BaseException | None) -> str:
    """The run's status from its items and the error that ended it, if any."""
    if isinstance(error, RunCancelledError | KeyboardInterrupt):
        return "cancelled"
    if error is not None:
        return "failed"
    failed = sum(1 for result in results if not result.ok)
    if not failed:
        return "succeeded"
    return "partial" if failed < len(results) else "failed"


class Runner:
    """Starts runs: validates, locks, records, logs, and closes them whatever happens."""

    def __init__(
        self,
        settings: Settings | None = None,
        store: Store | None = None,
        robots_package: str | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.store = store or open_store(self.settings.effective_database_url)
        self.robots_package = robots_package or self.settings.robots_package
        self.audit_log = AuditLog.from_settings(self.settings, store=self.store)

    def robots(self) -> dict[str, RobotSpec]:
        return discover(self.robots_package)

    def run(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        trigger: str = "cli",
        rerun_all: bool = False,
        wait: bool = False,
        progress: Progress | None = None,
        on_start: Callable[[Run], None] | None = None,
        run_id: str | None = None,
    ) -> RunRecord:
        """Run robot ``name`` now and return its closed record.

        ``run_id`` lets a caller (the scheduler) choose the id, so it can find the record of a
        run it had to kill.
        """
        spec = get_robot(name, self.robots_package)
        validated = spec.validate(params or {})
        with self._robot_lock(spec, trigger, wait) as lock_ok:
            if not lock_ok:
                return self._refused(spec, validated, trigger, run_id)
            run = self._open(spec, validated, trigger, rerun_all, progress, run_id)
            if on_start is not None:
                on_start(run)
            return self._execute(run)

    # -- lock -------------------------------------------------------------------------------------

    @contextmanager
    def _robot_lock(self, spec: RobotSpec, trigger: str, wait: bool) -> Iterator[bool]:
        self.settings.locks_dir.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.settings.locks_dir / f"{spec.name}.lock")
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except filelock.Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def _refused(
        self, spec: RobotSpec, params: RobotParams, trigger: str, run_id: str | None
    ) -> RunRecord:
        holder = self.store.list_runs(robot=spec.name, status="running", limit=1)
        held_by = f" by run {holder[0].run_id}" if holder else ""
        reason = f"robot {spec.name} is already running{held_by}; this run was not started"
        record = RunRecord(
            run_id=run_id or new_run_id(), robot=spec.name, params=_public_params(params),
            trigger=trigger, actor=current_actor(), status="skipped", started_at=utcnow(),
            finished_at=utcnow(), pid=os.getpid(), error=reason,
        )
        self.store.create_run(record)
        self.audit_log.append("run.skipped", run_id=record.run_id, robot=spec.name,
                              actor=audit_actor(trigger), data={"trigger": trigger, "reason": reason})
        logger.warning(reason)
        raise AlreadyRunningError(reason)

    # -- the run ----------------------------------------------------------------------------------

    def _open(
        self, spec: RobotSpec, params: RobotParams, trigger: str, rerun_all: bool,
        progress: Progress | None, run_id: str | None,
    ) -> Run:
        self.reap_interrupted(spec.name)
        run_id = run_id or new_run_id()
        run_dir = self.settings.runs_dir / run_id
        (run_dir / "artifacts").mkdir(parents=True, exist_ok=True)
        record = RunRecord(
            run_id=run_id, robot=spec.name, params=_public_params(params), trigger=trigger,
            actor=current_actor(), status="running", started_at=utcnow(), pid=os.getpid(),
            run_dir=str(run_dir.resolve()),
        )
        self.store.create_run(record)
        audit = RunAudit(self.audit_log, run_id, spec.name, audit_actor(trigger))
        audit.event("config.loaded", self._config_summary())
        audit.event("run.started", {"trigger": trigger, "params": record.params,
                                    "rerun_all": rerun_all, "os_user": record.actor})
        return Run(run_id=run_id, robot=spec, params=params, trigger=trigger, actor=record.actor,
                   run_dir=run_dir, settings=self.settings, store=self.store,
                   rerun_all=rerun_all, progress=progress or NoProgress(), audit=audit)

    def _config_summary(self) -> dict[str, Any]:
        env_file = Path(".env")
        return {
            "settings_file": str(env_file.resolve()) if env_file.is_file() else None,
            "secrets_set": self.settings.secret_names(),
            "database": self.settings.masked()["database_url"],
        }

    def _execute(self, run: Run) -> RunRecord:
        error: BaseException | None = None
        with run_sinks(run.run_dir, run.run_id), logger.contextualize(
            run_id=run.run_id, robot=run.robot.name
        ), _cancel_on_sigterm():
            logger.info("run {} of {} started by {} ({})", run.run_id, run.robot.name, run.actor,
                        run.trigger)
            try:
                run.robot.function(run, **dict(run.params))
            except (Exception, KeyboardInterrupt) as caught:  # noqa: BLE001 - recorded below
                error = caught
            record = self._close(run, error)
            logger.info("run {} ended {}", run.run_id, record.status)
            self._write_report(run)
        if isinstance(error, ConfigError):
            raise error  # recorded as failed; the caller still sees a configuration problem (exit 4)
        return record

    def _close(self, run: Run, error: BaseException | None) -> RunRecord:
        record = self.store.get_run(run.run_id)
        assert record is not None
        counts = _count(run.results)
        record.status = run_status(run.results, error)
        record.finished_at = utcnow()
        record.items_total = len(run.results)
        record.items_done = counts.get("done", 0)
        record.items_skipped = counts.get("skipped", 0)
        record.items_business_error = counts.get("business_error", 0)
        record.items_app_error = counts.get("app_error", 0)
        record.error = _run_error(run.results, error)
        if isinstance(error, KansliError) and not isinstance(error, RunCancelledError):
            logger.bind(console=False).error("run failed: {}", record.error)
        elif error is not None and not isinstance(error, RunCancelledError | KeyboardInterrupt):
            logger.bind(console=False).opt(exception=error).error("run failed: {}", record.error)
        self.store.finish_run(record)
        self._audit_end(run, record, error)
        return record

    def _audit_end(self, run: Run, record: RunRecord, error: BaseException | None) -> None:
        """The run's end event and the trail's head anchored in the database; never fatal."""
        if run.audit is None:
            return
        try:
            run.audit.event("run.finished", finished_event_data(
                record, type(error).__name__ if error is not None else None))
            anchor_head(self.audit_log, self.store)
        except KansliError as failure:
            logger.error("could not write the audit trail: {}", failure)

    def _write_report(self, run: Run) -> None:
        """The run's ``report.html``; a failure to write it is logged, never fatal."""
        from shared.report import write_report

        try:
            write_report(self.store, run.run_id)
        except Exception as error:  # noqa: BLE001 - the run is already recorded
            logger.warning("could not write the run report: {}", describe_error(error))

    # -- housekeeping -----------------------------------------------------------------------------

    def reap_interrupted(self, robot: str | None = None) -> int:
        """Close runs recorded as running whose process on this host is gone."""
        host = socket.gethostname()
        dead = [
            record.run_id
            for record in self.store.list_runs(robot=robot, status="running", limit=1000)
            if record.actor.endswith(f"@{host}") and not _alive(record.pid)
        ]
        closed = self.store.mark_interrupted(dead, "the process running it ended unexpectedly")
        for run_id in dead:
            self.close_in_audit(run_id, "process_gone")
        return closed

    def close_in_audit(self, run_id: str, cause: str) -> None:
        """:func:`audit_closed_run`, logged and never fatal (the run history is already right)."""
        try:
            recovered = audit_closed_run(self.audit_log, self.store, run_id, cause)
        except KansliError as failure:
            logger.error("could not close run {} in the audit trail: {}", run_id, failure)
            return
        if recovered:
            logger.info("run {}: {} item outcome(s) recovered into the audit trail", run_id, recovered)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _count(results: list[ItemResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return counts


def _run_error(results: list[ItemResult], error: BaseException | None) -> str | None:
    if isinstance(error, RunCancelledError | KeyboardInterrupt):
        return "cancelled by signal"
    if error is not None:
        return describe_error(error)
    failed = [result for result in results if not result.ok]
    if not failed:
        return None
    first = failed[0]
    return f"{len(failed)} item(s) failed; first: {first.key}: {first.error}"


def _public_params(params: RobotParams) -> dict[str, Any]:
    """Parameters as stored and shown: secrets masked, identity numbers redacted."""
    return dict(redact_value(params.model_dump(mode="json")))


@contextmanager
def _cancel_on_sigterm() -> Iterator[None]:
    """While open, SIGTERM raises :class:`RunCancelledError` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum: int, _frame: FrameType | None) -> None:
        raise RunCancelledError(f"run cancelled by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
