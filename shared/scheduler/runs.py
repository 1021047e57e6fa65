"""The runs of the daemon: a fire's run started, kept from overlapping, retried, watched to its end.

* Runs never overlap: a per-schedule lock in the daemon, besides ``max_instances=1`` and the
  runner's per-robot lock; a refused run is recorded ``skipped``.
* A queue schedule's check starts a run when its queue has enough ready items and no run of it goes
  on (the running one takes the new items too).
* A run that ends ``failed`` or ``interrupted`` is retried by its schedule's ``retries``, after a
  backoff doubling from ``retry_backoff``; the planned retry is recorded (``schedule.retry.planned``),
  so a daemon stopped or killed during the backoff leaves it to the daemon that leads next.
* A timeout kills the run's whole process tree and records ``timeout``; at a stop, a run still going
  after the stop grace is killed and recorded ``cancelled``.
* ``KANSLI_EXECUTION=procrastinate``: a fire's run is a job for the workers, not a process here.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from shared.leader import Fire, Leadership
from shared.queue import WorkQueue
from shared.runner import Runner, new_run_id
from shared.scheduler.actions import _append_audit, record_action
from shared.scheduler.fires import FireClaims
from shared.scheduler.processes import ChildRun, kill_process_tree, run_command
from shared.schedules import Schedule, format_duration
from shared.store import RunRecord, utcnow

if TYPE_CHECKING:
    from shared.scheduler.daemon import DaemonOptions

RETRY_STATUSES = ("failed", "interrupted")


class RunSupervision(FireClaims):
    """The runs of the daemon: a part of :class:`~shared.scheduler.daemon.Daemon`, whose ``__init__``
    sets these attributes."""

    options: DaemonOptions
    leadership: Leadership | None
    children: dict[str, ChildRun]
    _children_lock: threading.Lock
    _schedule_locks: defaultdict[str, threading.Lock]
    _stop_deadline: float | None
    _app: Any
    _app_lock: threading.Lock

    def fire(
        self, schedule_id: str, request_id: int | None = None, retry: tuple[str, int] | None = None,
        claimed: Fire | None = None,
    ) -> None:
        """Start a run of ``schedule_id`` (a fire, an operator's request, a retry of an interrupted
        run: ``retry`` = (its run id, attempt), or a fire ``claimed`` from a dead leader), with its
        retries."""
        scheduled = request_id is None and retry is None and claimed is None
        planned = self.executor.planned.pop(schedule_id, None) if scheduled else None
        fire = self.executor.fires.pop(schedule_id, None) if scheduled else claimed
        if fire is not None:
            planned = fire.planned
        schedule = self.schedules.get(schedule_id)
        if schedule is None or self._stop_event.is_set():
            logger.warning("schedule {}: not started (removed, or the daemon is stopping)", schedule_id)
            return
        if not self._may_fire(schedule, fire):
            return
        if self.settings.execution == "procrastinate":
            self._enqueue(schedule, planned, fire, request_id)
            return
        lock = self._schedule_locks[schedule_id]
        if scheduled and schedule.queue is not None and not self._queue_has_work(schedule, lock):
            return
        if not lock.acquire(blocking=False):
            if fire is None or self._settle(fire, "skipped"):
                self._record_without_run(schedule, "skipped", f"schedule {schedule_id}: a run of it is "
                                         "still in progress; this run was not started",
                                         run_id=fire.run_id if fire else None)
            return
        try:
            record = self._run_with_retries(schedule, planned, request_id, retry, fire)
        finally:
            lock.release()
        if record is not None:
            self._notify(schedule, record)

    def _may_fire(self, schedule: Schedule, fire: Fire | None) -> bool:
        """False (logged) for a fire another leader had already, or when this daemon no longer leads."""
        if fire is not None and fire.run_id is None:
            logger.info("schedule {}: its run planned for {} was {} by {} already; not run again",
                        schedule.id, fire.planned.isoformat(), fire.state, fire.holder)
            return False
        if self.leadership is not None and not self.leadership.leading:
            logger.warning("schedule {}: not started: this daemon no longer leads", schedule.id)
            return False
        return True

    def _queue_has_work(self, schedule: Schedule, lock: threading.Lock) -> bool:
        """A queue schedule's check: enough ready items, and no run of it going on already (the
        running one takes the new items too: checking again is no overlap to record)."""
        if lock.locked():
            return False
        assert schedule.queue is not None
        ready = WorkQueue(self.store, schedule.queue).ready_count(self.settings.queue.max_attempts)
        if ready < schedule.min_items:
            logger.debug("schedule {}: queue {} has {} ready item(s), fewer than {}", schedule.id,
                         schedule.queue, ready, schedule.min_items)
            return False
        logger.info("schedule {}: queue {} has {} ready item(s)", schedule.id, schedule.queue, ready)
        return True

    def _run_with_retries(
        self, schedule: Schedule, planned: datetime | None, request_id: int | None,
        retry: tuple[str, int] | None = None, fire: Fire | None = None,
    ) -> RunRecord | None:
        retry_of, attempt = retry or (None, 0)
        while True:
            record = self._run_once(schedule, planned, request_id if attempt == 0 else None,
                                    (retry_of, attempt) if retry_of else None, fire)
            if (record is None or record.status not in RETRY_STATUSES or attempt >= schedule.retries
                    or self._stop_event.is_set() or not self._may_fire(schedule, None)):
                return record
            attempt += 1
            delay = schedule.retry_delay(attempt)
            logger.warning("schedule {}: run {} {}; retry {}/{} in {}", schedule.id, record.run_id,
                           record.status, attempt, schedule.retries, format_duration(delay))
            due = datetime.now(UTC) + timedelta(seconds=delay)  # in the database: a next leader's too
            record_action(self.store, "schedule.retry.planned", schedule.id,
                          {"run_id": record.run_id, "attempt": attempt, "due": due.isoformat()})
            if self._stop_event.wait(delay) or not self._may_fire(schedule, None):
                return record  # the daemon that leads next (this one restarted, or another) runs it
            planned, retry_of, fire = None, record.run_id, None

    def _run_once(
        self, schedule: Schedule, planned: datetime | None, request_id: int | None,
        retry: tuple[str, int] | None = None, fire: Fire | None = None,
    ) -> RunRecord | None:
        run_id = fire.run_id if fire is not None and fire.run_id else new_run_id()
        if fire is not None and not self._settle(fire, "started"):
            return None
        if planned is not None:
            self._record_scheduled(schedule, run_id, planned, fire)
        if retry is not None:
            record_action(self.store, "schedule.retry", schedule.id,
                          {"run_id": run_id, "retry_of": retry[0], "attempt": retry[1]})
        child = self._spawn(schedule, run_id)
        if fire is not None:
            self._advance(fire, "spawned")
        late = (datetime.now(UTC) - planned).total_seconds() * 1000 if planned else 0.0
        logger.info("schedule {}: run {} started, pid {}, planned {}, late by {:.1f} ms", schedule.id,
                    run_id, child.pid, planned.isoformat() if planned else "now (request or retry)", late)
        if request_id is not None:
            record_action(self.store, "schedule.trigger.started", schedule.id,
                          {"request_id": request_id, "run_id": run_id})
        try:
            self._supervise(child)
            record = self._until_reachable(self._closed_record, child)
            _log_end(schedule, record)
            return record
        finally:
            with self._children_lock:
                self.children.pop(run_id, None)
            if child.stderr is not None:
                child.stderr.close()

    def _record_scheduled(
        self, schedule: Schedule, run_id: str, planned: datetime, fire: Fire | None = None
    ) -> None:
        """``run.scheduled`` in the audit trail: the planned time, and why it moved if it did; the
        leader's host (and the dead leader whose claim it took over)."""
        shift = schedule.shift_of(planned)
        data = {"schedule": schedule.id, "planned": planned.astimezone(UTC).isoformat(),
                "planned_local": planned.astimezone(schedule.tz).isoformat(), "shifted": shift,
                "host": self.settings.host}
        if fire is not None and fire.taken_from is not None:
            data["taken_over_from"] = fire.taken_from
        _append_audit(self.settings, "run.scheduled", run_id=run_id, robot=schedule.robot,
                      actor=f"schedule:{schedule.id}", data=data)
        if shift:
            logger.warning("schedule {}: run {}: {}", schedule.id, run_id, shift)
            record_action(self.store, "schedule.shifted", schedule.id, {"run_id": run_id, "reason": shift})

    def _job_app(self) -> Any:
        """The procrastinate app fires defer their jobs through, opened once (its pool reconnects
        after a database restart); closed when the daemon stops."""
        with self._app_lock:
            if self._app is None:
                from shared.execution import ensure_schema, make_app

                ensure_schema(self.settings)
                app = make_app(self.settings, max_connections=2)
                app.open()
                self._app = app
            return self._app

    def _close_job_app(self) -> None:
        with self._app_lock:
            if self._app is not None:
                self._app.close()
                self._app = None

    def _enqueue(
        self, schedule: Schedule, planned: datetime | None, fire: Fire | None, request_id: int | None
    ) -> None:
        """``KANSLI_EXECUTION=procrastinate``: the run is a job for the workers, not a process here.
        The schedule's queueing lock keeps it from piling up copies waiting for a worker."""
        from shared.execution import enqueue_run

        run_id = fire.run_id if fire is not None and fire.run_id else new_run_id()
        if fire is not None and not self._settle(fire, "started"):
            return
        if planned is not None:
            self._record_scheduled(schedule, run_id, planned, fire)
        trigger = f"schedule:{schedule.id}"
        queued = enqueue_run(self.settings, schedule.robot, schedule.params, trigger=trigger,
                             queueing_lock=trigger, schedule_timeout=schedule.timeout,
                             retries=schedule.retries, retry_backoff=schedule.retry_backoff, run_id=run_id,
                             notify=schedule.notify, store=self.store, app=self._job_app())
        if fire is not None:
            self._advance(fire, "queued" if queued else "skipped")
        if queued is None:  # recorded skipped: a run of it still waits for a worker
            return
        late = (datetime.now(UTC) - planned).total_seconds() * 1000 if planned else 0.0
        logger.info("schedule {}: run {} queued for the workers, planned {}, late by {:.1f} ms", schedule.id,
                    run_id, planned.isoformat() if planned else "now (request or retry)", late)
        if request_id is not None:
            record_action(self.store, "schedule.trigger.started", schedule.id,
                          {"request_id": request_id, "run_id": run_id})

    def _spawn(self, schedule: Schedule, run_id: str) -> ChildRun:
        stderr = tempfile.TemporaryFile()
        process = subprocess.Popen(run_command(schedule, run_id), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        child = ChildRun(run_id, schedule, process.pid, time.monotonic(), process, stderr)
        with self._children_lock:
            self.children[run_id] = child
        return child

    def _supervise(self, child: ChildRun) -> None:
        """Wait for the run to end; kill it on its timeout or after the stop grace."""
        timeout = child.schedule.timeout
        while not child.exited(0.1):
            if timeout and time.monotonic() - child.started >= timeout:
                self._kill(child, "timeout", f"timed out after {format_duration(timeout)}; its "
                           "processes were killed")
                return
            deadline = self._stop_deadline
            if deadline is not None and time.monotonic() >= deadline:
                self._kill(child, "cancelled", "stopped with the scheduler daemon after the stop "
                           f"grace of {format_duration(self.options.stop_grace)}")
                return

    def _kill(self, child: ChildRun, status: str, reason: str) -> None:
        count = kill_process_tree(child.pid, self.options.kill_grace)
        if child.process is not None:
            child.process.wait()
        logger.warning("schedule {}: run {} {} ({} process(es) stopped)", child.schedule.id,
                       child.run_id, reason, count)
        record = self.store.get_run(child.run_id)
        if record is None:
            # killed before its process opened a record: the record under the run's own id
            self._record_without_run(child.schedule, status, reason, log=False, run_id=child.run_id)
            return
        if record.status not in ("running", "cancelled"):
            return  # it ended on its own just before the kill ("cancelled": by our SIGTERM)
        record.status, record.finished_at, record.error = status, utcnow(), reason
        self.store.finish_run(record)
        Runner(self.settings, self.store).close_in_audit(record.run_id, status)

    def _until_reachable(self, action: Callable[..., RunRecord], *args: Any) -> RunRecord:
        """``action(*args)``, tried again while the database cannot be reached (it restarts): a
        run's end is recorded once it is back, never dropped (given up after 10 minutes)."""
        from sqlalchemy.exc import OperationalError

        delay, deadline = 0.5, time.monotonic() + 600
        while True:
            try:
                return action(*args)
            except OperationalError as error:
                if time.monotonic() > deadline:
                    raise
                logger.warning("the database is away ({}); recording the run's end again in {:g} s",
                               str(error).splitlines()[0], delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _closed_record(self, child: ChildRun) -> RunRecord:
        record = self.store.get_run(child.run_id)
        if record is not None and record.status != "running":
            return record
        code = child.process.returncode if child.process else None
        tail = child.stderr_tail()
        reason = f"the run process ended with exit code {code}" + (f": {tail}" if tail else "")
        if record is None:  # it ended before the runner opened a record (bad parameters, ...)
            return self._record_without_run(child.schedule, "failed", reason[:2000], log=False,
                                            run_id=child.run_id)
        self.store.mark_interrupted([record.run_id], reason[:2000])
        Runner(self.settings, self.store).close_in_audit(record.run_id, "process_exited")
        return self.store.get_run(record.run_id) or record

    def running_count(self) -> int:
        with self._children_lock:
            return len(self.children)


def _log_end(schedule: Schedule, record: RunRecord) -> None:
    """The daemon's log line of a finished run: robot, run id, status, duration."""
    took = "-"
    if record.finished_at:
        seconds = (datetime.fromisoformat(record.finished_at)
                   - datetime.fromisoformat(record.started_at)).total_seconds()
        took = format_duration(max(seconds, 0.0))
    level = "INFO" if record.status == "succeeded" else "WARNING"
    logger.log(level, "schedule {}: run {} of {} ended {} after {}", schedule.id, record.run_id,
               record.robot, record.status, took)
