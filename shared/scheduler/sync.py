"""The job store kept in step with the schedule files: jobs added, rescheduled, removed, paused.

Jobs are synced from the files at start (and at the start of each lead) and on SIGHUP. A schedule's
fingerprint tells a changed schedule from an unchanged one, whose job keeps its next run time (fires
missed while no daemon ran still count). Paused states live in ``kansli_schedule_states``, so a pause
survives a restart. A day's run shifted out of a daylight-saving gap is never run twice, nor made up
when its schedule is resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.blocking import BlockingScheduler
from loguru import logger

from shared.errors import KansliError
from shared.leader import fired
from shared.scheduler.actions import record_action
from shared.scheduler.jobs import FIRE_SCHEDULE_REF, _stale_trigger
from shared.schedules import Schedule, WallClockCronTrigger
from shared.settings import Settings
from shared.store import Store, delete_schedule_states, load_schedule_states, save_schedule_states


@dataclass
class SyncChanges:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {name: value for name, value in self.__dict__.items() if value}


class ScheduleSync:
    """The daemon's sync of its job store: a part of :class:`~shared.scheduler.daemon.Daemon`, whose
    ``__init__`` sets these attributes."""

    settings: Settings
    store: Store
    schedules: dict[str, Schedule]
    scheduler: BlockingScheduler

    def sync(self, schedules: dict[str, Schedule]) -> SyncChanges:
        """Make the job store match ``schedules``: add, reschedule, remove; apply paused states."""
        self.schedules = schedules
        states = load_schedule_states(self.store)
        jobs = {job.id: job for job in self.scheduler.get_jobs(jobstore="default")}
        changes = SyncChanges()
        wanted = {key: value for key, value in schedules.items() if value.enabled}
        for schedule in wanted.values():
            state = states.get(schedule.id)
            job = jobs.get(schedule.id)
            job = self._sync_job(schedule, job, state.fingerprint if state else None, changes)
            if job is not None:
                self._apply_pause(job, bool(state and state.paused), changes)
        for job_id in set(jobs) - set(wanted):
            self.scheduler.remove_job(job_id, jobstore="default")
            changes.removed.append(job_id)
        save_schedule_states(self.store, [(s.id, s.robot, s.fingerprint()) for s in schedules.values()])
        delete_schedule_states(self.store, [key for key in states if key not in schedules])
        if changes.as_dict():
            record_action(self.store, "daemon.sync", details=changes.as_dict())
            logger.info("synced schedules: {}", {k: len(v) for k, v in changes.as_dict().items()})
        return changes

    def _sync_job(
        self, schedule: Schedule, job: Job | None, fingerprint: str | None, changes: SyncChanges
    ) -> Job | None:
        """Add or reschedule the job of ``schedule``; None when there is none to have.

        A one-off (``at``) schedule fires once: when its job is gone and it was synced before, it
        ran or was recorded missed. New or changed, a past ``at`` is added and the misfire grace
        decides (run late, or record ``missed``).
        """
        unchanged = fingerprint == schedule.fingerprint()
        if job is not None and unchanged:
            if _stale_trigger(job.trigger, trigger := schedule.trigger()):
                # a job stored by an older Kansli (wall-clock intervals, APScheduler's CronTrigger):
                # new trigger, same next run time, so fires missed while the daemon was down still count
                return self.scheduler.modify_job(schedule.id, "default", trigger=trigger)
            return job
        if job is None and unchanged and schedule.is_past():
            return None
        grace = int(max(1, schedule.misfire_grace))
        if job is None:
            changes.added.append(schedule.id)
            job = self.scheduler.add_job(
                FIRE_SCHEDULE_REF, schedule.trigger(), args=[schedule.id], id=schedule.id,
                name=schedule.id, jobstore="default", executor="default",
                misfire_grace_time=grace, replace_existing=True,
            )
        else:
            changes.changed.append(schedule.id)
            self.scheduler.modify_job(schedule.id, "default", misfire_grace_time=grace)
            job = self.scheduler.reschedule_job(schedule.id, "default", trigger=schedule.trigger())
        return self._not_twice(schedule, job) if schedule.cron is not None else job

    def _not_twice(self, schedule: Schedule, job: Job) -> Job:
        """A first fire in the past (a day's run shifted out of a daylight-saving gap) that this
        schedule already had, before it was changed or the daemon restarted: go on to the next."""
        planned = job.next_run_time
        now = datetime.now(UTC)
        if planned is None or planned >= now or not self._fired_at(schedule.id, planned):
            return job
        following = job.trigger.get_next_fire_time(planned, now)
        logger.info("schedule {}: its run planned for {} has run already; next {}", schedule.id,
                    planned.isoformat(), following.isoformat() if following else "none")
        if following is None:
            self.scheduler.remove_job(job.id, "default")
            return job
        return self.scheduler.modify_job(job.id, "default", next_run_time=following)

    def _fired_at(self, schedule_id: str, planned: datetime) -> bool:
        """Whether a leader fired ``schedule_id`` planned at ``planned``: the fire ledger, or (fires
        before it) a ``run.scheduled`` in the audit trail."""
        from shared.audit import AuditLog

        if fired(self.store, schedule_id, planned):
            return True
        try:
            events = AuditLog.from_settings(self.settings).search(
                since=(planned - timedelta(days=1)).date(), event="run.scheduled")
            return any(event["data"].get("schedule") == schedule_id
                       and datetime.fromisoformat(event["data"]["planned"]) == planned for event in events)
        except (KansliError, KeyError, ValueError, TypeError):
            return False

    def _apply_pause(self, job: Job, paused: bool, changes: SyncChanges) -> None:
        if paused and job.next_run_time is not None:
            self.scheduler.pause_job(job.id, "default")
            changes.paused.append(job.id)
        elif not paused and job.next_run_time is None:
            try:
                resumed = self.scheduler.resume_job(job.id, "default")
            except JobLookupError:
                resumed = None  # a one-off (at) schedule whose time has passed ends on resume
            if resumed is not None and isinstance(resumed.trigger, WallClockCronTrigger):
                self._not_made_up(resumed)
            changes.resumed.append(job.id)

    def _not_made_up(self, job: Job) -> None:
        """A resumed cron job's first fire in the past (a day's run shifted out of a daylight-saving
        gap, planned while it was paused): not made up."""
        now = datetime.now(UTC)
        if job.next_run_time is None or job.next_run_time >= now:
            return
        following = job.trigger.get_next_fire_time(job.next_run_time, now)
        if following is None:
            self.scheduler.remove_job(job.id, "default")
        else:
            self.scheduler.modify_job(job.id, "default", next_run_time=following)

    def _resync_pause(self, schedule_id: str) -> None:
        state = load_schedule_states(self.store).get(schedule_id)
        job = self.scheduler.get_job(schedule_id, "default")
        if job is not None:
            changes = SyncChanges()
            self._apply_pause(job, bool(state and state.paused), changes)
            logger.info("schedule {}: {}", schedule_id, "paused" if changes.paused else "resumed")
