"""The one way a robot runs, from the CLI, a schedule or a test.

A run gets a sortable id, a folder ``<data>/runs/<run id>/`` (``log.jsonl``, ``log.txt``,
``artifacts/``), a record in the run history, and the robot's lock, so two runs of one robot never
overlap, also across processes. SIGTERM and Ctrl-C end it as ``cancelled`` with its record closed.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import signal
import socket
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import filelock
import psutil
from loguru import logger

from shared.audit import AuditLog, RunAudit, anchor_head
from shared.errors import (
    AlreadyRunningError,
    ConfigError,
    KansliError,
    RunCancelledError,
    SystemicFailureError,
    UsageError,
)
from shared.items import (
    DATA_CHANGED,
    OUTCOMES,
    AsyncHandler,
    AsyncReconcile,
    Handler,
    ItemContext,
    ItemProcessor,
    ItemResult,
    NoProgress,
    OnChange,
    Progress,
    Reconcile,
    StoppedEarly,
    WorkItem,
    claimed_items,
    describe_error,
    planned_items,
    run_batch,
    run_batch_async,
)
from shared.logs import run_sinks
from shared.queue import WorkQueue
from shared.redaction import redact_value
from shared.registry import RobotParams, RobotSpec, discover, get_robot
from shared.run_files import is_local, store_run_files
from shared.settings import Settings, get_settings
from shared.store import RunRecord, Store, item_counts, open_store, utcnow

#: The first key of the robots' advisory locks on PostgreSQL ("KANS"); the second is the name's hash.
ROBOT_LOCK_SPACE = 0x4B414E53 & 0x7FFFFFFF

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
    #: ``--rerun-all --resubmit``: do done items again without asking reconcile (a second submission).
    resubmit: bool = False
    #: ``--yes``: the operator confirmed a ``--rerun-all`` of a robot with side effects and no reconcile.
    confirmed: bool = False

    @property
    def artifacts_dir(self) -> Path:
        return self.run_dir / "artifacts"

    @property
    def queue(self) -> str:
        """The robot's own queue: its name."""
        return self.robot.name

    def process(
        self,
        items: Iterable[WorkItem],
        handler: Handler,
        *,
        queue: str | None = None,
        reconcile: Reconcile | None = None,
        total: int | None = None,
        workers: int = 1,
        on_change: OnChange = "skip",
    ) -> list[ItemResult]:
        """Enter the items of an input in ``queue`` by key, and do those not done yet.

        ``queue`` defaults to the robot's name. A key done before (by any run, from any file) is
        ``skipped``; one whose data changed since is reported "done before, data changed", or done
        again as a new version with ``on_change="redo"``.
        """
        processor = self._processor(handler, queue, reconcile, on_change)
        with self._batch_progress(total, processor.queue.name) as progress:
            return self._keep(lambda: run_batch(processor, planned_items(processor, items), progress,
                                                workers))

    async def process_async(
        self,
        items: Iterable[WorkItem],
        handler: AsyncHandler,
        *,
        queue: str | None = None,
        reconcile: AsyncReconcile | None = None,
        total: int | None = None,
        workers: int = 1,
        on_change: OnChange = "skip",
    ) -> list[ItemResult]:
        """:meth:`process` for coroutine handlers: ``workers`` items at a time on one event loop."""
        processor = self._processor(handler, queue, reconcile, on_change)
        with self._batch_progress(total, processor.queue.name) as progress:
            planned = planned_items(processor, items)
            return await self._keep_async(run_batch_async(processor, planned, progress, workers))

    def consume(
        self,
        handler: Handler,
        *,
        queue: str | None = None,
        reconcile: Reconcile | None = None,
        workers: int = 1,
        limit: int | None = None,
    ) -> list[ItemResult]:
        """Do the ready items of ``queue`` (default: the robot's): pending ones, and failed ones
        whose wait is over, oldest first. Each item is taken by this run only."""
        processor = self._processor(handler, queue, reconcile, "skip")
        ready = processor.queue.ready_count(self.settings.queue.max_attempts)
        total = ready if limit is None else min(ready, limit)
        with self._batch_progress(total, processor.queue.name) as progress:
            try:
                return self._keep(lambda: run_batch(processor, claimed_items(processor, limit), progress,
                                                    workers))
            finally:
                processor.release_unstarted()

    def enqueue(self, queue: str, key: str, data: Any = None, *, source: str | None = None,
                on_change: OnChange = "skip") -> str:
        """Give another robot work: add ``key`` with ``data`` to ``queue``.

        Returns ``added``, ``known`` (there already, same data), ``updated`` (not done yet: new
        data) or ``changed`` (done, data changed: left done unless ``on_change="redo"``).
        """
        result = WorkQueue(self.store, queue).enqueue(key, data, source=source, run_id=self.run_id,
                                                      on_change=on_change)
        if self.audit is not None:
            self.audit.later("item.enqueued", {"queue": queue, "item_key": key, "result": result})
        return result

    def enqueue_many(self, queue: str, entries: Iterable[tuple[str, Any]], *, source: str | None = None,
                     on_change: OnChange = "skip") -> dict[str, int]:
        """:meth:`enqueue` for many ``(key, data)``: counts by what happened (``added``, ...)."""
        counts = WorkQueue(self.store, queue).enqueue_many(entries, source=source, run_id=self.run_id,
                                                           on_change=on_change)
        if self.audit is not None:
            self.audit.event("queue.enqueued", {"queue": queue, **counts})
        return counts

    def _processor(
        self, handler: Any, queue: str | None, reconcile: Any, on_change: OnChange
    ) -> ItemProcessor:
        if self.rerun_all and self.robot.side_effects and reconcile is None and not self.confirmed:
            raise UsageError(
                f"robot {self.robot.name} has side effects and no reconcile step: --rerun-all would "
                "do every item again; add --yes to confirm")
        context = ItemContext(run_id=self.run_id, robot=self.robot.name, store=self.store,
                              retry=self.settings.retry, queue=self.settings.queue,
                              rerun_all=self.rerun_all, resubmit=self.resubmit)
        return ItemProcessor(context, handler, queue=queue or self.queue, reconcile=reconcile,
                             on_change=on_change)

    @contextmanager
    def _batch_progress(self, total: int | None, queue: str) -> Iterator[Progress]:
        """The run's progress, also queueing item outcomes for the audit trail (flushed at the end)."""
        progress = _AuditedProgress(self.progress, self.audit)
        progress.start(total)
        try:
            yield progress
        finally:
            progress.close(queue)

    def _keep(self, batch: Callable[[], list[ItemResult]]) -> list[ItemResult]:
        """Run ``batch`` and keep its results, also those reached before it stopped early."""
        try:
            results = batch()
        except StoppedEarly as stopped:
            self.results.extend(stopped.results)
            raise SystemicFailureError(stopped.message) from None
        self.results.extend(results)
        return results

    async def _keep_async(self, batch: Awaitable[list[ItemResult]]) -> list[ItemResult]:
        try:
            results = await batch
        except StoppedEarly as stopped:
            self.results.extend(stopped.results)
            raise SystemicFailureError(stopped.message) from None
        self.results.extend(results)
        return results


