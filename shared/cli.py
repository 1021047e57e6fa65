"""The ``kansli`` command line (Typer + Rich).

Exit codes: 0 succeeded, 1 failed, 2 usage error (unknown robot, bad parameter), 3 partial,
4 configuration error, 5 refused because the robot is already running, 130 cancelled.
Heavy modules are imported inside the commands, so ``kansli --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO

import typer

from shared.cli_audit import audit_app
from shared.cli_cluster import run_hosts, waiting_note, worker_command, workers_command
from shared.cli_queue import queue_app
from shared.cli_schedules import schedules_app

if TYPE_CHECKING:
    from rich.console import Console

    from shared.items import ItemResult
    from shared.settings import Settings
    from shared.store import ItemRecord, RunRecord

app = typer.Typer(
    name="kansli",
    help="Kansli: robots for the municipal back office. Run, schedule and audit them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Typer's Rich help formatting costs ~0.2 s of imports on every `kansli --help`.
    rich_markup_mode=None,
)

_console: Console | None = None


def console(stderr: bool = False) -> Console:
    """The Rich console for human output (stdout), or one on stderr."""
    global _console
    from rich.console import Console

    if stderr:
        return Console(stderr=True)
    if _console is None:
        _console = Console() if sys.stdout.isatty() else Console(width=160)
    return _console


def fail(message: str, code: int) -> NoReturn:
    """One clear line on stderr, then exit with ``code``."""
    from shared.redaction import redact

    sys.stderr.write(f"kansli: error: {redact(message)}\n")
    raise typer.Exit(code)


def settings() -> Settings:
    from shared.logs import configure_console
    from shared.settings import get_settings

    loaded = get_settings()
    # Looked up at each write: a live progress bar swaps sys.stderr to print above itself.
    configure_console(loaded.log_level, write=_to_stderr)
    return loaded


def _to_stderr(text: str) -> None:
    sys.stderr.write(text)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


# -- robots and runs ----------------------------------------------------------------------------


@app.command("robots")
def robots_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the robots with their summary and parameters."""
    from shared.registry import discover

    found = discover(settings().robots_package)
    if as_json:
        emit_json([
            {"name": spec.name, "summary": spec.summary, "parameters": spec.parameters()}
            for spec in found.values()
        ])
        return
    from rich.table import Table

    table = Table(title="Robots", show_lines=True)
    for column in ("Robot", "Summary", "Parameters"):
        table.add_column(column)
    for spec in found.values():
        table.add_row(spec.name, spec.summary, "\n".join(_describe_param(p) for p in spec.parameters()))
    console().print(table)


