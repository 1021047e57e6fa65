"""Runs as jobs on PostgreSQL, done by ``kansli worker`` on any host (``KANSLI_EXECUTION=procrastinate``).

The engine is `procrastinate <https://procrastinate.readthedocs.io>`_: a run is one job of the task
``kansli.run`` on the robot's procrastinate queue (``kansli.<robot>``), so a worker serves a robot by
listening to its queue. What a home-made queue would get wrong comes from it:

- **No overlap.** A job carries the lock ``robot:<name>``: no two jobs of one robot run at once, on
  any host (a robot declared ``parallel=True`` has none; its runs share its work queue's items).
- **No pile-up.** A schedule's job carries the queueing lock ``schedule:<id>``: while one waits, the
  next fire adds no second copy.
- **Recovery.** Workers heartbeat; a job whose worker stopped heartbeating (SIGKILL, power off) is
  given to another worker (:mod:`shared.worker`), whose run reconciles the dead run's in-flight items.

The run itself is the same as in local mode: :class:`shared.runner.Runner` in a ``kansli run``
subprocess of the worker (run record, lock, logs, audit), killed with its process tree at its timeout.
A run is recorded as ``queued`` when its job is added, so ``kansli runs`` shows it before a worker
takes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from loguru import logger

from shared.errors import ConfigError
from shared.store import RunRecord, Store, cluster_runs, open_store, utcnow

if TYPE_CHECKING:
    import procrastinate

    from shared.settings import Settings

TASK_NAME = "kansli.run"
QUEUE_PREFIX = "kansli."
#: procrastinate's schema is applied under this advisory lock (several workers start at once).
_SCHEMA_LOCK = 0x4B414E53


def robot_queue(robot: str) -> str:
    """The procrastinate queue of a robot's runs."""
    return f"{QUEUE_PREFIX}{robot}"


def robot_lock(robot: str) -> str:
    """The procrastinate lock that keeps a robot's runs from overlapping on any host."""
    return f"robot:{robot}"


def require_cluster(settings: Settings) -> None:
    """:class:`ConfigError` unless runs go through procrastinate on PostgreSQL."""
    if settings.execution != "procrastinate":
        raise ConfigError("this needs KANSLI_EXECUTION=procrastinate (and KANSLI_DATABASE_URL on "
                          "PostgreSQL); it is 'local'")


