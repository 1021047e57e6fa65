"""``kansli worker``: a robot host serving run jobs from PostgreSQL (see :mod:`shared.execution`).

A worker serves the robots it is given (``--robots``) whose tags it has (``--tags``: a robot tagged
``chromium`` runs only where Chromium is). Each job becomes a ``kansli run`` subprocess, supervised as
the scheduler supervises its runs: killed with its process tree at the schedule's timeout, and dying
with the worker (a SIGKILLed worker leaves no run behind it, as a host that lost its power).

Every worker heartbeats (``kansli_workers``, also procrastinate's own table). Every live worker also
looks after the dead: a job whose worker stopped heartbeating longer than
``KANSLI_CLUSTER__HEARTBEAT_TIMEOUT_S`` is given back to its queue, and the run it was doing is closed as
``interrupted``, so its in-flight items are reconciled by the next run, on whichever host.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa
from loguru import logger

from shared.errors import ConfigError
from shared.execution import (
    RunJob,
    defer_job_async,
    ensure_schema,
    make_app,
    mark_queued,
    require_cluster,
    robot_queue,
)
from shared.store import QUEUED, Store, cluster_runs, open_store, runs, utcnow, workers

if TYPE_CHECKING:
    import procrastinate
    from procrastinate.job_context import JobContext

    from shared.registry import RobotSpec
    from shared.settings import Settings

STDERR_TAIL = 2000
_PR_SET_PDEATHSIG = 1


@dataclass
class WorkerInfo:
    """One worker as ``kansli workers`` shows it."""

    worker: str
    host: str
    pid: int
    robots: list[str]
    tags: list[str]
    concurrency: int
    current_runs: list[str]
    started_at: str
    heartbeat_at: str
    stopped_at: str | None
    alive: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_workers(store: Store, timeout: float) -> list[WorkerInfo]:
    """Every worker recorded, newest heartbeat first; ``alive``: heartbeat within ``timeout``."""
    cutoff = (datetime.now(UTC) - timedelta(seconds=timeout)).isoformat(timespec="microseconds")
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(workers).order_by(workers.c.heartbeat_at.desc())).all()
    found = []
    for row in rows:
        info = WorkerInfo(
            worker=row.worker, host=row.host, pid=row.pid, robots=json.loads(row.robots),
            tags=json.loads(row.tags), concurrency=row.concurrency,
            current_runs=json.loads(row.current_runs), started_at=row.started_at,
            heartbeat_at=row.heartbeat_at, stopped_at=row.stopped_at)
        info.alive = row.stopped_at is None and row.heartbeat_at >= cutoff
        found.append(info)
    return found


def live_workers(store: Store, timeout: float | None = None) -> list[WorkerInfo]:
    from shared.settings import get_settings

    limit = timeout if timeout is not None else get_settings().cluster.heartbeat_timeout_s
    return [worker for worker in list_workers(store, limit) if worker.alive]


def select_robots(
    specs: dict[str, RobotSpec], robots: Sequence[str] | None, tags: Iterable[str]
) -> list[RobotSpec]:
    """The robots a worker serves: those named (default: all) whose every tag it has."""
    have = set(tags)
    if robots:
        unknown = [name for name in robots if name not in specs]
        if unknown:
            raise ConfigError(f"unknown robot(s) for --robots: {', '.join(unknown)} "
                              f"(known: {', '.join(specs)})")
        chosen = [specs[name] for name in robots]
    else:
        chosen = list(specs.values())
    served = [spec for spec in chosen if set(spec.tags) <= have]
    if not served:
        lacking = {spec.name: sorted(set(spec.tags) - have) for spec in chosen}
        raise ConfigError("this worker would serve no robot: " + "; ".join(
            f"{name} needs --tags {','.join(need)}" for name, need in lacking.items()))
    return served


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The run process gets SIGKILL when its worker dies (Linux); a worker never leaves orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def run_command(job: RunJob, run_id: str) -> list[str]:
    """The ``kansli run`` command line of a job's run."""
    from shared.scheduler import kansli_run_command

    return kansli_run_command(job.robot, run_id, job.trigger, job.params, job.rerun_all)


async def run_job(context: JobContext, **kwargs: Any) -> None:
    """The ``kansli.run`` task: do one run job on the worker that took it."""
    worker = context.additional_context["kansli"]
    assert isinstance(worker, KansliWorker)
    await worker.execute(RunJob(**kwargs), context.job.id)


