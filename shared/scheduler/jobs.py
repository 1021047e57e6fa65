"""The jobs APScheduler runs: module-level functions handing over to the daemon, and their executor.

The SQLAlchemy job store (table ``kansli_scheduler_jobs``) pickles references to the job functions,
so they live at module level and find the daemon of this process. Job ids are the schedule ids; the
job only carries the id and the schedule is looked up at fire time. The daemon's own jobs (the
control loop, operator requests, retries, fires taken over) live in an in-memory store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.triggers.interval import IntervalTrigger
from loguru import logger

from shared.leader import Fire

if TYPE_CHECKING:
    from shared.scheduler.daemon import Daemon

#: The daemon running in this process (set by :meth:`Daemon.run <shared.scheduler.daemon.Daemon.run>`).
_active_daemon: Daemon | None = None

#: The reference the job store keeps to :func:`fire_schedule`: the one it kept before the scheduler
#: became a package, so jobs stored by either version resolve in both (daemons share a job store).
FIRE_SCHEDULE_REF = "shared.scheduler:fire_schedule"


def fire_schedule(schedule_id: str) -> None:
    """The job of every schedule: start a run of it in the active daemon."""
    daemon = _active_daemon
    if daemon is None:
        logger.error("schedule {} fired outside a daemon; ignored", schedule_id)
        return
    daemon.fire(schedule_id)


def fire_requested(schedule_id: str, request_id: int) -> None:
    """A run an operator asked for (``kansli schedules trigger``)."""
    daemon = _active_daemon
    if daemon is not None:
        daemon.fire(schedule_id, request_id=request_id)


def fire_retry(schedule_id: str, retry_of: str, attempt: int) -> None:
    """A retry of a run of ``schedule_id`` that a daemon crash interrupted (found at start)."""
    daemon = _active_daemon
    if daemon is not None:
        daemon.fire(schedule_id, retry=(retry_of, attempt))


def fire_taken_over(schedule_id: str, planned: str, run_id: str, host: str) -> None:
    """A fire a previous leader (on ``host``) claimed and never started, taken over by this one."""
    daemon = _active_daemon
    if daemon is not None:
        daemon.fire(schedule_id, claimed=Fire(schedule_id, datetime.fromisoformat(planned), run_id,
                                              taken_from=host))


def control_tick() -> None:
    """Heartbeat, SIGHUP syncs and operator requests, every half second."""
    daemon = _active_daemon
    if daemon is not None:
        daemon.control_tick()


class PlannedTimeExecutor(ThreadPoolExecutor):
    """A thread pool that remembers each schedule job's planned run time, and this daemon's claim on
    that fire (:meth:`Daemon._claim_fire`, before APScheduler moves the job on), for the job to read.

    It outlives one scheduler: a daemon that loses the lead keeps the runs it started (``closing``
    False: a scheduler's shutdown leaves the pool alone).
    """

    def __init__(self, max_workers: int = 10,
                 claim: Callable[[Job, datetime], Fire | None] | None = None) -> None:
        super().__init__(max_workers)
        self.planned: dict[str, datetime] = {}
        self.fires: dict[str, Fire] = {}
        self.claim = claim
        self.closing = False

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        if job._jobstore_alias == "default":
            self.planned[job.id] = run_times[-1]
            fire = self.claim(job, run_times[-1]) if self.claim is not None else None
            if fire is not None:
                self.fires[job.id] = fire
        super()._do_submit_job(job, run_times)

    def shutdown(self, wait: bool = True) -> None:
        if self.closing:
            super().shutdown(wait)


def _stale_trigger(stored: Any, wanted: Any) -> bool:
    """True when a stored job's trigger predates the daylight-saving-safe ones of this version."""
    if type(stored) is not type(wanted):
        return True
    return isinstance(stored, IntervalTrigger) and stored.timezone != UTC