def conninfo(database_url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ConfigError("KANSLI_EXECUTION=procrastinate needs KANSLI_DATABASE_URL on PostgreSQL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def make_app(settings: Settings, *, max_connections: int = 4) -> procrastinate.App:
    """The procrastinate app on the settings' database, with the ``kansli.run`` task."""
    import procrastinate

    from shared.worker import run_job

    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo(settings.database_url or ""), min_size=1, max_size=max_connections,
        kwargs={"application_name": f"kansli {settings.host}"})
    app = procrastinate.App(connector=connector)
    app.task(name=TASK_NAME, pass_context=True)(run_job)
    return app


def ensure_schema(settings: Settings) -> None:
    """Apply procrastinate's schema once (idempotent, safe when several hosts start together)."""
    import psycopg

    with psycopg.connect(conninfo(settings.database_url or ""), autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            found = connection.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if found is None or found[0] is None:
                from procrastinate.schema import SchemaManager

                connection.execute(SchemaManager.get_schema().encode())
                logger.info("procrastinate schema applied to the database")
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


@dataclass
class RunJob:
    """What a run job carries: enough for any worker to start the run."""

    robot: str
    params: dict[str, Any]
    trigger: str
    run_id: str
    timeout: float | None = None
    rerun_all: bool = False
    retries: int = 0
    retry_backoff: float = 60.0
    attempt: int = 0
    #: Who gets a mail when the run ends badly (a schedule's ``notify``), sent by the worker.
    notify: list[str] = field(default_factory=list)

    def kwargs(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextmanager
def opened_app(settings: Settings) -> Iterator[procrastinate.App]:
    """The app, opened for deferring jobs from synchronous code (CLI, scheduler)."""
    ensure_schema(settings)
    app = make_app(settings, max_connections=2)
    with app.open():
        yield app


def enqueue_run(
    settings: Settings,
    robot: str,
    params: Mapping[str, Any] | None = None,
    *,
    trigger: str = "cli",
    queueing_lock: str | None = None,
    schedule_timeout: float | None = None,
    retries: int = 0,
    retry_backoff: float = 60.0,
    rerun_all: bool = False,
    run_id: str | None = None,
    notify: Sequence[str] = (),
    app: procrastinate.App | None = None,
    store: Store | None = None,
) -> str | None:
    """Add a run of ``robot`` as a job; return its run id, or None when a job with ``queueing_lock``
    is already waiting (the run is then recorded as ``skipped``).

    ``schedule_timeout`` (seconds) kills the run's process tree; ``retries`` runs it again after a
    ``failed`` or ``interrupted`` end, ``retry_backoff`` doubling; ``notify`` gets a mail when it ends
    badly (as a schedule's runs in local mode).

    Parameters are validated here, so a bad one fails the caller (exit 2) and never reaches a worker.
    """
    from shared.registry import get_robot
    from shared.runner import _public_params, current_actor, new_run_id

    require_cluster(settings)
    spec = get_robot(robot, settings.robots_package)
    validated = spec.validate(params or {})
    store = store or open_store(settings.effective_database_url)
    _refuse_secrets(spec.name, validated)
    given = validated.model_dump(mode="json", exclude_unset=True)  # defaults stay the robot's
    job = RunJob(robot=spec.name, params=given, trigger=trigger, run_id=run_id or new_run_id(),
                 timeout=schedule_timeout, rerun_all=rerun_all, retries=retries, retry_backoff=retry_backoff,
                 notify=list(notify))
    record = RunRecord(run_id=job.run_id, robot=spec.name, params=_public_params(validated),
                       trigger=trigger, actor=current_actor(), status="queued", started_at=utcnow())
    store.create_run(record)
    mark_queued(store, job.run_id, robot_queue(spec.name))
    lock = None if spec.parallel else robot_lock(spec.name)
    if app is not None:
        return _defer(app, job, lock, queueing_lock, store)
    with opened_app(settings) as opened:
        return _defer(opened, job, lock, queueing_lock, store)


def _refuse_secrets(robot: str, params: Any) -> None:
    """A secret parameter would reach the job's row masked (a wrong value, silently): refused."""
    from pydantic import SecretStr

    from shared.errors import ParameterError

    for name in type(params).model_fields:
        if isinstance(getattr(params, name), SecretStr):
            raise ParameterError(f"robot {robot}: parameter '{name}' is a secret and is not put in a "
                                 "queued job; give it to the workers in their settings instead")


def _job_options(job: RunJob, parallel: bool, queueing_lock: str | None, schedule_in: float | None
                 ) -> dict[str, Any]:
    """Where and how ``job`` waits: its robot's queue, the robot's lock unless ``parallel``."""
    options: dict[str, Any] = {"queue": robot_queue(job.robot),
                               "lock": None if parallel else robot_lock(job.robot),
                               "queueing_lock": queueing_lock}
    if schedule_in:
        options["schedule_in"] = {"seconds": schedule_in}
    return options


def defer_job(
    app: procrastinate.App, job: RunJob, *, parallel: bool, queueing_lock: str | None = None,
    schedule_in: float | None = None,
) -> int:
    """Defer ``job`` on its robot's queue (with the robot's lock unless ``parallel``); its job id."""
    options = _job_options(job, parallel, queueing_lock, schedule_in)
    return app.configure_task(TASK_NAME, **options).defer(**job.kwargs())


async def defer_job_async(
    app: procrastinate.App, job: RunJob, *, parallel: bool, schedule_in: float | None = None,
) -> int:
    """:func:`defer_job` from a worker's event loop."""
    options = _job_options(job, parallel, None, schedule_in)
    return await app.configure_task(TASK_NAME, **options).defer_async(**job.kwargs())


def _defer(app: procrastinate.App, job: RunJob, lock: str | None, queueing_lock: str | None,
           store: Store) -> str | None:
    import procrastinate.exceptions

    try:
        job_id = defer_job(app, job, parallel=lock is None, queueing_lock=queueing_lock)
    except procrastinate.exceptions.AlreadyEnqueued:
        reason = (f"a run of {job.robot} ({queueing_lock}) is already waiting for a worker; "
                  "this one was not queued")
        record = store.get_run(job.run_id)
        if record is not None:
            record.status, record.finished_at, record.error = "skipped", utcnow(), reason
            store.finish_run(record)
        logger.warning(reason)
        return None
    with store.engine.begin() as connection:
        connection.execute(cluster_runs.update().where(cluster_runs.c.run_id == job.run_id)
                           .values(job_id=job_id))
    logger.info("run {} of {} queued as job {} ({})", job.run_id, job.robot, job_id, job.trigger)
    return job.run_id


def mark_queued(store: Store, run_id: str, queue: str) -> None:
    """The run's row among the cluster's runs: queued on ``queue``, no worker yet."""
    with store.engine.begin() as connection:
        connection.execute(store.insert(cluster_runs).values(run_id=run_id, queue=queue, queued_at=utcnow())
                           .on_conflict_do_nothing(index_elements=["run_id"]))


def params_json(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), ensure_ascii=False, sort_keys=True, default=str)


def waiting_jobs(store: Store) -> list[dict[str, Any]]:
    """Run jobs waiting (``todo``) with, for each, whether a live worker serves its robot."""
    from shared.worker import live_workers

    with store.engine.connect() as connection:
        exists = connection.execute(sa.text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        if exists is None:
            return []
        rows = connection.execute(sa.text(
            "SELECT id, queue_name, args, scheduled_at FROM procrastinate_jobs "
            "WHERE status = 'todo' AND task_name = :task ORDER BY id"), {"task": TASK_NAME}).all()
    served = {robot for worker in live_workers(store) for robot in worker.robots}
    waiting = []
    for job_id, queue, args, scheduled_at in rows:
        robot = queue.removeprefix(QUEUE_PREFIX)
        waiting.append({"job_id": job_id, "robot": robot, "run_id": (args or {}).get("run_id"),
                        "trigger": (args or {}).get("trigger"), "served": robot in served,
                        "scheduled_at": scheduled_at.isoformat() if scheduled_at else None})
    return waiting