@dataclass
class KansliWorker:
    """One ``kansli worker`` process."""

    settings: Settings
    store: Store
    robots: list[RobotSpec]
    tags: list[str]
    concurrency: int = 1
    kill_grace: float = 5.0
    stop_grace: float = 60.0
    name: str = ""
    current: set[str] = field(default_factory=set)
    app: procrastinate.App | None = None

    def __post_init__(self) -> None:
        self.name = self.name or f"{self.settings.host}:{os.getpid()}"

    # -- one job ---------------------------------------------------------------------------------

    async def execute(self, job: RunJob, job_id: int | None) -> None:
        run_id = await asyncio.to_thread(self._take, job, job_id)
        logger.info("job {}: run {} of {} starting ({})", job_id, run_id, job.robot, job.trigger)
        self.current.add(run_id)
        try:
            status = await self._supervise(job, run_id)
        finally:
            self.current.discard(run_id)
        logger.log("INFO" if status == "succeeded" else "WARNING", "job {}: run {} of {} ended {}",
                   job_id, run_id, job.robot, status)
        if job.notify:
            await asyncio.to_thread(self._notify, job, run_id)
        from shared.scheduler import RETRY_STATUSES

        if status in RETRY_STATUSES and job.attempt < job.retries and self.app is not None:
            await self._retry_later(job)

    def _take(self, job: RunJob, job_id: int | None) -> str:
        """The run's id (a new one when the job's run already started elsewhere: a job given back
        after its worker died) and its row, now on this worker."""
        from shared.runner import new_run_id

        run_id = job.run_id
        record = self.store.get_run(run_id)
        if record is not None and record.status != QUEUED:
            run_id = new_run_id()
            mark_queued(self.store, run_id, robot_queue(job.robot))
            logger.warning("job {}: its run {} had started already ({}); retried as run {}", job_id,
                           job.run_id, record.status, run_id)
        with self.store.engine.begin() as connection:
            connection.execute(cluster_runs.update().where(cluster_runs.c.run_id == run_id).values(
                worker=self.name, host=self.settings.host, job_id=job_id, started_at=utcnow()))
        return run_id

    async def _supervise(self, job: RunJob, run_id: str) -> str:
        stderr = tempfile.TemporaryFile()
        process = await asyncio.create_subprocess_exec(
            *run_command(job, run_id), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            preexec_fn=_die_with_parent)
        try:
            await asyncio.wait_for(process.wait(), timeout=job.timeout or None)
        except TimeoutError:
            reason = f"timed out after {job.timeout:g} s; its processes were killed"
            return await self._until_reachable(self._kill, process.pid, run_id, "timeout", reason)
        except asyncio.CancelledError:
            await asyncio.to_thread(self._kill, process.pid, run_id, "cancelled",
                                    "stopped with its worker after the stop grace")
            raise
        finally:
            if process.returncode is None:
                await process.wait()
        return await self._until_reachable(self._closed, job, run_id, process.returncode, stderr)

    async def _until_reachable(self, action: Any, *args: Any) -> Any:
        """``action(*args)`` in a thread, tried again while the database cannot be reached (it
        restarts): a run's end is recorded once it is back, never dropped."""
        from sqlalchemy.exc import OperationalError

        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(action, *args)
            except OperationalError as error:
                logger.warning("worker {}: the database is away ({}); trying again in {:g} s", self.name,
                               str(error).splitlines()[0], delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _kill(self, pid: int, run_id: str, status: str, reason: str) -> str:
        from shared.runner import Runner
        from shared.scheduler import kill_process_tree

        count = kill_process_tree(pid, self.kill_grace)
        logger.warning("run {} {} ({} process(es) stopped)", run_id, reason, count)
        record = self.store.get_run(run_id)
        if record is not None and record.status in ("running", "cancelled", QUEUED):
            record.status, record.finished_at, record.error = status, utcnow(), reason
            self.store.finish_run(record)
            Runner(self.settings, self.store).close_in_audit(run_id, status)
        return record.status if record is not None else status

    def _closed(self, job: RunJob, run_id: str, code: int | None, stderr: IO[bytes]) -> str:
        """The run's status as its process recorded it; closed here when it could not."""
        from shared.redaction import redact
        from shared.runner import Runner

        record = self.store.get_run(run_id)
        if record is not None and record.status not in ("running", QUEUED):
            return record.status
        stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - STDERR_TAIL))
        tail = redact(stderr.read().decode("utf-8", "replace")).strip()
        reason = f"the run process ended with exit code {code}" + (f": {tail}" if tail else "")
        if record is None:
            return "failed"
        if record.status == QUEUED:  # refused before the runner opened it (bad parameters, ...)
            record.status, record.finished_at, record.error = "failed", utcnow(), reason[:2000]
            self.store.finish_run(record)
            return "failed"
        self.store.mark_interrupted([run_id], reason[:2000])
        Runner(self.settings, self.store).close_in_audit(run_id, "process_exited")
        return "interrupted"

    def _notify(self, job: RunJob, run_id: str) -> None:
        from shared.notify import notify_run

        record = self.store.get_run(run_id)
        if record is not None:
            schedule = job.trigger.removeprefix("schedule:") if job.trigger.startswith("schedule:") else None
            notify_run(record, self.store.list_items(run_id), job.notify, self.settings, schedule_id=schedule)

    async def _retry_later(self, job: RunJob) -> None:
        from shared.runner import new_run_id

        assert self.app is not None
        delay = job.retry_backoff * 2 ** job.attempt
        again = RunJob(**{**job.kwargs(), "attempt": job.attempt + 1, "run_id": new_run_id()})
        spec = next((spec for spec in self.robots if spec.name == job.robot), None)
        await asyncio.to_thread(self._queue_record, again)
        await defer_job_async(self.app, again, parallel=bool(spec and spec.parallel), schedule_in=delay)
        logger.warning("run of {}: retry {}/{} queued as run {} in {:g} s", job.robot, again.attempt,
                       job.retries, again.run_id, delay)

    def _queue_record(self, job: RunJob) -> None:
        from shared.runner import current_actor
        from shared.store import RunRecord

        self.store.create_run(RunRecord(run_id=job.run_id, robot=job.robot, params=job.params,
                                        trigger=job.trigger, actor=current_actor(), status=QUEUED,
                                        started_at=utcnow()))
        mark_queued(self.store, job.run_id, robot_queue(job.robot))

    # -- the worker's own life ----------------------------------------------------------------------

    def heartbeat(self, *, first: bool = False) -> None:
        now = utcnow()
        values = {"host": self.settings.host, "pid": os.getpid(),
                  "robots": json.dumps(sorted(spec.name for spec in self.robots)),
                  "tags": json.dumps(sorted(self.tags)), "concurrency": self.concurrency,
                  "current_runs": json.dumps(sorted(self.current)), "heartbeat_at": now}
        with self.store.engine.begin() as connection:
            if first:
                connection.execute(self.store.insert(workers).values(
                    worker=self.name, started_at=now, stopped_at=None, **values)
                    .on_conflict_do_nothing(index_elements=["worker"]))
            connection.execute(workers.update().where(workers.c.worker == self.name).values(**values))

    def stopped(self) -> None:
        with self.store.engine.begin() as connection:
            connection.execute(workers.update().where(workers.c.worker == self.name)
                               .values(stopped_at=utcnow(), current_runs="[]"))

    async def _every(self, seconds: float, action: Any, what: str) -> None:
        """Do ``action`` every ``seconds``, surviving a database that is away for a while."""
        while True:
            try:
                await action()
            except Exception as error:  # noqa: BLE001 - logged; tried again next time
                logger.warning("worker {}: {} failed: {}", self.name, what, error)
            await asyncio.sleep(seconds)

    async def _beat(self) -> None:
        await asyncio.to_thread(self.heartbeat)

    async def _recover(self) -> None:
        """Give back the jobs of dead workers; close the runs they were doing as interrupted."""
        assert self.app is not None
        await asyncio.to_thread(reap_dead_hosts, self.settings, self.store)  # first: its items free
        await asyncio.to_thread(self._reap_own)
        timeout = self.settings.cluster.heartbeat_timeout_s
        stalled = await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=timeout)
        for stalled_job in stalled:
            try:
                await self.app.job_manager.retry_job(stalled_job)
                logger.warning("job {} ({}) had a dead worker: given back to its queue", stalled_job.id,
                               stalled_job.queue)
            except Exception as error:  # noqa: BLE001 - another worker gave it back first
                logger.debug("job {}: not given back: {}", stalled_job.id, error)

    def _reap_own(self) -> None:
        """Runs recorded on this worker as running that it no longer does (their end could not be
        recorded): closed as interrupted."""
        from shared.runner import Runner

        with self.store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(cluster_runs.c.run_id).join(runs, runs.c.run_id == cluster_runs.c.run_id)
                .where(runs.c.status == "running", cluster_runs.c.worker == self.name)).all()
        lost = [row.run_id for row in rows if row.run_id not in self.current]
        if lost and self.store.mark_interrupted(lost, "its run process ended without closing it"):
            for run_id in lost:
                Runner(self.settings, self.store).close_in_audit(run_id, "process_exited")

    async def run(self) -> None:
        app = self.app = make_app(self.settings, max_connections=self.concurrency + 3)
        await asyncio.to_thread(self.heartbeat, first=True)
        beat = self.settings.cluster.heartbeat_s
        logger.info("worker {} serving {} (tags: {}; {} at a time)", self.name,
                    ", ".join(spec.name for spec in self.robots), ", ".join(self.tags) or "none",
                    self.concurrency)
        async with app.open_async():
            helpers = [asyncio.create_task(self._every(beat, self._beat, "heartbeat")),
                       asyncio.create_task(self._every(beat, self._recover, "recovery"))]
            try:
                await self._work(app)
            finally:
                for task in helpers:
                    task.cancel()
                await asyncio.to_thread(self.stopped)
        logger.info("worker {} stopped", self.name)

    async def _work(self, app: procrastinate.App) -> None:
        """procrastinate's worker loop; started again when it fails (the database restarted)."""
        while True:
            try:
                await app.run_worker_async(
                    queues=[robot_queue(spec.name) for spec in self.robots], concurrency=self.concurrency,
                    name=self.name, additional_context={"kansli": self},
                    update_heartbeat_interval=self.settings.cluster.heartbeat_s,
                    stalled_worker_timeout=self.settings.cluster.heartbeat_timeout_s,
                    shutdown_graceful_timeout=self.stop_grace, install_signal_handlers=True)
                return
            except Exception as error:  # noqa: BLE001 - the database went away: wait, then go on
                logger.warning("worker {}: lost the database ({}); starting again", self.name, error)
                await asyncio.sleep(self.settings.cluster.heartbeat_s)


