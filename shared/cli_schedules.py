"""``kansli schedules``: list, validate, pause, resume, trigger and show the history of schedules.

Only ``typer`` is imported at the top: everything else is imported inside the commands, so
``kansli --help`` stays fast. Operator actions are recorded with the actor through
:func:`shared.scheduler.record_action`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from shared.leader import Standby
    from shared.schedules import LoadedSchedules, Schedule
    from shared.settings import Settings
    from shared.store import Store

schedules_app = typer.Typer(
    help="The schedules of the scheduler daemon: list (default), validate, pause, resume, trigger, history.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)

TRIGGER_WAIT = 10.0
ERROR_WIDTH = 160  # history's error column: cut at a word beyond this, the table wraps the rest
UTC_HELP = "Show times in UTC instead of the local time of the settings' time zone."


def _settings() -> Settings:
    from shared.cli import settings

    return settings()


def _load(settings: Settings) -> LoadedSchedules:
    from shared.registry import discover
    from shared.schedules import load_schedules

    return load_schedules(settings.schedules_dir, discover(settings.robots_package))


def _store(settings: Settings) -> Store:
    from shared.store import open_store

    return open_store(settings.effective_database_url)


def _guard(function: Any) -> Any:
    """Turn a KansliError into one redacted line on stderr and its exit code."""
    from shared.cli import fail
    from shared.errors import KansliError

    try:
        return function()
    except KansliError as error:
        fail(str(error), error.exit_code)


def _schedule(loaded: LoadedSchedules, schedule_id: str) -> Schedule:
    from shared.cli import fail

    schedule = loaded.by_id().get(schedule_id)
    if schedule is None:
        known = ", ".join(sorted(loaded.by_id())) or "none"
        fail(f"no schedule with id {schedule_id!r} (known schedules: {known})", 2)
    return schedule


def _when(stamp: str | None, utc: bool = False) -> str:
    """A stored time as people read it: ``2026-12-02 06:30:00 CET`` (settings' zone) or in UTC."""
    from shared.clock import local_time

    return local_time(stamp, seconds=True, utc=utc) or "-"


def _iso(stamp: str | None) -> str | None:
    from shared.clock import iso_with_offset

    return iso_with_offset(stamp)


def clip_at_word(text: str, width: int) -> str:
    """``text`` cut at the last word boundary before ``width``, with an ellipsis (whole if it fits)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[:width].rsplit(" ", 1)[0] if " " in text[:width] else text[:width]
    return cut.rstrip(" ,;:") + " …"


def details_text(details: Any) -> str:
    """An action's details as ``key: value; key: value`` (lists comma-separated, nested as JSON)."""
    import json

    if not isinstance(details, dict):
        return str(details)
    parts = []
    for key, value in details.items():
        if isinstance(value, list):
            shown = ", ".join(str(entry) for entry in value) or "-"
        elif isinstance(value, dict):
            shown = json.dumps(value, ensure_ascii=False)
        else:
            shown = "-" if value is None else str(value)
        parts.append(f"{key}: {shown}")
    return "; ".join(parts)


# -- list -----------------------------------------------------------------------------------------


@schedules_app.callback()
def list_schedules(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    utc: Annotated[bool, typer.Option("--utc", help=UTC_HELP)] = False,
) -> None:
    """List the schedules: trigger, next and last run (local time), paused, and whether the daemon runs."""
    if context.invoked_subcommand is not None:
        return
    settings = _settings()
    loaded = _load(settings)
    store = _guard(lambda: _store(settings))
    rows = _rows(loaded, store)
    from shared.scheduler import daemon_status

    status = daemon_status(store)
    standbys = _standbys(settings, store)
    if as_json:
        from shared.cli import emit_json

        daemon = {**status.__dict__, "started_at": _iso(status.started_at),
                  "heartbeat_at": _iso(status.heartbeat_at)} if status else None
        emit_json({"daemon": daemon, "standbys": [standby.__dict__ for standby in standbys],
                   "schedules": rows, "problems": [str(p) for p in loaded.problems]})
        return
    described = status.describe(utc=utc) if status else "not running"
    for standby in standbys:
        described += f"; standing by: pid {standby.pid} on {standby.host}"
    _print_rows(rows, described, utc)
    _print_problems(loaded)


def _standbys(settings: Settings, store: Store) -> list[Standby]:
    """The scheduler daemons standing by (several on PostgreSQL; none on SQLite)."""
    if store.dialect != "postgresql":
        return []
    from shared.leader import list_standbys
    from shared.scheduler import HEARTBEAT_STALE

    return list_standbys(store, max(HEARTBEAT_STALE, 3 * settings.cluster.leader_poll_s))


def _rows(loaded: LoadedSchedules, store: Store) -> list[dict[str, Any]]:
    from shared.scheduler import next_run_times
    from shared.store import load_schedule_states

    states = load_schedule_states(store)
    next_runs = next_run_times(store)
    rows = []
    for schedule in loaded.schedules:
        state = states.get(schedule.id)
        last = store.list_runs(trigger=f"schedule:{schedule.id}", limit=1)
        next_run = next_runs.get(schedule.id)
        rows.append({
            "id": schedule.id, "robot": schedule.robot, "trigger": schedule.trigger_text(),
            "timezone": schedule.timezone, "enabled": schedule.enabled,
            "paused": bool(state and state.paused),
            "paused_by": state.paused_by if state and state.paused else None,
            "synced": schedule.id in next_runs,
            "next_run": next_run.isoformat() if next_run else None,
            "last_run": last[0].run_id if last else None,
            "last_status": last[0].status if last else None,
            "last_started": _iso(last[0].started_at) if last else None,
            "source": schedule.source,
        })
    return rows


def _print_rows(rows: list[dict[str, Any]], daemon: str, utc: bool) -> None:
    from rich.table import Table

    from shared.cli import console, styled

    table = Table(title="Schedules")
    for column in ("id", "robot", "trigger", "next run", "last run", "status", "paused"):
        table.add_column(column)
    for row in rows:
        next_run = _next_text(row, utc)
        last = _when(row["last_started"], utc) if row["last_run"] else "-"
        status = styled(row["last_status"]) if row["last_status"] else "-"
        paused = f"yes ({row['paused_by']})" if row["paused"] else "no"
        table.add_row(row["id"], row["robot"], row["trigger"], next_run, last, status, paused)
    console().print(table)
    console().print(f"Daemon: {daemon}", highlight=False)


def _next_text(row: dict[str, Any], utc: bool) -> str:
    if not row["enabled"]:
        return "disabled"
    if row["paused"]:
        return "paused"
    if not row["synced"]:
        return "not synced (start the daemon)"
    return _when(row["next_run"], utc) if row["next_run"] else "-"


def _print_problems(loaded: LoadedSchedules) -> None:
    import sys

    for problem in loaded.problems:
        sys.stderr.write(f"kansli: error: {problem}\n")


# -- validate -------------------------------------------------------------------------------------


@schedules_app.command("validate")
def validate_command() -> None:
    """Check every schedule file: one line per problem naming the file, the schedule and the field."""
    settings = _settings()
    loaded = _guard(lambda: _load(settings))
    if loaded.problems:
        _print_problems(loaded)
        raise typer.Exit(4)
    from shared.cli import console

    console().print(f"ok: {len(loaded.schedules)} schedule(s) in {len(loaded.files)} file(s) "
                    f"in {settings.schedules_dir}", highlight=False)


# -- pause / resume / trigger -----------------------------------------------------------------------


def _set_paused(schedule_id: str, paused: bool) -> None:
    from shared.runner import current_actor
    from shared.scheduler import daemon_status, record_action
    from shared.store import add_schedule_request, set_schedule_paused

    settings = _settings()
    schedule = _schedule(_load(settings), schedule_id)
    store = _guard(lambda: _store(settings))
    actor = current_actor()
    set_schedule_paused(store, schedule.id, paused, actor)
    action = "pause" if paused else "resume"
    record_action(store, f"schedule.{action}", schedule.id, {}, actor=actor)
    status = daemon_status(store)
    if status is not None and status.alive:
        add_schedule_request(store, schedule.id, action, actor)
        where = "the running daemon applies it within a second"
    else:
        where = "no daemon is running; it applies when the daemon starts"
    from shared.cli import console

    console().print(f"schedule {schedule.id} {action}d ({where})", highlight=False)


@schedules_app.command("pause")
def pause_command(schedule_id: Annotated[str, typer.Argument(help="The schedule id.")]) -> None:
    """Pause a schedule: it does not fire until resumed (survives daemon restarts)."""
    _set_paused(schedule_id, True)


@schedules_app.command("resume")
def resume_command(schedule_id: Annotated[str, typer.Argument(help="The schedule id.")]) -> None:
    """Resume a paused schedule; runs planned while it was paused are not made up."""
    _set_paused(schedule_id, False)


@schedules_app.command("trigger")
def trigger_command(
    schedule_id: Annotated[str, typer.Argument(help="The schedule id.")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the daemon to start it.")] = TRIGGER_WAIT,
) -> None:
    """Run a schedule now through the running daemon (same parameters, timeout, retries, mail)."""
    from shared.cli import console, fail
    from shared.runner import current_actor
    from shared.scheduler import daemon_status, record_action, wait_for
    from shared.store import add_schedule_request, get_schedule_request, list_operator_actions

    settings = _settings()
    schedule = _schedule(_load(settings), schedule_id)
    store = _guard(lambda: _store(settings))
    status = daemon_status(store)
    if status is None or not status.alive:
        fail(f"no scheduler daemon is running on this database, so schedule {schedule.id} was not "
             f"triggered; start it (kansli scheduler) or run the robot directly: kansli run "
             f"{schedule.robot}", 1)
    actor = current_actor()
    request_id = add_schedule_request(store, schedule.id, "trigger", actor)
    record_action(store, "schedule.trigger", schedule.id, {"request_id": request_id}, actor=actor)

    def started() -> bool:
        return any(action.details.get("request_id") == request_id
                   for action in list_operator_actions(store, schedule.id, limit=20)
                   if action.action == "schedule.trigger.started")

    if wait_for(started, wait, interval=0.2):
        run_id = next(action.details["run_id"] for action in list_operator_actions(store, schedule.id, 20)
                      if action.details.get("request_id") == request_id and "run_id" in action.details)
        console().print(f"schedule {schedule.id}: run {run_id} started by the daemon "
                        f"(follow it: kansli show {run_id})", highlight=False)
        return
    request = get_schedule_request(store, request_id)
    state = request.result if request and request.result else "not yet picked up"
    console().print(f"schedule {schedule.id}: request {request_id} {state}; see "
                    f"kansli schedules history {schedule.id}", highlight=False)


# -- history --------------------------------------------------------------------------------------


@schedules_app.command("history")
def history_command(
    schedule_id: Annotated[str, typer.Argument(help="The schedule id.")],
    limit: Annotated[int, typer.Option(help="At most this many runs and actions.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    utc: Annotated[bool, typer.Option("--utc", help=UTC_HELP)] = False,
) -> None:
    """The runs of a schedule (newest first) and the operator actions on it.

    An id that is neither in the schedule files nor in the history is a usage error (exit 2).
    """
    from shared.store import list_operator_actions

    settings = _settings()
    store = _guard(lambda: _store(settings))
    runs = store.list_runs(trigger=f"schedule:{schedule_id}", limit=limit)
    actions = list_operator_actions(store, schedule_id, limit=limit)
    if not runs and not actions:  # a schedule removed from the files keeps its history
        _schedule(_load(settings), schedule_id)
    if as_json:
        from shared.cli import emit_json

        emit_json({"runs": [run.as_dict() | {"started_at": _iso(run.started_at),
                                             "finished_at": _iso(run.finished_at)} for run in runs],
                   "actions": [action.__dict__ | {"at": _iso(action.at)} for action in actions]})
        return
    _print_history(schedule_id, runs, actions, utc)


def _print_history(schedule_id: str, runs: list[Any], actions: list[Any], utc: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from shared.cli import console, styled

    table = Table(title=f"Runs of schedule {schedule_id}")
    for column in ("run id", "robot", "status", "started", "finished", "items", "failed"):
        table.add_column(column, no_wrap=column != "robot")
    table.add_column("error", ratio=1, min_width=30, overflow="fold")
    for run in runs:
        table.add_row(run.run_id, run.robot, styled(run.status), _when(run.started_at, utc),
                      _when(run.finished_at, utc), str(run.items_total), str(run.items_failed),
                      escape(clip_at_word(run.error or "", ERROR_WIDTH)))
    console().print(table)
    if actions:
        done = Table(title="Operator actions")
        for column in ("when", "actor", "action"):
            done.add_column(column, no_wrap=True)
        done.add_column("details", ratio=1, min_width=30, overflow="fold")
        for action in actions:
            done.add_row(_when(action.at, utc), action.actor, action.action,
                         escape(details_text(action.details)))
        console().print(done)
