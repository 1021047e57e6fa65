"""``kansli worker`` and ``kansli workers``: robot hosts serving run jobs (KANSLI_EXECUTION=procrastinate).

See :mod:`shared.execution` and :mod:`shared.worker`; docs/operations.md, "Several hosts".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from shared.store import RunRecord, Store


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def worker_command(
    robots: Annotated[
        str | None, typer.Option(help="Serve only these robots (comma separated); default: all.")
    ] = None,
    tags: Annotated[
        str | None, typer.Option(help="What this host has (comma separated, e.g. chromium,zone-a): "
                                 "a robot is served only if the host has all its tags.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Runs at a time on this host.")] = 1,
    stop_grace: Annotated[
        float, typer.Option(help="On SIGTERM, seconds to wait for running runs before stopping them.")
    ] = 60.0,
    log_level: Annotated[str, typer.Option(help="The worker's log level.")] = "INFO",
) -> None:
    """Serve run jobs from PostgreSQL on this host until SIGTERM (KANSLI_EXECUTION=procrastinate)."""
    import logging

    from shared.cli import fail, settings
    from shared.errors import KansliError
    from shared.logs import configure_console
    from shared.worker import serve

    configure_console(log_level)
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    try:
        code = serve(settings(), _split(robots) or None, _split(tags), concurrency, stop_grace)
    except KansliError as error:
        fail(str(error), error.exit_code)
    raise typer.Exit(code)


def workers_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    all_workers: Annotated[bool, typer.Option("--all", help="Also stopped and dead workers.")] = False,
) -> None:
    """List the robot hosts' workers: host, robots, tags, current runs, last heartbeat."""
    from rich.table import Table

    from shared.cli import console, emit_json, settings
    from shared.clock import local_time
    from shared.worker import list_workers

    loaded = settings()
    found = list_workers(_store(), loaded.cluster.heartbeat_timeout_s)
    shown = [worker for worker in found if all_workers or worker.alive]
    if as_json:
        emit_json([worker.as_dict() for worker in shown])
        return
    table = Table(title="Workers")
    for column in ("worker", "host", "state", "robots", "tags", "runs", "last heartbeat"):
        table.add_column(column)
    for worker in shown:
        state = "alive" if worker.alive else ("stopped" if worker.stopped_at else "dead")
        table.add_row(worker.worker, worker.host, f"[{'green' if worker.alive else 'red'}]{state}[/]",
                      ", ".join(worker.robots), ", ".join(worker.tags) or "-",
                      f"{len(worker.current_runs)}/{worker.concurrency} " + " ".join(worker.current_runs),
                      local_time(worker.heartbeat_at))
    console().print(table)
    if not shown:
        console(stderr=True).print("no live worker" + ("" if all_workers else " (--all shows the others)"))


def waiting_note(store: Store, records: list[RunRecord]) -> dict[str, str]:
    """For queued runs among ``records``: run id -> why it waits (no live worker serves the robot)."""
    from shared.store import QUEUED

    if not any(record.status == QUEUED for record in records):
        return {}
    from shared.worker import live_workers

    served = {robot for worker in live_workers(store) for robot in worker.robots}
    return {record.run_id: "waiting: no live worker serves " + record.robot
            for record in records if record.status == QUEUED and record.robot not in served}


def run_hosts(store: Store, records: list[RunRecord]) -> dict[str, str]:
    """Run id -> the host (KANSLI_HOST_ID) whose worker took it, for runs queued as jobs."""
    import sqlalchemy as sa

    from shared.store import cluster_runs

    ids = [record.run_id for record in records]
    if not ids:
        return {}
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(cluster_runs.c.run_id, cluster_runs.c.host).where(
            cluster_runs.c.run_id.in_(ids), cluster_runs.c.host.is_not(None))).all()
    return {row.run_id: row.host for row in rows}


def _store() -> Store:
    from shared.cli import fail, settings
    from shared.errors import KansliError
    from shared.store import open_store

    try:
        return open_store(settings().effective_database_url)
    except KansliError as error:
        fail(str(error), error.exit_code)
