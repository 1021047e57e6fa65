"""``kansli audit ...``: verify and search the audit trail (see docs/audit.md).

Only typer is imported at module level, so ``kansli --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from shared.audit import VerifyReport
    from shared.audit_trails import AuditTrails

audit_app = typer.Typer(
    help="Verify and search the audit trail.", no_args_is_help=True, rich_markup_mode=None
)

SEARCH_COLUMNS = (
    "seq", "time", "event", "robot", "run_id", "actor", "status", "item_key", "detail", "host",
)
HOST_HELP = "Only the audit chain of this host (its KANSLI_HOST_ID)."


def _trails() -> tuple[AuditTrails, Any]:
    """Every audit chain of the installation, anchored in the run history database, and that database."""
    from shared.audit_trails import AuditTrails
    from shared.cli import fail, settings
    from shared.errors import KansliError
    from shared.store import open_store

    try:
        loaded = settings()
        store = open_store(loaded.effective_database_url)
        return AuditTrails(loaded, store=store), store
    except KansliError as error:
        fail(str(error), error.exit_code)


def _chains(trails: AuditTrails, host: str | None) -> list[str | None]:
    from shared.cli import fail
    from shared.errors import KansliError

    try:
        return trails.select(host)
    except KansliError as error:
        fail(str(error), error.exit_code)


def _day(value: str | None, option: str) -> date | None:
    from shared.cli import fail

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r}: expected a date as YYYY-MM-DD", 2)


@audit_app.command("verify")
def verify_command(
    since: Annotated[str | None, typer.Option(help="First day to check (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day to check (YYYY-MM-DD).")] = None,
    host: Annotated[str | None, typer.Option(help=HOST_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result of every chain as JSON.")] = False,
) -> None:
    """Recompute the hash chains; exit 0 when intact, 1 naming the host, file and line of a break.

    Every chain of the installation is checked (one per host, and the trail without a host id), each
    also against the head and checkpoints anchored in the run history database.
    """
    trails, _ = _trails()
    first, last = _day(since, "--since"), _day(until, "--until")
    reports = [trails.log(chain).verify(since=first, until=last) for chain in _chains(trails, host)]
    ok = all(report.ok for report in reports)
    if as_json:
        _write_verify_json(reports, ok)
    else:
        for report in reports:
            (sys.stdout if report.ok else sys.stderr).write(report.summary() + "\n")
        if len(reports) > 1:
            (sys.stdout if ok else sys.stderr).write(_verify_total(reports) + "\n")
    raise typer.Exit(0 if ok else 1)


def _verify_total(reports: list[VerifyReport]) -> str:
    broken = [report.name for report in reports if not report.ok]
    if not broken:
        return f"{len(reports)} audit chains intact"
    return f"{len(reports)} audit chains, {len(broken)} BROKEN: {'; '.join(broken)}"


def _write_verify_json(reports: list[VerifyReport], ok: bool) -> None:
    from shared.audit_trails import report_as_dict

    payload = {"ok": ok, "chains": [report_as_dict(report) for report in reports]}
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")


@audit_app.command("search")
def search_command(
    robot: Annotated[str | None, typer.Option(help="Only events of this robot.")] = None,
    run: Annotated[
        str | None, typer.Option(help="Only events of this run (its id or a unique prefix of it).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only events by this actor (user@host, schedule:ID).")
    ] = None,
    event: Annotated[str | None, typer.Option(help="Only this event type (e.g. item.outcome).")] = None,
    status: Annotated[str | None, typer.Option(help="Only this run status or item outcome.")] = None,
    since: Annotated[str | None, typer.Option(help="From this day (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this day (YYYY-MM-DD).")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Only events of this item key.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows in the table view.")] = 200,
    host: Annotated[str | None, typer.Option(help=HOST_HELP)] = None,
) -> None:
    """Search the audit trail, streaming: a table (local times), --json or --csv for your own tools.

    The events of every host's chain are merged by time; each names its host."""
    _check_choice("--event", event, _event_types())
    _check_choice("--status", status, _statuses())
    trails, store = _trails()
    chains = _chains(trails, host)
    found = trails.search(
        host=host, since=_day(since, "--since"), until=_day(until, "--until"), robot=robot,
        run_id=_run_id(store, run) if run is not None else None,
        actor=actor, event=event, status=status, item_key=item,
    )
    if as_json:
        _write_json(found)
    elif as_csv:
        _write_csv(found)
    else:
        _write_table(found, limit, hosts=chains != [None])