def reap_dead_hosts(settings: Settings, store: Store) -> int:
    """Close as ``interrupted`` the running runs of workers whose heartbeat stopped."""
    from shared.runner import Runner

    alive = {worker.worker for worker in live_workers(store, settings.cluster.heartbeat_timeout_s)}
    cutoff = (datetime.now(UTC) - timedelta(seconds=settings.cluster.heartbeat_timeout_s)).isoformat(
        timespec="microseconds")
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(cluster_runs.c.run_id, cluster_runs.c.worker)
            .join(runs, runs.c.run_id == cluster_runs.c.run_id)
            .where(runs.c.status == "running", cluster_runs.c.worker.is_not(None),
                   cluster_runs.c.started_at < cutoff)).all()
    dead = [row.run_id for row in rows if row.worker not in alive]
    if not dead:
        return 0
    closed = store.mark_interrupted(dead, "its worker stopped heartbeating (the host died)")
    runner = Runner(settings, store)
    for run_id in dead:
        runner.close_in_audit(run_id, "worker_gone")
    logger.warning("closed {} run(s) of dead workers as interrupted: {}", closed, ", ".join(dead))
    return closed


def serve(settings: Settings, robots: Sequence[str] | None = None, tags: Sequence[str] = (),
          concurrency: int = 1, stop_grace: float = 60.0) -> int:
    """Run a worker in this process until SIGTERM (``kansli worker``). Returns the exit code."""
    from shared.registry import discover

    require_cluster(settings)
    served = select_robots(discover(settings.robots_package), robots, tags)
    ensure_schema(settings)
    store = open_store(settings.effective_database_url)
    worker = KansliWorker(settings, store, served, sorted(set(tags)), concurrency, stop_grace=stop_grace)
    asyncio.run(worker.run())
    return 0
