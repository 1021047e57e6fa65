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
    from shared.audit import AuditLog

audit_app = typer.Typer(
    help="Verify and search the audit trail.", no_args_is_help=True, rich_markup_mode=None
)

SEARCH_COLUMNS = ("seq", "time", "event", "robot", "run_id", "actor", "status", "item_key", "detail")


def _audit_log() -> tuple[AuditLog, Any]:
    from shared.audit import AuditLog
    from shared.cli import fail, settings
    from shared.errors import KansliError
    from shared.store import open_store

    try:
        loaded = settings()
        return AuditLog.from_settings(loaded), open_store(loaded.effective_database_url)
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
) -> None:
    """Recompute the hash chain; exit 0 when intact, 1 naming the first broken file and line."""
    from shared.audit import read_anchor

    log, store = _audit_log()
    until_day = _day(until, "--until")
    anchor = read_anchor(store) if until_day is None else None
    report = log.verify(since=_day(since, "--since"), until=until_day, anchor=anchor)
    stream = sys.stdout if report.ok else sys.stderr
    stream.write(report.summary() + "\n")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("search")
def search_command(
    robot: Annotated[str | None, typer.Option(help="Only events of this robot.")] = None,
    run: Annotated[str | None, typer.Option(help="Only events of this run id.")] = None,
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
) -> None:
    """Search the audit trail, streaming: a table, --json or --csv for your own tools."""
    log, _ = _audit_log()
    found = log.search(
        since=_day(since, "--since"), until=_day(until, "--until"), robot=robot, run_id=run,
        actor=actor, event=event, status=status, item_key=item,
    )
    if as_json:
        _write_json(found)
    elif as_csv:
        _write_csv(found)
    else:
        _write_table(found, limit)


def _write_json(events: Any) -> None:
    sys.stdout.write("[")
    for index, event in enumerate(events):
        sys.stdout.write(("," if index else "") + "\n" + json.dumps(event, ensure_ascii=False))
    sys.stdout.write("\n]\n")


def _row(event: dict[str, Any]) -> list[str]:
    data = event.get("data") or {}
    detail = {k: v for k, v in data.items() if k not in ("status", "outcome", "item_key")}
    values = [event.get("seq"), event.get("time"), event.get("event"), event.get("robot"),
              event.get("run_id"), event.get("actor"), data.get("status") or data.get("outcome"),
              data.get("item_key"), json.dumps(detail, ensure_ascii=False) if detail else ""]
    return ["" if value is None else str(value) for value in values]


def _write_csv(events: Any) -> None:
    import csv

    writer = csv.writer(sys.stdout)
    writer.writerow(SEARCH_COLUMNS)
    for event in events:
        writer.writerow(_row(event))


def _write_table(events: Any, limit: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    from shared.cli import console

    table = Table(title="Audit events")
    for column in SEARCH_COLUMNS[:-1]:
        table.add_column(column)
    shown = more = 0
    for event in events:
        if shown >= limit:
            more += 1
            continue
        table.add_row(*(escape(value) for value in _row(event)[:-1]))
        shown += 1
    console().print(table)
    if more:
        console().print(f"… and {more} more (use --limit, --json or --csv)", highlight=False)
