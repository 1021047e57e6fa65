"""The scheduler daemon (``kansli scheduler``): runs robots on the schedules of ``schedules/*.toml``.

* APScheduler 3.11 ``BlockingScheduler`` with a SQLAlchemy job store (table ``kansli_scheduler_jobs``)
  on the Kansli database. Job ids are the schedule ids; the job only carries the id and the
  schedule is looked up at fire time. Jobs are synced from the files at start and on SIGHUP.
* Each run is a subprocess ``python -m shared.cli run ROBOT --param k=v ... --trigger
  schedule:<id> --run-id <id>`` in its own session, so a crashing robot never takes the daemon
  down. A timeout kills the run's whole process tree and records ``timeout``.
* ``max_instances=1`` and a per-schedule lock in the daemon, plus the runner's per-robot lock: runs
  never overlap; a refused run is recorded ``skipped``.
* Misfires within the grace are coalesced into one run; a run missed by more is recorded ``missed``.
* SIGTERM/SIGINT: no new runs, wait ``stop_grace`` for running ones, then stop them (recorded
  ``cancelled``), exit 0. SIGHUP: re-read the schedule files.
* A heartbeat lease in ``kansli_meta`` tells the CLI whether a daemon runs. On SQLite it keeps a second
  daemon on the same database from starting; on PostgreSQL several daemons (on several hosts) may
  run: one leads, through an advisory lock on a connection of its own, the others stand by and take
  over when the leader's connection dies (:mod:`shared.leader`).
* Each fire of a time schedule is claimed once per (schedule, planned time) in
  ``kansli_schedule_fires`` before it starts, so no leader fires it twice and a fire a dead leader
  claimed and never started is run by the next one within its misfire grace.
* Operator requests (trigger, pause, resume) arrive through ``kansli_schedule_requests``, polled
  every half second.

Every operator action and daemon event goes through :func:`record_action`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import IO, Any

import psutil
import sqlalchemy as sa
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    JobSubmissionEvent,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from loguru import logger

from shared.clock import local_time
from shared.errors import AlreadyRunningError, ConfigError, KansliError
from shared.leader import (
    DATABASE_ERRORS,
    Fire,
    FireLedger,
    Leadership,
    Orphan,
    close_unqueued,
    fired,
    forget_stale_standbys,
    forget_standby,
    left_a_trace,
    planned_key,
    short_reason,
    standby_name,
)
from shared.notify import notify_run
from shared.queue import WorkQueue
from shared.redaction import redact, redact_value
from shared.registry import discover
from shared.runner import Runner, current_actor, new_run_id
from shared.schedules import (
    LoadedSchedules,
    Schedule,
    WallClockCronTrigger,
    format_duration,
    load_schedules,
    require_valid,
)
from shared.settings import Settings
from shared.store import (
    QUEUED,
    RunRecord,
    Store,
    add_operator_action,
    claim_meta_lease,
    delete_schedule_states,
    finish_schedule_request,
    list_operator_actions,
    load_schedule_states,
    pending_schedule_requests,
    release_meta_lease,
    renew_meta_lease,
    save_schedule_states,
    utcnow,
)

JOBS_TABLE = "kansli_scheduler_jobs"
LEASE_NAME = "scheduler.daemon"
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_STALE = 15.0
CONTROL_INTERVAL = 0.5
RETRY_STATUSES = ("failed", "interrupted")
FIRES_KEPT = timedelta(days=7)
STANDBYS_KEPT = 86400.0
TAKEOVER_SCAN_INTERVAL = 5.0
STDERR_TAIL = 2000

_active_daemon: Daemon | None = None


# -- the one place operator actions and daemon events are recorded ---------------------------------


def record_action(
    store: Store,
    action: str,
    schedule_id: str | None = None,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """Record an operator action or daemon event (who, when, what) in ``kansli_operator_actions``.

    Actions: ``schedule.pause``, ``schedule.resume``, ``schedule.trigger``, ``daemon.start``,
    ``daemon.stop``, ``daemon.sync``, ``schedule.shifted`` (a fire moved out of a daylight-saving
    gap), ``schedule.retry`` (a retry run, with the run it retries and its attempt number). The
    details are redacted before they are stored.
    """
    who = actor or current_actor()
    safe = redact_value(details or {})
    add_operator_action(store, who, action, schedule_id, safe)
    logger.debug("action {} on {} by {}: {}", action, schedule_id or "-", who, safe)
    _audit_action(action, schedule_id, safe, who)


def _audit_run_without_process(settings: Settings, event: str, record: RunRecord, reason: str | None) -> None:
    """A scheduled run that never got a process of its own (skipped, missed, failed to start)."""
    _append_audit(settings, event, run_id=record.run_id, robot=record.robot, actor=record.trigger,
                  data={"trigger": record.trigger, "status": record.status, "reason": reason})


#: Operator actions and daemon events as the audit trail names them.
AUDIT_EVENTS = {
    "schedule.pause": "schedule.paused", "schedule.resume": "schedule.resumed",
    "schedule.trigger": "run.triggered", "daemon.start": "daemon.started",
    "daemon.stop": "daemon.stopped", "daemon.sync": "schedule.synced",
    "schedule.shifted": "run.shifted", "schedule.retry": "run.retry", "daemon.lead": "daemon.leading",
}


def _audit_action(action: str, schedule_id: str | None, details: Any, actor: str) -> None:
    """The same action in the audit trail."""
    from shared.settings import get_settings

    _append_audit(get_settings(), AUDIT_EVENTS.get(action, action), actor=actor,
                  data={"schedule": schedule_id, **(details if isinstance(details, dict) else {})})


def _append_audit(settings: Settings, event: str, **fields: Any) -> None:
    """Append one event to the audit trail; a failure to write it is logged, never fatal here."""
    from shared.audit import AuditLog

    try:
        AuditLog.from_settings(settings).append(event, **fields)
    except KansliError as error:
        logger.error("could not write {} to the audit trail: {}", event, error)


# -- daemon status, as the CLI sees it ---------------------------------------------------------------


@dataclass
class DaemonStatus:
    """The daemon holding the lease of a database, if any."""

    pid: int
    host: str
    started_at: str
    heartbeat_at: str
    alive: bool
    leading_since: str | None = None  # several daemons on PostgreSQL: this one leads since then

    def describe(self, utc: bool = False) -> str:
        from shared.clock import local_time

        state = "running" if self.alive else "not running (stale heartbeat)"
        leads = f", leading since {local_time(self.leading_since, seconds=True, utc=utc)}" \
            if self.leading_since else ""
        return f"{state}: pid {self.pid} on {self.host}, started " \
               f"{local_time(self.started_at, seconds=True, utc=utc)}{leads}, " \
               f"heartbeat {_age(self.heartbeat_at):.0f}s ago"


def _age(stamp: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()


def _holder_alive(value: str, updated_at: str, stale_after: float = HEARTBEAT_STALE) -> bool:
    try:
        owner = json.loads(value)
    except json.JSONDecodeError:
        return False
    if _age(updated_at) > stale_after:
        return False
    if owner.get("machine", owner.get("host")) == socket.gethostname():
        return _pid_alive(int(owner.get("pid", 0)))
    return True


def daemon_status(store: Store) -> DaemonStatus | None:
    """The daemon recorded in the database (alive or stale), or None."""
    row = store.get_meta(LEASE_NAME)
    if row is None:
        return None
    value, updated_at = row
    try:
        owner = json.loads(value)
    except json.JSONDecodeError:
        return None
    return DaemonStatus(pid=int(owner.get("pid", 0)), host=str(owner.get("host", "?")),
                        started_at=str(owner.get("started_at", "")), heartbeat_at=updated_at,
                        alive=_holder_alive(value, updated_at), leading_since=owner.get("leading_since"))


def next_run_times(store: Store) -> dict[str, datetime | None]:
    """Next fire time of each job in the job store (None: paused); empty before the first sync."""
    table = sa.table(JOBS_TABLE, sa.column("id"), sa.column("next_run_time"))
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(sa.select(table.c.id, table.c.next_run_time)).all()
    except sa.exc.SQLAlchemyError:
        return {}
    return {
        row.id: None if row.next_run_time is None else datetime.fromtimestamp(row.next_run_time, UTC)
        for row in rows
    }


# -- job functions (module level: the SQLAlchemy job store pickles references to them) -----------

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


# -- processes ----------------------------------------------------------------------------------------


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _living(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            continue
    return alive


def _signal_all(processes: list[psutil.Process], pgid: int, sig: signal.Signals) -> None:
    for process in processes:
        try:
            process.send_signal(sig)
        except psutil.Error:
            continue
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = _living(processes)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = _living(alive)
    return alive


def kill_process_tree(pid: int, grace: float) -> int:
    """SIGTERM a process, its descendants and its process group; SIGKILL what is left after ``grace``.

    Returns how many processes were found. Zombies count as gone.
    """
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    _signal_all(processes, pid, signal.SIGTERM)
    alive = _wait_gone(processes, grace)
    if alive:
        _signal_all(alive, pid, signal.SIGKILL)
        _wait_gone(alive, grace)
    return len(processes)


def run_command(schedule: Schedule, run_id: str) -> list[str]:
    """The ``kansli run`` command line of one run of ``schedule``."""
    return kansli_run_command(schedule.robot, run_id, f"schedule:{schedule.id}", schedule.params)


def kansli_run_command(
    robot: str, run_id: str, trigger: str, params: Mapping[str, Any], rerun_all: bool = False
) -> list[str]:
    """The ``kansli run`` command line of a run started by a daemon (scheduler or worker)."""
    command = [sys.executable, "-m", "shared.cli", "run", robot, "--json", "--trigger", trigger,
               "--run-id", run_id]
    if rerun_all:
        command.append("--rerun-all")
    for key, value in params.items():
        command += ["--param", f"{key}={_param_text(value)}"]
    return command


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@dataclass
class ChildRun:
    """A run the daemon started (or adopted after a restart) and watches."""

    run_id: str
    schedule: Schedule
    pid: int
    started: float
    process: subprocess.Popen[bytes] | None = None
    stderr: IO[bytes] | None = None

    def exited(self, wait: float) -> bool:
        if self.process is not None:
            try:
                self.process.wait(timeout=wait)
                return True
            except subprocess.TimeoutExpired:
                return False
        time.sleep(wait)
        return not _pid_alive(self.pid)

    def stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - STDERR_TAIL))
        return redact(self.stderr.read().decode("utf-8", "replace")).strip()


# -- the daemon ---------------------------------------------------------------------------------------


@dataclass
class DaemonOptions:
    keep_going: bool = False
    stop_grace: float = 60.0
    kill_grace: float = 5.0
    max_workers: int = 20
    log_level: str = "INFO"


@dataclass
class SyncChanges:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {name: value for name, value in self.__dict__.items() if value}


class Daemon:
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
        global _active_daemon
        self._install_signals()
        try:
            loaded = self.load(initial=True)
            assert loaded is not None
            if self.leadership is None:
                self.claim()
        except BaseException:
            self._ready.set()
            raise
        _active_daemon = self
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
            _active_daemon = None
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
        delay = schedule.retry_backoff * 2 ** (attempt - 1)
        logger.warning("schedule {}: run {} interrupted; retry {}/{} in {}", schedule.id, record.run_id,
                       attempt, schedule.retries, format_duration(delay))
        self.scheduler.add_job(fire_retry, "date", args=[schedule.id, record.run_id, attempt],
                               run_date=datetime.now(UTC) + timedelta(seconds=delay),
                               id=f"retry-{record.run_id}", jobstore="control", executor="default",
                               misfire_grace_time=None, replace_existing=True)

    def _attempt_of(self, schedule_id: str, run_id: str) -> int:
        """Which retry ``run_id`` was (0: the first run), from the ``schedule.retry`` actions."""
        for action in list_operator_actions(self.store, schedule_id, limit=500):
            if action.action == "schedule.retry" and action.details.get("run_id") == run_id:
                return int(action.details.get("attempt", 0))
        return 0

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

    def _on_error(self, event: JobExecutionEvent) -> None:
        logger.error("job {} failed in the daemon: {}", event.job_id, redact(str(event.exception)))

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

    # -- sync -------------------------------------------------------------------------------------

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

    def _resync_pause(self, schedule_id: str) -> None:
        state = load_schedule_states(self.store).get(schedule_id)
        job = self.scheduler.get_job(schedule_id, "default")
        if job is not None:
            changes = SyncChanges()
            self._apply_pause(job, bool(state and state.paused), changes)
            logger.info("schedule {}: {}", schedule_id, "paused" if changes.paused else "resumed")

    # -- runs ---------------------------------------------------------------------------------------

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
            delay = schedule.retry_backoff * 2 ** (attempt - 1)
            logger.warning("schedule {}: run {} {}; retry {}/{} in {}", schedule.id, record.run_id,
                           record.status, attempt, schedule.retries, format_duration(delay))
            if self._stop_event.wait(delay):
                return record
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

    def _advance(self, fire: Fire, state: str) -> None:
        """A started fire's run started (``spawned``), or was queued: no later leader looks at it."""
        assert self.ledger is not None and fire.run_id is not None
        try:
            self.ledger.settle(fire.schedule_id, fire.planned, fire.run_id, state, was="started")
        except DATABASE_ERRORS as error:  # its run record tells the next leader
            logger.warning("schedule {}: run {}: could not note its start: {}", fire.schedule_id,
                           fire.run_id, short_reason(error))

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

    def _notify(self, schedule: Schedule, record: RunRecord) -> None:
        if schedule.notify:
            items = self.store.list_items(record.run_id)
            notify_run(record, items, schedule.notify, self.settings, schedule_id=schedule.id)

    # -- stopping -------------------------------------------------------------------------------------

    def running_count(self) -> int:
        with self._children_lock:
            return len(self.children)

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


def _stale_trigger(stored: Any, wanted: Any) -> bool:
    """True when a stored job's trigger predates the daylight-saving-safe ones of this version."""
    if type(stored) is not type(wanted):
        return True
    return isinstance(stored, IntervalTrigger) and stored.timezone != UTC


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


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (used by the CLI)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
