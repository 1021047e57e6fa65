"""``kansli queue``: the work queues. List them, show their items, retry failed items, forget a key.

Every change an operator makes (retry, forget) is recorded with the actor in the operator actions
and in the audit trail (``queue.retry``, ``queue.forget``). Item data is shown redacted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from shared.queue import QueueItem, WorkQueue
    from shared.settings import Settings
    from shared.store import Store

queue_app = typer.Typer(
    help="The work queues: list (default), show, retry, forget.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _settings() -> Settings:
    from shared.cli import settings

    return settings()


def _store(settings: Settings) -> Store:
    from shared.cli import fail
    from shared.errors import KansliError
    from shared.store import open_store

    try:
        return open_store(settings.effective_database_url)
    except KansliError as error:
        fail(str(error), error.exit_code)


def _queue(store: Store, name: str) -> WorkQueue:
    from shared.cli import fail
    from shared.queue import WorkQueue, list_queues

    known = list_queues(store)
    if name not in known:
        fail(f"no queue named {name!r} (queues: {', '.join(known) or 'none'})", 2)
    return WorkQueue(store, name)


def _public(item: QueueItem) -> dict[str, Any]:
    from shared.clock import iso_with_offset
    from shared.redaction import redact_value

    values = item.as_dict()
    values["data"] = redact_value(values["data"])
    for name in ("not_before", "created_at", "updated_at"):
        values[name] = iso_with_offset(values[name])
    return values


@queue_app.callback()
def queues_default(context: typer.Context, as_json: JsonOption = False) -> None:
    """List the queues with their items by status (as ``kansli queue list``)."""
    if context.invoked_subcommand is None:
        list_command(None, as_json)


@queue_app.command("list")
def list_command(
    queue: Annotated[str | None, typer.Argument(help="Only this queue.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the queues with their items by status."""
    from shared.queue import STATUSES, list_queues

    queues = list_queues(_store(_settings()))
    if queue is not None:
        queues = {name: counts for name, counts in queues.items() if name == queue}
    if as_json:
        from shared.cli import emit_json

        emit_json(queues)
        return
    from rich.table import Table

    from shared.cli import console

    table = Table(title="Queues")
    for column in ("queue", *STATUSES, "total"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for name, counts in queues.items():
        table.add_row(name, *(str(counts.get(status, 0)) for status in STATUSES),
                      str(sum(counts.values())))
    console().print(table)


@queue_app.command("show")
def show_command(
    queue: Annotated[str, typer.Argument(help="The queue (a robot's name, or the one it names).")],
    status: Annotated[str | None, typer.Option(help="Only items with this status.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this key.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many items.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Show a queue's items: status, version, attempts, last error, when it may be tried again."""
    from shared.cli import fail
    from shared.queue import STATUSES

    if status is not None and status not in STATUSES:
        fail(f"--status {status!r}: expected one of {', '.join(STATUSES)}", 2)
    items = _queue(_store(_settings()), queue).items(status=status, key=key, limit=limit)
    if as_json:
        from shared.cli import emit_json

        emit_json([_public(item) for item in items])
        return
    _print_items(queue, items)


def _print_items(queue: str, items: list[QueueItem]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from shared.cli import console, styled
    from shared.clock import local_time

    table = Table(title=f"Queue {queue} ({len(items)} items)")
    for column in ("key", "status", "version", "attempts", "source", "updated", "retry after", "error"):
        table.add_column(column)
    for item in items:
        table.add_row(escape(item.key), styled(item.status), str(item.version), str(item.attempts),
                      escape(item.source or ""), local_time(item.updated_at),
                      local_time(item.not_before), escape(item.error or ""))
    console().print(table)


@queue_app.command("retry")
def retry_command(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    key: Annotated[list[str] | None, typer.Argument(help="The failed key(s) to try again.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed item of the queue.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make failed items (business or application errors) pending again, with fresh attempts."""
    from shared.cli import fail

    if bool(key) == failed:
        fail("name the key(s) to retry, or give --failed for every failed item (not both)", 2)
    settings = _settings()
    store = _store(settings)
    work = _queue(store, queue)
    if key:
        known = work.lookup(key)
        unknown = [name for name in key if name not in known]
        if unknown:
            fail(f"queue {queue!r} has no key {unknown[0]!r}", 2)
        done = [name for name in key if known[name].status not in ("business_error", "app_error")]
        if done:
            state = known[done[0]].status
            fail(f"key {done[0]!r} is {state}, not failed: only failed items are retried"
                 + (f" ('kansli queue forget {queue} {done[0]}' makes a done key doable again)"
                    if state == "done" else ""), 2)
    retried = work.retry(key or None)
    _record(settings, store, "queue.retry", queue, {"keys": retried, "all_failed": failed})
    _report(as_json, {"queue": queue, "retried": retried},
            f"{len(retried)} item(s) of queue {queue} pending again")


@queue_app.command("forget")
def forget_command(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    key: Annotated[str, typer.Argument(help="The key to forget.")],
    as_json: JsonOption = False,
) -> None:
    """Forget a key: the next run that meets it does it as new (the only undo of 'done')."""
    from shared.cli import fail

    settings = _settings()
    store = _store(settings)
    work = _queue(store, queue)
    item = work.get(key)
    if item is None:
        fail(f"queue {queue!r} has no key {key!r}", 2)
    if item.status == "in_progress":
        fail(f"key {key!r} is in progress in run {item.run_id}; forget it when that run has ended", 2)
    work.forget(key)
    _record(settings, store, "queue.forget", queue, {"key": key, "was": item.status,
                                                     "version": item.version})
    _report(as_json, {"queue": queue, "forgotten": key, "was": item.status},
            f"key {key} forgotten in queue {queue} (it was {item.status})")


def _record(settings: Settings, store: Store, action: str, queue: str, details: dict[str, Any]) -> None:
    """The operator's action, with the actor, in the operator actions and the audit trail."""
    from shared.audit import AuditLog, anchor_head
    from shared.redaction import redact_value
    from shared.runner import current_actor
    from shared.store import add_operator_action

    actor, safe = current_actor(), redact_value({"queue": queue, **details})
    add_operator_action(store, actor, action, None, safe)
    log = AuditLog.from_settings(settings)
    log.append(action, actor=actor, data=safe)
    anchor_head(log, store)


def _report(as_json: bool, data: dict[str, Any], text: str) -> None:
    from shared.cli import console, emit_json

    if as_json:
        emit_json(data)
    else:
        console().print(text, highlight=False)
