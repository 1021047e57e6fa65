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

The package, one concern a module:

* :mod:`shared.scheduler.daemon`: the daemon process (:class:`Daemon`, :func:`run_daemon`): its
  APScheduler, start, lead or standby, control loop and stop;
* :mod:`shared.scheduler.sync`: the job store kept in step with the schedule files;
* :mod:`shared.scheduler.fires`: each fire claimed in the fire ledger, missed, skipped or taken over;
* :mod:`shared.scheduler.runs`: a fire's run started, kept from overlapping, retried, watched;
* :mod:`shared.scheduler.recovery`: what a crashed daemon left running, closed, retried or adopted;
* :mod:`shared.scheduler.processes`: the ``kansli run`` command line and killing a run's process tree;
* :mod:`shared.scheduler.jobs`: the job functions the job store refers to, and their executor;
* :mod:`shared.scheduler.status`: the daemon as the CLI sees it (lease, heartbeat, next runs);
* :mod:`shared.scheduler.actions`: operator actions and daemon events, recorded and audited.

Everything the rest of Kansli imports from ``shared.scheduler`` is re-exported here.
"""

from __future__ import annotations

from shared.scheduler.actions import AUDIT_EVENTS, record_action
from shared.scheduler.daemon import (
    CONTROL_INTERVAL,
    HEARTBEAT_INTERVAL,
    STANDBYS_KEPT,
    TAKEOVER_SCAN_INTERVAL,
    Daemon,
    DaemonOptions,
    run_daemon,
)
from shared.scheduler.fires import FIRES_KEPT
from shared.scheduler.jobs import (
    PlannedTimeExecutor,
    control_tick,
    fire_requested,
    fire_retry,
    fire_schedule,
    fire_taken_over,
)
from shared.scheduler.processes import (
    STDERR_TAIL,
    ChildRun,
    kansli_run_command,
    kill_process_tree,
    run_command,
)
from shared.scheduler.runs import RETRY_STATUSES
from shared.scheduler.status import (
    HEARTBEAT_STALE,
    JOBS_TABLE,
    LEASE_NAME,
    DaemonStatus,
    daemon_status,
    next_run_times,
    wait_for,
)
from shared.scheduler.sync import SyncChanges

__all__ = [
    "AUDIT_EVENTS",
    "CONTROL_INTERVAL",
    "FIRES_KEPT",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_STALE",
    "JOBS_TABLE",
    "LEASE_NAME",
    "RETRY_STATUSES",
    "STANDBYS_KEPT",
    "STDERR_TAIL",
    "TAKEOVER_SCAN_INTERVAL",
    "ChildRun",
    "Daemon",
    "DaemonOptions",
    "DaemonStatus",
    "PlannedTimeExecutor",
    "SyncChanges",
    "control_tick",
    "daemon_status",
    "fire_requested",
    "fire_retry",
    "fire_schedule",
    "fire_taken_over",
    "kansli_run_command",
    "kill_process_tree",
    "next_run_times",
    "record_action",
    "run_command",
    "run_daemon",
    "wait_for",
]
