"""The scheduler daemon process: its APScheduler, its start, lead or standby, control loop and stop.

* APScheduler 3.11 ``BlockingScheduler`` with a SQLAlchemy job store (table ``kansli_scheduler_jobs``)
  on the Kansli database for the schedules' jobs (:mod:`shared.scheduler.jobs`), synced from the
  files at start and on SIGHUP (:mod:`shared.scheduler.sync`), and an in-memory store for the
  daemon's own jobs.
* On SQLite the daemon's lease in ``kansli_meta`` keeps a second daemon on the same database from
  starting; on PostgreSQL several daemons (on several hosts) may run: one leads, through an advisory
  lock on a connection of its own, the others stand by and take over when the leader's connection
  dies (:mod:`shared.leader`). A lead starts with a recovery (:mod:`shared.scheduler.recovery`).
* Operator requests (trigger, pause, resume) arrive through ``kansli_schedule_requests``, polled
  every half second, with the heartbeat.
* SIGTERM/SIGINT: no new runs, wait ``stop_grace`` for running ones, then stop them (recorded
  ``cancelled``), exit 0. SIGHUP: re-read the schedule files.

:class:`Daemon` is made of its parts: :class:`~shared.scheduler.fires.FireClaims`,
:class:`~shared.scheduler.runs.RunSupervision`, :class:`~shared.scheduler.recovery.Recovery` and
:class:`~shared.scheduler.sync.ScheduleSync`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC
from types import FrameType
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from loguru import logger

from shared.errors import AlreadyRunningError, ConfigError
from shared.leader import (
    DATABASE_ERRORS,
    FireLedger,
    Leadership,
    forget_stale_standbys,
    forget_standby,
    short_reason,
    standby_name,
)
from shared.redaction import redact
from shared.registry import discover
from shared.runner import current_actor, new_run_id
from shared.scheduler import jobs
from shared.scheduler.actions import _append_audit, record_action
from shared.scheduler.jobs import PlannedTimeExecutor, control_tick, fire_requested
from shared.scheduler.processes import ChildRun
from shared.scheduler.recovery import Recovery
from shared.scheduler.status import JOBS_TABLE, LEASE_NAME, _holder_alive, daemon_status
from shared.scheduler.sync import ScheduleSync
from shared.schedules import LoadedSchedules, Schedule, format_duration, load_schedules, require_valid
from shared.settings import Settings
from shared.store import (
    Store,
    claim_meta_lease,
    finish_schedule_request,
    pending_schedule_requests,
    release_meta_lease,
    renew_meta_lease,
    utcnow,
)

HEARTBEAT_INTERVAL = 1.0
CONTROL_INTERVAL = 0.5
STANDBYS_KEPT = 86400.0
TAKEOVER_SCAN_INTERVAL = 5.0


@dataclass
class DaemonOptions:
    keep_going: bool = False
    stop_grace: float = 60.0
    kill_grace: float = 5.0
    max_workers: int = 20
    log_level: str = "INFO"


class Daemon(Recovery, ScheduleSync):
    """One scheduler daemon process."""

    def __init__(self, settings: Settings, store: Store, options: DaemonOptions | None = None) -> None:
        self.settings = settings
        self.store = store
        self.options = options or DaemonOptions()
        self.schedules: dict[str, Schedule] = {}
        self.started_at = utcnow()
        self.owner = self._owner()
        self.executor = PlannedTimeExecutor(self.options.max_workers, self._claim_fire)
        self.scheduler = self._build_scheduler()
        # several daemons on PostgreSQL: one leads, the others stand by; SQLite: one daemon only
        self.leadership = Leadership(store.url, settings.host, settings.cluster.leader_poll_s) \
            if store.dialect == "postgresql" else None
        self.ledger: FireLedger | None = None
        self._stopper: threading.Thread | None = None
        self.children: dict[str, ChildRun] = {}
        self._children_lock = threading.Lock()
        self._schedule_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._stop_event = threading.Event()
        self._ready = threading.Event()  # the scheduler runs, or will never run: a stop may proceed
        self._stop_deadline: float | None = None
        self._sync_requested = False
        self._last_heartbeat = 0.0
        self._app: Any = None  # procrastinate mode: the app fires defer jobs through (_job_app)
        self._app_lock = threading.Lock()
        self._last_takeover_scan = 0.0

    # -- setup ------------------------------------------------------------------------------------

    def _owner(self, leading_since: str | None = None) -> str:
        """The lease row's value: who runs (and, with several daemons, since when it leads)."""
        owner = {"pid": os.getpid(), "host": self.settings.host, "machine": socket.gethostname(),
                 "started_at": self.started_at}
        if leading_since is not None:
            owner["leading_since"] = leading_since
        return json.dumps(owner)

    def _build_scheduler(self) -> BlockingScheduler:
        scheduler = BlockingScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.store.engine, tablename=JOBS_TABLE),
                       "control": MemoryJobStore()},
            executors={"default": self.executor, "control": ThreadPoolExecutor(2)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        scheduler.add_listener(self._on_started, EVENT_SCHEDULER_STARTED)
        scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        scheduler.add_listener(self._on_max_instances, EVENT_JOB_MAX_INSTANCES)
        scheduler.add_listener(self._on_error, EVENT_JOB_ERROR)
        return scheduler

    def load(self, *, initial: bool) -> LoadedSchedules | None:
        """Read the schedule files; broken files refuse the start (or a SIGHUP) unless keep-going."""
        loaded = load_schedules(self.settings.schedules_dir, discover(self.settings.robots_package))
        counts: defaultdict[str, int] = defaultdict(int)
        for schedule in loaded.schedules:
            counts[schedule.source] += 1
        logger.info("schedule files in {}: {}", self.settings.schedules_dir, ", ".join(
            f"{path} ({counts[str(path)]} schedule(s))" for path in loaded.files) or "none")
        for problem in loaded.problems:
            logger.error("{}", problem)
        if loaded.problems and not self.options.keep_going:
            if initial:
                require_valid(loaded)
            logger.error("schedule files not applied: fix them (kansli schedules validate)")
            return None
        return loaded

    def claim(self) -> None:
        """Take the daemon lease of the database, or refuse (another daemon is alive)."""
        holder = claim_meta_lease(self.store, LEASE_NAME, self.owner, _holder_alive)
        if holder is not None:
            status = daemon_status(self.store)
            where = status.describe() if status else "another daemon"
            raise AlreadyRunningError(
                f"a scheduler daemon already runs on this database ({where}); not starting a second"
            )

    def run(self) -> int:
        """Validate, claim (or stand by until leading), recover, then schedule until SIGTERM. Returns
        the exit code."""
        self._install_signals()
        try:
            loaded = self.load(initial=True)
            assert loaded is not None
            if self.leadership is None:
                self.claim()
        except BaseException:
            self._ready.set()
            raise
        jobs._active_daemon = self
        try:
            self.schedules = loaded.by_id()
            if self.leadership is None:
                self._run_alone(loaded)
            else:
                self._lead_when_possible(loaded)
            if self._stopper is not None:
                self._stopper.join()
            record_action(self.store, "daemon.stop", details={"pid": os.getpid()})
        finally:
            self._ready.set()
            jobs._active_daemon = None
            self._let_go()
            self._close_job_app()
        logger.info("scheduler stopped")
        return 0

    def _run_alone(self, loaded: LoadedSchedules) -> None:
        """The one daemon of a SQLite database."""
        self.ledger = FireLedger(self.store, self.settings.host, f"{self.settings.host}:{new_run_id()}")
        reaped, adopted = self._recover()
        record_action(self.store, "daemon.start", details={
            "pid": os.getpid(), "schedules": len(self.schedules), "reaped": reaped,
            "adopted": adopted, "problems": [str(problem) for problem in loaded.problems]})
        if self._stop_event.is_set():  # stopped while starting up
            self._ready.set()
        else:
            self.scheduler.start()  # blocks until a stop

    def _let_go(self) -> None:
        if self.leadership is None:
            release_meta_lease(self.store, LEASE_NAME, self.owner)
            return
        self.leadership.release()
        try:
            release_meta_lease(self.store, LEASE_NAME, self.owner)
            forget_standby(self.store, self.settings.host, os.getpid())
        except DATABASE_ERRORS as error:
            logger.warning("could not clear this daemon's rows in the database: {}", short_reason(error))

    # -- several daemons: lead or stand by ----------------------------------------------------------

    def _lead_when_possible(self, loaded: LoadedSchedules) -> None:
        """Stand by until this daemon leads; lead until stopped or the lead is lost; stand by again."""
        assert self.leadership is not None
        record_action(self.store, "daemon.start", details={
            "pid": os.getpid(), "host": self.settings.host, "schedules": len(self.schedules),
            "role": "standby", "problems": [str(problem) for problem in loaded.problems]})
        terms = 0
        while not self._stop_event.is_set():
            self._ready.set()  # standing by: a stop may proceed at once
            if not self.leadership.acquire(self._stop_event, self._standing_by):
                break
            self._ready.clear()
            try:
                if not self._stop_event.is_set():
                    self._lead(reload=terms > 0 or self.leadership.waited or self._sync_requested)
            except DATABASE_ERRORS as error:
                logger.error("lost the database while leading ({}); standing by again", short_reason(error))
            finally:
                self.leadership.release()
                self._stop_leading()
                self._ready.set()
            terms += 1
            if not self._stop_event.is_set():
                logger.warning("not leading any more: no fires from this daemon; standing by again")
                self.scheduler = self._build_scheduler()

    def _standing_by(self) -> str | None:
        """The standby's heartbeat (its row for ``kansli schedules``); the leader, as the log names it."""
        self.store.set_meta(standby_name(self.settings.host, os.getpid()), json.dumps(
            {"host": self.settings.host, "pid": os.getpid(), "started_at": self.started_at}))
        status = daemon_status(self.store)
        if status is None or not status.alive:
            return None
        return f"{status.host} (pid {status.pid})"

    def _lead(self, reload: bool) -> None:
        """One lead of this daemon: take the lease row, recover, schedule until stopped or lost."""
        assert self.leadership is not None and self.leadership.term is not None
        previous = daemon_status(self.store)
        self.owner = self._owner(self.leadership.since)
        self.store.set_meta(LEASE_NAME, self.owner)
        forget_standby(self.store, self.settings.host, os.getpid())
        forget_stale_standbys(self.store, STANDBYS_KEPT)
        self.ledger = FireLedger(self.store, self.settings.host, self.leadership.term)
        self.leadership.watch(self._on_lost)
        if reload:  # the files may have changed while this daemon stood by
            self._sync_requested = False
            if (loaded := self.load(initial=False)) is not None:
                self.schedules = loaded.by_id()
        reaped, adopted = self._recover()
        took_from = f"{previous.host} (pid {previous.pid})" if previous and previous.pid != os.getpid() \
            else None
        record_action(self.store, "daemon.lead", details={
            "pid": os.getpid(), "host": self.settings.host, "since": self.leadership.since,
            "previous": took_from, "reaped": reaped, "adopted": adopted})
        logger.info("leading the schedulers of this database as {} (pid {}){}", self.settings.host,
                    os.getpid(), f", after {took_from}" if took_from else "")
        if not self._stop_event.is_set() and self.leadership.leading:
            self.scheduler.start()  # blocks until a stop or the loss of the lead

    def _on_lost(self, reason: str) -> None:
        """The watchdog found the lead's connection gone: stop firing at once."""
        logger.error("LOST the lead of the schedulers ({}): no new fires from this daemon", reason)
        _append_audit(self.settings, "daemon.lost_lead", actor=current_actor(),
                      data={"host": self.settings.host, "pid": os.getpid(), "reason": reason})
        self._stop_leading()

    def _stop_leading(self) -> None:
        try:
            self.scheduler.shutdown(wait=False)
        except SchedulerNotRunningError:
            pass

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self._sync_requested = True

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_event.is_set():
            return
        self._stop_event.set()
        self._stopper = threading.Thread(target=self._graceful_stop, args=(signal.Signals(signum).name,),
                                         name="kansli-stop", daemon=True)
        self._stopper.start()

    # -- listeners ------------------------------------------------------------------------------

    def _on_started(self, _event: SchedulerEvent) -> None:
        """Runs in the main thread inside ``start()``, before the first jobs are processed."""
        try:
            self.sync(self.schedules)
        except Exception as error:  # noqa: BLE001 - a sync failure must stop the daemon cleanly
            logger.opt(exception=error).error("first sync failed; stopping")
            if not self._stop_event.is_set():
                self._stop_event.set()
                threading.Thread(target=self._graceful_stop, args=("sync failure",)).start()
            self._ready.set()
            return
        self.scheduler.add_job(control_tick, "interval", seconds=CONTROL_INTERVAL, id="kansli-control",
                               jobstore="control", executor="control", misfire_grace_time=None)
        try:
            self._take_over_fires()
        except Exception as error:  # noqa: BLE001 - the schedules go on; the orphans wait for the next lead
            logger.opt(exception=error).error("could not take over the fires of a previous leader")
        logger.info("scheduler started with {} schedule(s) from {}", len(self.schedules),
                    self.settings.schedules_dir)
        self._ready.set()

    def _on_error(self, event: JobExecutionEvent) -> None:
        logger.error("job {} failed in the daemon: {}", event.job_id, redact(str(event.exception)))

    # -- control loop -------------------------------------------------------------------------------

    def control_tick(self) -> None:
        if self._stop_event.is_set():
            return
        if self.leadership is not None and not self.leadership.leading:
            self._stop_leading()  # lost while starting: _on_lost found no scheduler to stop
            return
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_INTERVAL:
            self._last_heartbeat = now
            if not renew_meta_lease(self.store, LEASE_NAME, self.owner):
                logger.error("another daemon took over the lease of this database")
        if self._sync_requested:
            self._sync_requested = False
            self._resync()
        if now - self._last_takeover_scan >= TAKEOVER_SCAN_INTERVAL:
            try:
                self._take_over_fires()
            except DATABASE_ERRORS as error:
                logger.warning("could not look for fires a previous leader left: {}", short_reason(error))
        for request in pending_schedule_requests(self.store):
            self._handle_request(request.request_id, request.schedule_id, request.action)

    def _resync(self) -> None:
        logger.info("SIGHUP: re-reading the schedule files")
        loaded = self.load(initial=False)
        if loaded is not None:
            with self.scheduler._jobstores_lock:  # no job processing while the jobs change
                self.sync(loaded.by_id())

    def _handle_request(self, request_id: int, schedule_id: str, action: str) -> None:
        if action in ("pause", "resume"):
            self._resync_pause(schedule_id)
            finish_schedule_request(self.store, request_id, f"{action}d")
            return
        if action != "trigger" or schedule_id not in self.schedules:
            finish_schedule_request(self.store, request_id,
                                    f"refused: unknown schedule {schedule_id!r} or action {action!r}")
            return
        self.scheduler.add_job(fire_requested, args=[schedule_id, request_id],
                               id=f"request-{request_id}", jobstore="control", executor="default",
                               misfire_grace_time=None)
        finish_schedule_request(self.store, request_id, "accepted")

    # -- stopping -------------------------------------------------------------------------------------

    def _graceful_stop(self, reason: str) -> None:
        grace = self.options.stop_grace
        self._ready.wait(120)  # a signal during start-up: let the start finish, then stop
        logger.info("{}: no new runs; waiting up to {} for {} running run(s)", reason,
                    format_duration(grace), self.running_count())
        try:
            self.scheduler.pause()
        except SchedulerNotRunningError:
            pass
        if self.leadership is not None and self.leadership.leading:
            logger.info("handing the lead over to a standby, if any (the runs of this one go on here)")
            self.leadership.release()
        self._stop_deadline = time.monotonic() + grace
        limit = self._stop_deadline + self.options.kill_grace * 2 + 5
        while self.running_count() and time.monotonic() < limit:
            time.sleep(0.1)
        self.executor.closing = True
        try:
            self.scheduler.shutdown(wait=True)
        except SchedulerNotRunningError:
            self.executor.shutdown(wait=True)  # standing by: the runs of an earlier lead


class _InterceptHandler(logging.Handler):
    """Route APScheduler's standard-library warnings to loguru (and so through redaction)."""

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        cause = f": {type(error).__name__}: {error}" if error is not None else ""
        logger.opt(depth=1).log(record.levelname if record.levelno >= 30 else "DEBUG",
                                "apscheduler: {}{}", record.getMessage(), cause)


def run_daemon(settings: Settings, options: DaemonOptions, store: Store | None = None) -> int:
    """Run the daemon in this process (the ``kansli scheduler`` command). Returns the exit code."""
    from shared.logs import configure_console

    configure_console(options.log_level)
    apscheduler_logger = logging.getLogger("apscheduler")
    apscheduler_logger.handlers[:] = [_InterceptHandler()]
    apscheduler_logger.setLevel(logging.WARNING)
    apscheduler_logger.propagate = False
    if not settings.schedules_dir.is_dir():
        raise ConfigError(f"no schedule folder {settings.schedules_dir} (KANSLI_SCHEDULES_DIR)")
    daemon = Daemon(settings, store or Store(settings.effective_database_url), options)
    return daemon.run()
