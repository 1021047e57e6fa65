"""Each fire of a schedule: claimed once in the fire ledger, then run, skipped, missed or taken over.

* Each fire of a time schedule is claimed once per (schedule, planned time) in
  ``kansli_schedule_fires`` before it starts, so no leader fires it twice and a fire a dead leader
  claimed and never started is run by the next one within its misfire grace.
* Misfires within the grace are coalesced into one run; a run missed by more is recorded ``missed``.
* ``max_instances=1``: a fire while the previous run of its schedule still runs is recorded
  ``skipped``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from apscheduler.events import JobExecutionEvent, JobSubmissionEvent
from apscheduler.job import Job
from apscheduler.schedulers.blocking import BlockingScheduler
from loguru import logger

from shared.clock import local_time
from shared.leader import (
    DATABASE_ERRORS,
    Fire,
    FireLedger,
    Orphan,
    close_unqueued,
    left_a_trace,
    planned_key,
    short_reason,
)
from shared.notify import notify_run
from shared.redaction import redact_value
from shared.runner import current_actor, new_run_id
from shared.scheduler.actions import _audit_run_without_process
from shared.scheduler.jobs import PlannedTimeExecutor, fire_taken_over
from shared.schedules import Schedule, format_duration
from shared.settings import Settings
from shared.store import QUEUED, RunRecord, Store, utcnow

FIRES_KEPT = timedelta(days=7)


class FireClaims:
    """The fires of the daemon: a part of :class:`~shared.scheduler.daemon.Daemon`, whose ``__init__``
    sets these attributes."""

    settings: Settings
    store: Store
    schedules: dict[str, Schedule]
    scheduler: BlockingScheduler
    executor: PlannedTimeExecutor
    ledger: FireLedger | None
    _stop_event: threading.Event
    _last_takeover_scan: float

    # -- the fire ledger (kansli_schedule_fires) ---------------------------------------------------

    def _claim_fire(self, job: Job, planned: datetime) -> Fire | None:
        """Claim a schedule's fire, in the scheduler's thread before APScheduler moves the job on."""
        schedule = self.schedules.get(job.id)
        if self.ledger is None or schedule is None or schedule.queue is not None:
            return None
        fire = self.ledger.claim(job.id, planned, new_run_id())
        if fire.taken_from is not None:
            logger.warning("schedule {}: its run planned for {} was claimed by {}, which never started "
                           "it; this leader runs it", job.id, planned.isoformat(), fire.taken_from)
        return fire

    def _settle(self, fire: Fire, state: str, was: str = "claimed") -> bool:
        """Move this daemon's fire from ``was`` to ``state``; False (logged) when another leader took it."""
        assert self.ledger is not None and fire.run_id is not None
        try:
            if self.ledger.settle(fire.schedule_id, fire.planned, fire.run_id, state, was=was):
                return True
        except DATABASE_ERRORS as error:
            logger.error("schedule {}: its run planned for {} not started: the database failed: {}",
                         fire.schedule_id, fire.planned.isoformat(), short_reason(error))
            return False
        logger.warning("schedule {}: its run planned for {} not started here: another leader took the "
                       "fire over", fire.schedule_id, fire.planned.isoformat())
        return False

    def _advance(self, fire: Fire, state: str) -> None:
        """A started fire's run started (``spawned``), or was queued: no later leader looks at it."""
        assert self.ledger is not None and fire.run_id is not None
        try:
            self.ledger.settle(fire.schedule_id, fire.planned, fire.run_id, state, was="started")
        except DATABASE_ERRORS as error:  # its run record tells the next leader
            logger.warning("schedule {}: run {}: could not note its start: {}", fire.schedule_id,
                           fire.run_id, short_reason(error))

    def _take_over_fires(self) -> None:
        """Fires a previous leader claimed and never started: run within their grace, once. At the
        start of a lead, then every few seconds (a fire marked started whose run left no trace is
        only looked at once its leader would have started it long ago)."""
        if self.ledger is None:
            return
        now = datetime.now(UTC)
        self._last_takeover_scan = time.monotonic()
        self.ledger.prune(now - FIRES_KEPT)
        longest = max((schedule.misfire_grace for schedule in self.schedules.values()), default=0.0)
        stuck = now - timedelta(seconds=max(10.0, 10 * self.settings.cluster.leader_poll_s))
        for orphan in self.ledger.orphans(now - timedelta(seconds=longest + 60), stuck):
            schedule = self.schedules.get(orphan.schedule_id)
            if schedule is not None and schedule.queue is None and not self._ran_anyway(orphan):
                self._take_over(schedule, orphan, now)

    def _ran_anyway(self, orphan: Orphan) -> bool:
        """A fire marked started by a leader that died right then: did its run start all the same?"""
        assert self.ledger is not None
        if orphan.state != "started" or not left_a_trace(self.store, orphan.run_id):
            return False
        record = self.store.get_run(orphan.run_id)
        state = "queued" if record is not None and record.status == QUEUED else "spawned"
        self.ledger.settle(orphan.schedule_id, orphan.planned, orphan.run_id, state, was="started")
        return True

    def _take_over(self, schedule: Schedule, orphan: Orphan, now: datetime) -> None:
        assert self.ledger is not None
        job = self.scheduler.get_job(schedule.id, "default")
        due = job._get_run_times(now) if job is not None and job.next_run_time is not None else []
        if orphan.state == "claimed" and due and due[-1] == orphan.planned:
            return  # the job is due at that very time: its claim takes the fire over (a claim in place)
        if job is not None and (job.next_run_time is None or (due and due[-1] > orphan.planned)):
            # paused; or a later fire of it is due now, and the missed ones coalesce into it
            if self._settle(Fire(schedule.id, orphan.planned, orphan.run_id),
                            "coalesced" if due else "paused", was=orphan.state):
                logger.info("schedule {}: its run planned for {} (claimed by {}, never started) is "
                            "{}", schedule.id, orphan.planned.isoformat(), orphan.host,
                            "coalesced into the one due now" if due else "not run: paused")
            return
        run_id = new_run_id()
        if (now - orphan.planned).total_seconds() > schedule.misfire_grace:
            if self.ledger.settle(schedule.id, orphan.planned, orphan.run_id, "missed", new_run_id=run_id,
                                  was=orphan.state):
                close_unqueued(self.store, orphan.run_id, f"not queued: {orphan.host} died first")
                self._record_missed(schedule, orphan.planned, run_id,
                                    f"claimed by {orphan.host}, which did not start it")
            return
        if not self.ledger.take_over(orphan, run_id):
            return
        close_unqueued(self.store, orphan.run_id, f"not queued: {orphan.host} died first; run as {run_id}")
        logger.warning("schedule {}: its run planned for {} was claimed by {}, which never started it; "
                       "this leader runs it", schedule.id, orphan.planned.isoformat(), orphan.host)
        self.scheduler.add_job(fire_taken_over, args=[schedule.id, planned_key(orphan.planned), run_id,
                                                      orphan.host],
                               id=f"takeover-{schedule.id}-{run_id}", jobstore="control", executor="default",
                               misfire_grace_time=None)

    # -- fires that start no run: missed, skipped -------------------------------------------------

    def _on_missed(self, event: JobExecutionEvent) -> None:
        schedule = self.schedules.get(event.job_id)
        if schedule is None:
            return
        planned = event.scheduled_run_time.astimezone(UTC)
        fire = self.executor.fires.pop(event.job_id, None)
        if fire is not None and planned_key(fire.planned) != planned_key(planned):
            fire = None  # a claim of another fire of it (not this missed one)
        if fire is not None and (fire.run_id is None or not self._settle(fire, "missed")):
            return  # another leader recorded it, or took it over
        self._record_missed(schedule, planned, fire.run_id if fire else None)

    def _record_missed(self, schedule: Schedule, planned: datetime, run_id: str | None,
                       why: str | None = None) -> None:
        late = (datetime.now(UTC) - planned).total_seconds()
        reason = (f"planned for {local_time(planned, seconds=True)}, missed by "
                  f"{format_duration(late)} (more than the misfire grace "
                  f"{format_duration(schedule.misfire_grace)}); not started")
        shift = schedule.shift_of(planned)
        if shift:
            reason += f" (planned there because {shift})"
        if why:
            reason += f" ({why})"
        record = self._record_without_run(schedule, "missed", reason,
                                          planned.isoformat(timespec="microseconds"), run_id=run_id)
        self._notify(schedule, record)

    def _on_max_instances(self, event: JobSubmissionEvent) -> None:
        schedule = self.schedules.get(event.job_id)
        if schedule is not None and schedule.queue is not None:
            return  # a queue check during a run of it: the running one takes the new items too
        if schedule is None or self._stop_event.is_set():
            return
        run_id = new_run_id()
        if self.ledger is not None and not self.ledger.record(
                schedule.id, event.scheduled_run_times[-1], "skipped", run_id):
            return  # another leader had this fire already
        self._record_without_run(schedule, "skipped", f"schedule {schedule.id}: the previous run is "
                                 "still running; this run was not started", run_id=run_id)

    def _record_without_run(
        self, schedule: Schedule, status: str, reason: str, started_at: str | None = None, log: bool = True,
        run_id: str | None = None,
    ) -> RunRecord:
        now = utcnow()
        record = RunRecord(
            run_id=run_id or new_run_id(), robot=schedule.robot, params=redact_value(schedule.params),
            trigger=f"schedule:{schedule.id}", actor=current_actor(), status=status,
            started_at=started_at or now, finished_at=now, error=reason,
        )
        self.store.create_run(record)
        if log:
            logger.warning("schedule {}: run {} of {} ended {}, not started: {}", schedule.id,
                           record.run_id, record.robot, status, reason)
        event = {"skipped": "run.skipped", "missed": "run.missed"}.get(status, "run.finished")
        _audit_run_without_process(self.settings, event, record, reason if event != "run.finished" else None)
        return record

    def _notify(self, schedule: Schedule, record: RunRecord) -> None:
        if schedule.notify:
            items = self.store.list_items(record.run_id)
            notify_run(record, items, schedule.notify, self.settings, schedule_id=schedule.id)
