"""Log sinks: the console for people, and per-run ``log.jsonl`` / ``log.txt`` files.

Every sink writes through :func:`shared.redaction.redact`, so secrets and personal identity numbers
are masked whatever a message or its context holds. Only the CLI and the scheduler call
:func:`configure_console`; the runner adds and removes the per-run file sinks. Library code only logs,
with context (``logger.bind(...)`` or the run's ``logger.contextualize``).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

from loguru import logger

from shared.clock import zone
from shared.redaction import redact, redact_value

#: A ``log.txt`` line after its time (local, in the settings' zone, with the zone's abbreviation).
TEXT_FORMAT = "{level: <8} | {extra[robot]} | {extra[run_id]} | {extra[item]} | {message}"
CONSOLE_FORMAT = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}"

logger.configure(extra={"run_id": "-", "robot": "-", "item": "-"})
try:  # loguru's default stderr sink does not redact: nothing may reach a console unmasked
    logger.remove(0)
except ValueError:
    pass


class RedactingWriter:
    """A loguru sink writing to an open text stream, masking on the way out.

    ``json_lines``: each message is a loguru-serialised record, which is parsed and masked field by
    field (masking the JSON text itself would miss a secret holding ``"`` or ``\\``, and could take
    a timestamp for an identity number). A failing write (a full disk) is reported once on stderr,
    masked and without the record, and never raised into the code that logged.
    """

    def __init__(self, stream: IO[str], *, close: bool = False, json_lines: bool = False) -> None:
        self.stream = stream
        self._close = close
        self._json = json_lines
        self._lock = threading.Lock()
        self._failed = False

    def write(self, message: str) -> None:
        text = _redact_json_line(message) if self._json else redact(message)
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError) as error:
                self._report(error)

    def stop(self) -> None:
        if self._close:
            try:
                self.stream.close()
            except OSError as error:
                self._report(error)

    def _report(self, error: BaseException) -> None:
        if not self._failed:
            self._failed = True
            name = getattr(self.stream, "name", "a log stream")
            sys.stderr.write(redact(f"kansli: cannot write {name}: {error}; its records are lost\n"))


def _redact_json_line(line: str) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return redact(line)
    return json.dumps(redact_value(record), ensure_ascii=False) + "\n"


def configure_console(
    level: str = "INFO", *, write: Callable[[str], None] | None = None, colorize: bool = False
) -> int:
    """Replace every sink with one console sink (stderr, or ``write``); returns its id."""
    logger.remove()
    target = write if write is not None else sys.stderr.write

    def sink(message: str) -> None:
        try:
            target(redact(message))
        except (OSError, ValueError):
            pass  # a closed or broken console loses its records; the run's files still have them

    # catch=False: loguru's own error handler would print the whole record, unmasked, to stderr
    return logger.add(sink, level=level.upper(), format=CONSOLE_FORMAT, colorize=colorize,
                      filter=_for_console, diagnose=False, backtrace=False, catch=False)


def _for_console(record: Any) -> bool:
    """Records bound with ``console=False`` go to the run's files only (the CLI says it itself)."""
    return bool(record["extra"].get("console", True))


def text_format(zone_name: str | None = None) -> Callable[[Any], str]:
    """The format of ``log.txt`` lines: ``2026-12-02 06:30:15.123 CET | INFO     | robot | run | item |
    message``, the time in ``zone_name`` (default: the settings' zone) with its abbreviation."""
    local = zone(zone_name)

    def line(record: Any) -> str:
        moment = record["time"].astimezone(local)
        stamp = f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d} {moment.tzname()}"
        return f"{stamp} | {TEXT_FORMAT}\n{{exception}}"

    return line


@contextmanager
def run_sinks(run_dir: Path, run_id: str, level: str = "DEBUG", *, zone_name: str | None = None
              ) -> Iterator[None]:
    """Send the run's records to ``log.jsonl`` and ``log.txt`` in its folder while open; ``log.txt``
    shows local times in ``zone_name`` (default: the settings' zone), ``log.jsonl`` keeps loguru's."""
    def belongs(record: Any) -> bool:
        return bool(record["extra"].get("run_id") == run_id)

    writers = [
        RedactingWriter((run_dir / "log.jsonl").open("a", encoding="utf-8"), close=True, json_lines=True),
        RedactingWriter((run_dir / "log.txt").open("a", encoding="utf-8"), close=True),
    ]
    # catch=False: the writers never raise, and loguru's handler would print records unmasked
    ids = [
        logger.add(writers[0].write, level=level, filter=belongs, serialize=True,
                   diagnose=False, backtrace=False, catch=False),
        logger.add(writers[1].write, level=level, filter=belongs, format=text_format(zone_name),
                   diagnose=False, backtrace=False, catch=False),
    ]
    try:
        yield
    finally:
        for sink_id in ids:
            logger.remove(sink_id)
        for writer in writers:
            writer.stop()


def stream_text(path: Path, out: TextIO) -> None:
    """Copy a log file to ``out`` (already redacted when written)."""
    with path.open(encoding="utf-8") as source:
        for line in source:
            out.write(line)