def _describe_param(parameter: dict[str, Any]) -> str:
    text = f"{parameter['name']}: {parameter['type']}"
    return text + (" (required)" if parameter["required"] else f" = {parameter['default']}")


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as a dict; a value that looks like JSON (list, object) is parsed."""
    from shared.errors import UsageError

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {pair!r}: expected key=value")
        if value.startswith(("[", "{")):
            try:
                params[key.strip()] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        params[key.strip()] = value
    return params


@app.command("run")
def run_command(
    name: Annotated[str, typer.Argument(help="The robot to run (see `kansli robots`).")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A robot parameter as key=value; repeat for more."),
    ] = None,
    rerun_all: Annotated[
        bool, typer.Option("--rerun-all", help="Redo done items: reconcile asks first whether each "
                           "effect is already there; only what is not there is done again.")
    ] = False,
    resubmit: Annotated[
        bool, typer.Option("--resubmit", help="With --rerun-all: do done items again without asking "
                           "reconcile (a second submission; logged and audited).")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm --rerun-all of a robot with side effects and no "
                           "reconcile step.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for a running run of this robot to end.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    trigger: Annotated[
        str, typer.Option("--trigger", hidden=True, help="Who started the run.")
    ] = "cli",
    run_id: Annotated[
        str | None, typer.Option("--run-id", hidden=True, help="Use this run id (scheduler).")
    ] = None,
    queue_it: Annotated[
        bool, typer.Option("--queue-it", help="Queue the run for a worker on any host "
                           "(KANSLI_EXECUTION=procrastinate) instead of running it here; print its id.")
    ] = False,
) -> None:
    """Run a robot now, show progress over its items, and print the summary."""
    from shared.errors import KansliError
    from shared.runner import EXIT_CODES, Runner

    if queue_it:
        _queue_run(name, parse_params(param or []), rerun_all or resubmit, as_json)
        return
    try:
        runner = Runner(settings())
        with _RichProgress(enabled=not as_json) as progress:
            record = runner.run(name, parse_params(param or []), trigger=trigger,
                                rerun_all=rerun_all or resubmit, wait=wait, progress=progress,
                                run_id=run_id, resubmit=resubmit, confirmed=yes)
    except KansliError as error:
        fail(str(error), error.exit_code)
    items = runner.store.list_items(record.run_id)
    if as_json:
        emit_json({"run": run_json(record), "items": [run_json(item) for item in items]})
    else:
        _print_summary(record, items)
    raise typer.Exit(EXIT_CODES.get(record.status, 1))


def _queue_run(name: str, params: dict[str, Any], rerun_all: bool, as_json: bool) -> None:
    from shared.errors import KansliError
    from shared.execution import enqueue_run

    try:
        run_id = enqueue_run(settings(), name, params, trigger="cli", rerun_all=rerun_all)
    except KansliError as error:
        fail(str(error), error.exit_code)
    if as_json:
        emit_json({"run_id": run_id, "status": "queued"})
    else:
        console().print(f"run {run_id} of {name} queued; `kansli show {run_id}` follows it", highlight=False)


class _RichProgress:
    """Draws a Rich progress bar over a run's items, on a terminal only, from the run's first item count
    (a run that fails to start draws nothing; a redirected stderr gets no stray newline)."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console(stderr=True), transient=True,
            disable=not enabled or not sys.stderr.isatty(),
        )
        self.task: Any = None

    def start(self, total: int | None) -> None:
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("items", total=total)
        else:
            self.bar.update(self.task, total=total, completed=0)

    def advance(self, result: ItemResult) -> None:
        if self.task is not None:
            self.bar.advance(self.task)

    def __enter__(self) -> _RichProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()


STATUS_STYLES = {
    "succeeded": "green", "partial": "yellow", "failed": "red", "skipped": "magenta",
    "cancelled": "magenta", "timeout": "red", "missed": "red", "interrupted": "red",
    "running": "cyan", "done": "green", "business_error": "yellow", "app_error": "red",
    "in_progress": "cyan",
}


def styled(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, 'white')}]{status}[/]"


def _print_summary(record: RunRecord, items: list[ItemRecord], utc: bool = False) -> None:
    from rich.table import Table

    from shared.clock import local_time

    out = console()
    out.print(f"Run [bold]{record.run_id}[/] of [bold]{record.robot}[/]: {styled(record.status)}")
    finished = local_time(record.finished_at, seconds=True, utc=utc) or "-"
    out.print(f"started: {local_time(record.started_at, seconds=True, utc=utc)}  finished: {finished}",
              highlight=False)
    table = Table(show_header=True, header_style="bold")
    for column in ("done", "skipped (done before)", "business errors", "app errors", "total"):
        table.add_column(column, justify="right")
    table.add_row(str(record.items_done), str(record.items_skipped),
                  str(record.items_business_error), str(record.items_app_error),
                  str(record.items_total))
    out.print(table)
    failed = [item for item in items if item.outcome in ("business_error", "app_error")]
    if failed:
        _print_items(failed[:20], title=f"Failed items ({len(failed)})")
    changed = [item for item in items if item.note == "done before, data changed"]
    if changed:
        _print_items(changed[:20], title=f"Done before, data changed since: not done again ({len(changed)})")
    if record.run_dir:
        out.print(f"Log: kansli logs {record.run_id}", highlight=False)
        out.print(f"Folder: {record.run_dir}", highlight=False, soft_wrap=True)
    run_level = not failed or record.error is not None and record.error.startswith("stopped early")
    if record.error and run_level and record.status not in ("succeeded", "partial"):
        sys.stderr.write(f"kansli: error: {record.error}\n")