class _AuditedProgress:
    """Passes progress on, and queues each item's outcome for the audit trail.

    An item skipped because its key was done before, unchanged, is no event of its own (a daily
    run over a grown register would write thousands of "nothing happened"): the batch ends with one
    ``items.skipped`` event counting them. A skipped key whose data changed is an ``item.outcome``.
    """

    def __init__(self, inner: Progress, audit: RunAudit | None) -> None:
        self.inner, self.audit = inner, audit
        self.unchanged = 0

    def start(self, total: int | None) -> None:
        self.inner.start(total)

    def advance(self, result: ItemResult) -> None:
        if result.outcome == "skipped" and not result.changed:
            self.unchanged += 1
        elif self.audit is not None:
            data = item_audit_data(result.output, result.attempts, result.error_class, result.reconciled)
            if result.note:
                data["note"] = result.note
            self.audit.item(result.key, result.outcome, data)
        self.inner.advance(result)

    def close(self, queue: str) -> None:
        if self.audit is not None:
            if self.unchanged:
                self.audit.event("items.skipped", {"queue": queue, "count": self.unchanged,
                                                   "reason": "done before"})
            self.audit.flush()


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


def audit_closed_run(
    log: AuditLog, store: Store, run_id: str, cause: str,
    search: Callable[..., Iterable[dict[str, Any]]] | None = None,
) -> int:
    """Close in the trail a run that its own process could not close (it died or was killed).

    Item outcomes the ledger holds and the trail lacks (the process died between two batches of
    item events) are written first, with ``recovered: true``; then ``run.finished`` with the status
    the run was closed with, ``cause`` (``process_gone``, ``timeout``, ...) and ``closed_by``. When the
    trail already has the run's end with another status (the process ended "cancelled" on the
    daemon's SIGTERM, the daemon records "timeout"), ``run.status_changed`` says so. Returns the
    number of recovered items. ``search`` looks for the run's events (default: in ``log``; with
    several hosts, in every host's chain: the run may have been written by a host that died).
    """
    search = search or log.search
    record = store.get_run(run_id)
    if record is None:
        return 0
    since = datetime.fromisoformat(record.started_at).astimezone(UTC).date()
    written: Counter[str] = Counter()
    audit = RunAudit(log, run_id, record.robot, audit_actor(record.trigger))
    for event in search(since=since, run_id=run_id):
        if event["event"] == "run.finished":  # its process closed it, then was overruled (timeout)
            was = event["data"].get("status")
            if was != record.status:
                audit.event("run.status_changed", {"status": record.status, "was": was, "cause": cause,
                                                   "closed_by": current_actor()})
            return 0
        if event["event"] == "item.outcome":
            written[str(event["data"].get("item_key"))] += 1
    items = [item for item in store.list_items(run_id) if item.outcome in OUTCOMES
             and (item.outcome != "skipped" or item.note == DATA_CHANGED)]  # as _AuditedProgress
    recovered = 0
    for item in items:
        key = str(log.clean(item.key))
        if written[key] > 0:
            written[key] -= 1
            continue
        data = item_audit_data(item.output, item.attempts, item.error_class, False)
        audit.item(item.key, item.outcome, {**data, "reconciled": None, "recovered": True})
        recovered += 1
    for name, count in item_counts(store.count_items(run_id)).items():
        setattr(record, name, count)
    audit.event("run.finished", {**finished_event_data(record, None), "cause": cause,
                                 "closed_by": current_actor(), "recovered_items": recovered})
    anchor_head(log, store)
    return recovered


