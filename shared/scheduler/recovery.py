"""A daemon's recovery when it starts (or leads): what a crashed daemon left running, and retries.

Runs whose process is gone are closed ``interrupted`` and retried by their schedule's ``retries``
(the attempts counted from the ``schedule.retry`` actions); retries planned by an earlier daemon and
not started (``schedule.retry.planned``) are planned again; scheduled runs whose process survived the
previous daemon on this machine are adopted and watched to their end; operator requests queued while
no daemon ran are closed, ignored.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from loguru import logger

from shared.runner import Runner
from shared.scheduler.jobs import fire_retry
from shared.scheduler.processes import ChildRun, _pid_alive
from shared.scheduler.runs import RETRY_STATUSES, RunSupervision, _log_end
from shared.scheduler.status import HEARTBEAT_STALE, _age
from shared.schedules import Schedule, format_duration
from shared.store import (
    RunRecord,
    finish_schedule_request,
    list_operator_actions,
    pending_schedule_requests,
)


class Recovery(RunSupervision):
    """The recovery of the daemon: a part of :class:`~shared.scheduler.daemon.Daemon`."""

    def _recover(self) -> tuple[int, list[str]]:
        """Close runs whose process is gone as interrupted (retrying them by their schedule's
        ``retries``); adopt scheduled runs that survived."""
        before = {record.run_id for record in self.store.list_runs(status="running", limit=1000)}
        reaped = Runner(self.settings, self.store).reap_interrupted()
        if reaped:
            logger.warning("closed {} run(s) whose process had ended as interrupted", reaped)
            for run_id in before:
                record = self.store.get_run(run_id)
                if record is not None and record.status == "interrupted":
                    self._retry_later(record)
        for request in pending_schedule_requests(self.store):
            if _age(request.requested_at) > HEARTBEAT_STALE:  # younger: asked while the lead changed
                finish_schedule_request(self.store, request.request_id,
                                        "ignored: queued while no daemon was running")
        self._replan_retries()
        host = socket.gethostname()
        adopted = []
        for record in self.store.list_runs(status="running", limit=1000):
            schedule = self.schedules.get(record.trigger.removeprefix("schedule:"))
            if schedule and record.actor.endswith(f"@{host}") and _pid_alive(record.pid):
                adopted.append(record.run_id)
                self._adopt(record, schedule)
        return reaped, adopted

    def _adopt(self, record: RunRecord, schedule: Schedule) -> None:
        assert record.pid is not None
        age = _age(record.started_at)
        child = ChildRun(record.run_id, schedule, record.pid, time.monotonic() - age)
        logger.warning("run {} of schedule {} survived the previous daemon; watching it",
                       record.run_id, schedule.id)
        with self._children_lock:
            self.children[child.run_id] = child
        threading.Thread(target=self._watch_adopted, args=(child,), daemon=True,
                         name=f"adopted-{child.run_id}").start()

    def _watch_adopted(self, child: ChildRun) -> None:
        try:
            self._supervise(child)
            Runner(self.settings, self.store).reap_interrupted(child.schedule.robot)
        finally:
            with self._children_lock:
                self.children.pop(child.run_id, None)
        record = self.store.get_run(child.run_id)
        if record is not None:
            _log_end(child.schedule, record)
            if record.status == "interrupted" and not self._stop_event.is_set():
                self._retry_later(record)

    def _retry_later(self, record: RunRecord) -> None:
        """Plan the retry of a scheduled run that ended interrupted outside a retry loop of this daemon."""
        schedule = self.schedules.get(record.trigger.removeprefix("schedule:"))
        if schedule is None or not record.trigger.startswith("schedule:"):
            return
        if schedule.retries == 0:
            return
        attempt = self._attempt_of(schedule.id, record.run_id) + 1
        if attempt > schedule.retries:
            logger.warning("schedule {}: run {} interrupted; no retry left ({} of {} used)", schedule.id,
                           record.run_id, attempt - 1, schedule.retries)
            return
        delay = schedule.retry_delay(attempt)
        logger.warning("schedule {}: run {} interrupted; retry {}/{} in {}", schedule.id, record.run_id,
                       attempt, schedule.retries, format_duration(delay))
        self._plan_retry(schedule, record.run_id, attempt, datetime.now(UTC) + timedelta(seconds=delay))

    def _plan_retry(self, schedule: Schedule, run_id: str, attempt: int, when: datetime) -> None:
        """Retry ``attempt`` of ``run_id`` at ``when``: a job of this daemon's control job store."""
        self.scheduler.add_job(fire_retry, "date", args=[schedule.id, run_id, attempt], run_date=when,
                               id=f"retry-{run_id}", jobstore="control", executor="default",
                               misfire_grace_time=None, replace_existing=True)

    def _replan_retries(self) -> None:
        """Plan again the retries a daemon planned after a failed run and did not start (it was
        stopped or killed during the backoff, or lost the lead): at their due time, or now when that
        passed within the schedule's misfire grace."""
        actions = list_operator_actions(self.store, limit=1000)
        started = {action.details.get("retry_of") for action in actions if action.action == "schedule.retry"}
        for action in actions:
            run_id = str(action.details.get("run_id"))
            schedule = self.schedules.get(action.schedule_id or "")
            if action.action != "schedule.retry.planned" or run_id in started or schedule is None:
                continue
            started.add(run_id)  # the newest plan of a run only
            record = self.store.get_run(run_id)
            if record is None or record.status not in RETRY_STATUSES:
                continue
            due, attempt = datetime.fromisoformat(action.details["due"]), int(action.details["attempt"])
            if (datetime.now(UTC) - due).total_seconds() > schedule.misfire_grace:
                logger.warning("schedule {}: retry {}/{} of run {} was due at {}, past its misfire grace: "
                               "not run", schedule.id, attempt, schedule.retries, run_id, due.isoformat())
                continue
            logger.warning("schedule {}: retry {}/{} of run {}, planned by an earlier daemon, at {}",
                           schedule.id, attempt, schedule.retries, run_id, due.isoformat())
            self._plan_retry(schedule, run_id, attempt, max(due, datetime.now(UTC)))

    def _attempt_of(self, schedule_id: str, run_id: str) -> int:
        """Which retry ``run_id`` was (0: the first run), from the ``schedule.retry`` actions."""
        for action in list_operator_actions(self.store, schedule_id, limit=500):
            if action.action == "schedule.retry" and action.details.get("run_id") == run_id:
                return int(action.details.get("attempt", 0))
        return 0