def _print_items(items: list[ItemRecord], title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in ("#", "key", "outcome", "attempts", "note", "output / error"):
        table.add_column(column)
    for item in items:
        detail = item.error if item.error else json.dumps(item.output, ensure_ascii=False)
        table.add_row(str(item.position), escape(item.key), styled(item.outcome),
                      str(item.attempts), escape(item.note or ""), escape(detail or ""))
    console().print(table)


UTC_HELP = "Show times in UTC instead of the settings' time zone (KANSLI_TIMEZONE)."
TIME_FIELDS = ("started_at", "finished_at")


@app.command("runs")
def runs_command(
    robot: Annotated[str | None, typer.Option(help="Only this robot.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs started on or after this date (YYYY-MM-DD).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    utc: Annotated[bool, typer.Option("--utc", help=UTC_HELP)] = False,
) -> None:
    """Show the run history, newest first (times in the settings' time zone, KANSLI_TIMEZONE)."""
    from rich.table import Table

    from shared.clock import local_time

    runner = _runner()
    runner.reap_interrupted()
    records = runner.store.list_runs(robot=robot, status=status, since=_since(since, utc), limit=limit)
    waiting, hosts = waiting_note(runner.store, records), run_hosts(runner.store, records)
    if as_json:
        emit_json([{**run_json(record), **({"waiting": waiting[record.run_id]} if record.run_id in waiting
                                            else {}), **({"host": hosts[record.run_id]}
                                                         if record.run_id in hosts else {})}
                   for record in records])
        return
    table = Table(title="Runs")
    columns = ["run id", "robot", "status", "trigger", "actor", "started", "items", "failed"]
    for column in columns[:5] + (["host"] if hosts else []) + columns[5:]:
        table.add_column(column)
    for record in records:
        status = styled(record.status) + (f" ({waiting[record.run_id]})" if record.run_id in waiting else "")
        host = [hosts.get(record.run_id, "-")] if hosts else []
        table.add_row(record.run_id, record.robot, status, record.trigger, record.actor, *host,
                      local_time(record.started_at, utc=utc), str(record.items_total),
                      str(record.items_failed))
    console().print(table)


def run_json(record: RunRecord | ItemRecord) -> dict[str, Any]:
    """A run or item for JSON output: its times ISO 8601 with their UTC offset."""
    from shared.clock import iso_with_offset

    values = record.as_dict()
    for name in TIME_FIELDS:
        if name in values:
            values[name] = iso_with_offset(values[name])
    return values


def _since(value: str | None, utc: bool = False) -> str | None:
    """``--since DAY``: from midnight of that day in the settings' time zone (UTC with ``--utc``)."""
    if value is None:
        return None
    from datetime import UTC, date, datetime, time

    from shared.clock import zone

    try:
        day = date.fromisoformat(value)
    except ValueError:
        fail(f"--since {value!r}: expected a date as YYYY-MM-DD", 2)
    midnight = datetime.combine(day, time(), tzinfo=UTC if utc else zone())
    return midnight.astimezone(UTC).isoformat(timespec="microseconds")


def _runner() -> Any:
    from shared.errors import KansliError
    from shared.runner import Runner

    try:
        return Runner(settings())
    except KansliError as error:
        fail(str(error), error.exit_code)


def _find_run(runner: Any, run_id: str) -> RunRecord:
    from shared.errors import UsageError

    try:
        record = runner.store.find_run(run_id)
    except UsageError as error:  # an ambiguous prefix: the candidates are in the message
        fail(str(error), error.exit_code)
    if record is None:
        fail(f"no run with id {run_id!r} (see `kansli runs`)", 2)
    return record


@app.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(help="The run id (or a unique prefix).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    utc: Annotated[bool, typer.Option("--utc", help=UTC_HELP)] = False,
) -> None:
    """Show one run with its items (times in the settings' time zone, KANSLI_TIMEZONE)."""
    runner = _runner()
    record = _find_run(runner, run_id)
    items = runner.store.list_items(record.run_id)
    host = run_hosts(runner.store, [record]).get(record.run_id)  # a run a worker took: its host
    if as_json:
        run = {**run_json(record), **({"host": host} if host else {})}
        emit_json({"run": run, "items": [run_json(item) for item in items]})
        return
    _print_summary(record, [], utc=utc)
    out = console()
    out.print(f"robot: {record.robot}  trigger: {record.trigger}  actor: {record.actor}"
              + (f"  host: {host}" if host else ""), highlight=False)
    out.print(f"params: {json.dumps(record.params, ensure_ascii=False)}", highlight=False,
              markup=False)
    if items:
        _print_items(items, title=f"Items ({len(items)})")


@app.command("logs")
def logs_command(
    run_id: Annotated[str, typer.Argument(help="The run id (or a unique prefix).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON lines log.")] = False,
) -> None:
    """Print a run's log (another host's run: the copy stored in the database when it ended)."""
    from shared.run_files import missing_log, run_file

    runner = _runner()
    record = _find_run(runner, run_id)
    name = "log.jsonl" if as_json else "log.txt"
    found = run_file(runner.store, record, name)  # the local file, else the database's copy
    if found is None:
        fail(missing_log(runner.store, record, name), 1)
    if not isinstance(found, Path):
        sys.stderr.write(found.note("log") + "\n")
        sys.stdout.write(found.data.decode("utf-8", errors="replace"))
        return
    from shared.logs import stream_text

    stream_text(found, sys.stdout)


@app.command("report")
def report_command(
    run_id: Annotated[str, typer.Argument(help="The run id (or a unique prefix).")],
    open_it: Annotated[bool, typer.Option("--open", help="Open the report in a web browser.")] = False,
) -> None:
    """Write a run's HTML report (report.html in its folder) and print its path; another host's run:
    its stored report (or one made from the run history) in this host's data dir."""
    from shared.run_files import report_here

    runner = _runner()
    record = _find_run(runner, run_id)
    path, note = report_here(runner.store, record, runner.settings)  # another host's run: a copy here
    if note:
        sys.stderr.write(note + "\n")
    console().print(str(path), highlight=False, soft_wrap=True)
    if open_it:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


@app.command("cleanup")
def cleanup_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted.")] = False,
) -> None:
    """Delete run folders and logs older than the retention settings (audit files are exempt)."""
    from shared.retention import apply_retention

    report = apply_retention(settings(), dry_run=dry_run)
    for path in [*report.run_folders, *report.log_files, *report.audit_files]:
        console().print(("would delete " if dry_run else "deleted ") + str(path), highlight=False)
    console().print(("Would delete: " if dry_run else "Deleted: ") + report.summary(), highlight=False)


# -- configuration --------------------------------------------------------------------------------


@app.command("config")
def config_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the effective settings, secrets masked."""
    from shared.errors import KansliError

    try:
        masked = settings().masked()
    except KansliError as error:
        fail(str(error), error.exit_code)
    if as_json:
        emit_json(masked)
        return
    for key, value in _flatten(masked):
        console().print(f"KANSLI_{key.upper()} = {value}", highlight=False, markup=False)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            pairs.extend(_flatten(value, f"{prefix}{key}__"))
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


@app.command("doctor")
def doctor_command() -> None:
    """Check Chromium, the data and log dirs, the database and the robots package; say what to fix."""
    from shared.doctor import run_checks

    checks = run_checks()
    for check in checks:
        mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
        console().print(f"{mark} {check.name}: {check.detail}", highlight=False)
        if not check.ok and check.fix:
            console().print(f"      fix: {check.fix}", highlight=False)
    if not all(check.ok for check in checks):
        raise typer.Exit(4)


app.command("worker")(worker_command)
app.command("workers")(workers_command)
app.add_typer(schedules_app, name="schedules")
app.add_typer(audit_app, name="audit")
app.add_typer(queue_app, name="queue")


@app.command("scheduler")
def scheduler_command(
    keep_going: Annotated[
        bool, typer.Option("--keep-going", help="Load the valid schedules; report broken ones.")
    ] = False,
    stop_grace: Annotated[
        float, typer.Option(help="On SIGTERM, seconds to wait for running runs before stopping them.")
    ] = 60.0,
    log_level: Annotated[str, typer.Option(help="The daemon's log level.")] = "INFO",
) -> None:
    """Run the scheduler daemon: start robots on their schedules until SIGTERM (see docs/operations.md)."""
    from shared.errors import KansliError
    from shared.scheduler import DaemonOptions, run_daemon

    try:
        options = DaemonOptions(keep_going=keep_going, stop_grace=stop_grace, log_level=log_level)
        loaded = settings()
        _require_writable(loaded)
        code = run_daemon(loaded, options)
    except KansliError as error:
        fail(str(error), error.exit_code)
    raise typer.Exit(code)


def _require_writable(loaded: Settings) -> None:
    """The daemon refuses to start (exit 4) when its runs could not start: data or audit folder not
    writable (every run would fail, and the daemon's own events would go unrecorded)."""
    from shared.doctor import check_directory

    for check in (check_directory("data dir", loaded.data_dir, "KANSLI_DATA_DIR"),
                  check_directory("audit dir", loaded.log_dir / "audit", "KANSLI_LOG_DIR")):
        if not check.ok:
            fail(f"the {check.name} {check.detail}: {check.fix}", 4)


@app.command("demo-site")
def demo_site_command(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    faults: Annotated[
        str, typer.Option(help="Faults, e.g. error_rate=0.1,slow_rate=0.05,slow_seconds=3,expire_after=20.")
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed of the fault dice.")] = 0,
    db: Annotated[Path, typer.Option(help="SQLite file of the cases.")] = Path("var/demo-site/eservice.db"),
) -> None:
    """Run the demo e-service until Ctrl-C; its user and password are KANSLI_ESERVICE__USERNAME/PASSWORD."""
    import signal

    from demo.site.app import SiteConfig
    from demo.site.faults import FaultConfig
    from demo.site.server import serve

    loaded = settings()
    try:
        fault_config = FaultConfig.parse(faults)
    except ValueError as error:
        fail(f"--faults: {error}", 2)
    config = SiteConfig(db_path=db, username=loaded.eservice.username,
                        password=loaded.eservice.password.get_secret_value(), faults=fault_config, seed=seed)

    def ready(url: str) -> None:
        sys.stdout.write(f"Demo e-service ready at {url}\n")
        sys.stdout.flush()

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        serve(config, host, port, ready=ready)
    except KeyboardInterrupt:
        pass
    except OSError as error:
        fail(f"the demo e-service could not listen on {host}:{port}: {error}", 1)


class _QuietWhenClosed:
    """A standard stream that, once its reader has gone (``kansli run ... | head``), drops the rest of
    the output instead of failing, so the command still ends with its own exit code.

    Python ignores SIGPIPE, so a write to a closed pipe raises :class:`BrokenPipeError` (which Click
    would turn into exit 1). The stream's file descriptor is then pointed at ``/dev/null``, so the
    buffered rest, flushed at exit, goes nowhere without a second error.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.closed_by_reader = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main() -> None:
    """Entry point of the ``kansli`` script."""
    from shared.errors import KansliError

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None:  # None without a console (pythonw, some service managers)
            setattr(sys, name, _QuietWhenClosed(stream))
    try:
        app()
    except KansliError as error:  # raised outside a command's own handling
        sys.stderr.write(f"kansli: error: {error}\n")
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