def audit_actor(trigger: str) -> str:
    """Who a run is attributed to in the audit trail: the schedule, or the OS user."""
    return trigger if trigger.startswith("schedule:") else current_actor()


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
        resubmit: bool = False,
        confirmed: bool = False,
    ) -> RunRecord:
        """Run robot ``name`` now and return its closed record.

        ``run_id`` lets a caller (the scheduler) choose the id, so it can find the record of a
        run it had to kill. ``rerun_all`` does done items again, asking the robot's reconcile step
        first whether each effect is already there; ``resubmit`` skips that question (a real second
        submission, logged and audited); ``confirmed`` is the operator's ``--yes`` for a rerun of a
        robot with side effects and no reconcile step.
        """
        spec = get_robot(name, self.robots_package)
        validated = spec.validate(params or {})
        with self._robot_lock(spec, trigger, wait) as lock_ok:
            if not lock_ok:
                return self._refused(spec, validated, trigger, run_id)
            run = self._open(spec, validated, trigger, rerun_all, progress, run_id)
            run.resubmit, run.confirmed = rerun_all and resubmit, confirmed
            if run.resubmit:
                logger.warning("run {}: --resubmit: done items are done AGAIN without reconcile "
                               "(a second submission)", run.run_id)
                if run.audit is not None:
                    run.audit.event("run.resubmit", {"actor": run.actor})
            if on_start is not None:
                on_start(run)
            return self._execute(run)

    # -- lock -------------------------------------------------------------------------------------

    @contextmanager
    def _robot_lock(self, spec: RobotSpec, trigger: str, wait: bool) -> Iterator[bool]:
        """The robot's lock: a file lock on this host and, on PostgreSQL, an advisory lock that
        keeps its runs from overlapping on every host. A ``parallel`` robot has none."""
        if spec.parallel:
            yield True
            return
        with self._host_lock(spec, wait) as locked:
            if not locked:
                yield False
                return
            with self._database_lock(spec, wait) as locked_everywhere:
                yield locked_everywhere

    @contextmanager
    def _host_lock(self, spec: RobotSpec, wait: bool) -> Iterator[bool]:
        lock = filelock.FileLock(self.settings.locks_dir / f"{spec.name}.lock")
        try:
            self.settings.locks_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=-1 if wait else 0)
        except filelock.Timeout:
            yield False
            return
        except OSError as error:
            raise ConfigError(f"cannot take the robot's lock in {self.settings.locks_dir}: "
                              f"{error.strerror or error}; check KANSLI_DATA_DIR") from None
        try:
            yield True
        finally:
            lock.release()

    @contextmanager
    def _database_lock(self, spec: RobotSpec, wait: bool) -> Iterator[bool]:
        """A session advisory lock on a connection of its own, held while the run lasts (released
        by PostgreSQL when the process dies); SQLite serves one host, whose file lock is enough."""
        if self.store.engine.dialect.name != "postgresql":
            yield True
            return
        import sqlalchemy as sa

        take = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
        key = {"space": ROBOT_LOCK_SPACE, "name": spec.name}
        with self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            result = connection.execute(sa.text(f"SELECT {take}(:space, hashtext(:name))"), key).scalar()
            if not wait and not result:
                yield False
                return
            try:
                yield True
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:space, hashtext(:name))"), key)

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
        run_dir = self._make_run_dir(run_id)
        record = RunRecord(
            run_id=run_id, robot=spec.name, params=_public_params(params), trigger=trigger,
            actor=current_actor(), status="running", started_at=utcnow(), pid=os.getpid(),
            run_dir=str(run_dir.resolve()),
        )
        self.store.create_run(record)
        audit = RunAudit(self.audit_log, run_id, spec.name, audit_actor(trigger))
        try:
            audit.event("config.loaded", self._config_summary())
            audit.event("run.started", {"trigger": trigger, "params": record.params,
                                        "rerun_all": rerun_all, "os_user": record.actor})
        except KansliError as error:
            self._fail_start(record, run_dir, f"{error} ({self.audit_log.directory}); check KANSLI_LOG_DIR")
        return Run(run_id=run_id, robot=spec, params=params, trigger=trigger, actor=record.actor,
                   run_dir=run_dir, settings=self.settings, store=self.store,
                   rerun_all=rerun_all, progress=progress or NoProgress(), audit=audit)

    def _make_run_dir(self, run_id: str) -> Path:
        """The run's folder with its (empty) log files; :class:`ConfigError` when it cannot be made."""
        run_dir = self.settings.runs_dir / run_id
        try:
            (run_dir / "artifacts").mkdir(parents=True, exist_ok=True)
            for name in ("log.jsonl", "log.txt"):
                (run_dir / name).touch()
        except OSError as error:
            raise ConfigError(f"cannot create the run folder {run_dir}: {error.strerror or error}; "
                              "check KANSLI_DATA_DIR") from None
        return run_dir

    def _fail_start(self, record: RunRecord, run_dir: Path, reason: str) -> NoReturn:
        """Close a run that could not start as ``failed`` with ``reason`` (in its log too), and raise
        :class:`ConfigError`: a record is never left ``running`` by a start-up failure."""
        record.status, record.finished_at, record.error = "failed", utcnow(), f"not started: {reason}"
        self.store.finish_run(record)
        sinks = run_sinks(run_dir, record.run_id, zone_name=self.settings.timezone)
        with sinks, logger.contextualize(run_id=record.run_id, robot=record.robot):
            logger.bind(console=False).error("run {} not started: {}", record.run_id, reason)
        raise ConfigError(f"run {record.run_id} of {record.robot} not started: {reason}")

    def _config_summary(self) -> dict[str, Any]:
        env_file = Path(".env")
        return {
            "settings_file": str(env_file.resolve()) if env_file.is_file() else None,
            "secrets_set": self.settings.secret_names(),
            "database": self.settings.masked()["database_url"],
        }

    def _execute(self, run: Run) -> RunRecord:
        error: BaseException | None = None
        with run_sinks(run.run_dir, run.run_id, zone_name=self.settings.timezone), logger.contextualize(
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
        store_run_files(self.store, run.run_id, run.run_dir, self.settings.host)  # for other hosts
        if isinstance(error, ConfigError):
            raise error  # recorded as failed; the caller still sees a configuration problem (exit 4)
        return record

    def _close(self, run: Run, error: BaseException | None) -> RunRecord:
        record = self.store.get_run(run.run_id)
        assert record is not None
        record.status = run_status(run.results, error)
        record.finished_at = utcnow()
        for name, count in item_counts(self.store.count_items(run.run_id)).items():
            setattr(record, name, count)  # the run's items as stored: true however the run ended
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
            write_report(self.store, run.run_id, self.settings)
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
        """:func:`audit_closed_run`, logged and never fatal (the run history is already right); the
        run's files go to the database too (PostgreSQL) when its folder is on this host."""
        record = self.store.get_run(run_id)
        if record is not None and is_local(record):
            store_run_files(self.store, run_id, record.run_dir, self.settings.host)
        try:
            recovered = audit_closed_run(self.audit_log, self.store, run_id, cause, self._search_trails())
        except KansliError as failure:
            logger.error("could not close run {} in the audit trail: {}", run_id, failure)
            return
        if recovered:
            logger.info("run {}: {} item outcome(s) recovered into the audit trail", run_id, recovered)


    def _search_trails(self) -> Callable[..., Iterable[dict[str, Any]]] | None:
        """With host chains, a search over every host's trail (a run may be closed by another host)."""
        if not self.settings.host_id:
            return None
        from shared.audit_trails import AuditTrails

        return AuditTrails(self.settings, store=self.store).search


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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