def _event_types() -> tuple[str, ...]:
    from shared.audit import EVENT_TYPES

    return EVENT_TYPES


def _statuses() -> tuple[str, ...]:
    """Run statuses and item outcomes, the values ``data.status`` and ``data.outcome`` take."""
    from shared.items import OUTCOMES
    from shared.store import ACTIVE_STATUSES, FINAL_STATUSES

    return tuple(dict.fromkeys((*ACTIVE_STATUSES, *FINAL_STATUSES, *OUTCOMES)))


def _check_choice(option: str, value: str | None, valid: tuple[str, ...]) -> None:
    from shared.cli import fail

    if value is not None and value not in valid:
        fail(f"{option} {value!r} is not one of: {', '.join(valid)}", 2)


def _run_id(store: Any, prefix: str) -> str:
    """The run id ``prefix`` stands for, as ``kansli show`` resolves it; ambiguous: a usage error."""
    import sqlalchemy as sa

    from shared.cli import fail
    from shared.store import runs

    if store.get_run(prefix) is not None:
        return prefix
    query = (
        sa.select(runs.c.run_id)
        .where(runs.c.run_id.startswith(prefix, autoescape=True))
        .order_by(runs.c.run_id.desc())
        .limit(11)
    )
    with store.engine.connect() as connection:
        found = list(connection.execute(query).scalars())
    if len(found) > 1:
        listed = ", ".join(found[:10]) + (", …" if len(found) > 10 else "")
        fail(f"--run {prefix!r} is ambiguous: it matches runs {listed}; give more of the run id", 2)
    return found[0] if found else prefix  # unknown to the run history: search the trail for it as is


def _write_json(events: Any) -> None:
    sys.stdout.write("[")
    for index, event in enumerate(events):
        sys.stdout.write(("," if index else "") + "\n" + json.dumps(event, ensure_ascii=False))
    sys.stdout.write("\n]\n")


def _row(event: dict[str, Any], *, local: bool = False) -> list[str]:
    """One event as text columns; ``local``: the time as people read it (local, zone named)."""
    from shared.clock import local_time

    data = event.get("data") or {}
    detail = {k: v for k, v in data.items() if k not in ("status", "outcome", "item_key")}
    moment = event.get("time")
    if local and isinstance(moment, str):
        try:
            moment = local_time(moment, seconds=True)
        except ValueError:
            pass  # not a time: shown as written
    values = [event.get("seq"), moment, event.get("event"), event.get("robot"),
              event.get("run_id"), event.get("actor"), data.get("status") or data.get("outcome"),
              data.get("item_key"), json.dumps(detail, ensure_ascii=False) if detail else "",
              event.get("host")]
    return ["" if value is None else str(value) for value in values]


def _write_csv(events: Any) -> None:
    import csv

    writer = csv.writer(sys.stdout)
    writer.writerow(SEARCH_COLUMNS)
    for event in events:
        writer.writerow(_row(event))


def _write_table(events: Any, limit: int, *, hosts: bool = False) -> None:
    """The events as a table; ``hosts``: with a host column (chains of several hosts)."""
    from rich.markup import escape
    from rich.table import Table

    from shared.cli import console

    table = Table(title="Audit events")
    shown_columns = ["host", *SEARCH_COLUMNS[:-2]] if hosts else list(SEARCH_COLUMNS[:-2])
    for column in shown_columns:
        table.add_column(column)
    shown = more = 0
    for event in events:
        if shown >= limit:
            more += 1
            continue
        values = _row(event, local=True)
        table.add_row(*(escape(value) for value in ([values[-1], *values[:-2]] if hosts else values[:-2])))
        shown += 1
    console().print(table)
    if more:
        console().print(f"… and {more} more (use --limit, --json or --csv)", highlight=False)
