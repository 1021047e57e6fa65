"""shared.scheduler.jobs, through a real daemon: jobs an older version stored, read back and given the
new triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.shared.scheduler.conftest import Daemons, wait_until

pytestmark = pytest.mark.slow


def test_jobs_stored_by_an_older_version_get_the_new_triggers_and_keep_their_next_run(
    daemons: Daemons,
) -> None:
    """A job store written with APScheduler's own CronTrigger and a wall-clock IntervalTrigger."""
    from zoneinfo import ZoneInfo

    from apscheduler.job import Job
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from shared.registry import discover
    from shared.scheduler import JOBS_TABLE, fire_schedule
    from shared.schedules import WallClockCronTrigger, load_schedules
    from shared.store import save_schedule_states

    daemons.write('[[schedule]]\nid = "daily"\nrobot = "ticker"\ncron = "30 2 * * *"\n\n'
                  '[[schedule]]\nid = "often"\nrobot = "ticker"\nevery = "1h"\nstart = "2026-01-01T00:00"\n')
    zone, planned = ZoneInfo("Europe/Stockholm"), datetime.now(UTC) + timedelta(hours=5)
    old = {"daily": CronTrigger.from_crontab("30 2 * * *", timezone=zone),
           "often": IntervalTrigger(hours=1, start_date=datetime(2026, 1, 1, tzinfo=zone), timezone=zone)}
    scheduler = BlockingScheduler(timezone=UTC)
    jobstore = SQLAlchemyJobStore(engine=daemons.store.engine, tablename=JOBS_TABLE)
    jobstore.start(scheduler, "default")
    for job_id, trigger in old.items():
        jobstore.add_job(Job(scheduler, id=job_id, func=fire_schedule, args=[job_id], kwargs={},
                             trigger=trigger, executor="default", name=job_id, misfire_grace_time=3600,
                             coalesce=True, max_instances=1, next_run_time=planned))
    schedules = load_schedules(daemons.folder, discover("tests.sample_robots")).by_id()
    save_schedule_states(daemons.store, [(s.id, s.robot, s.fingerprint()) for s in schedules.values()])
    daemon = daemons.start()
    wait_until(lambda: "scheduler started" in daemons.log(), what="the start")
    assert daemons.stop(daemon) == 0
    daily, often = jobstore.lookup_job("daily"), jobstore.lookup_job("often")
    assert isinstance(daily.trigger, WallClockCronTrigger) and daily.next_run_time == planned
    assert isinstance(often.trigger, IntervalTrigger) and often.trigger.timezone == UTC
    assert often.next_run_time == planned
