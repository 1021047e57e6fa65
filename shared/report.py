"""The HTML run report: one self-contained page per run (``<run folder>/report.html``).

Header (robot, parameters, actor, trigger, times, status), the items with outcome and error, filters
by outcome, screenshots of failed items inline, links to the log and traces. Everything shown went
through the redaction policy when it was recorded; the page is redacted once more on the way out.

The page is for staff: in the staff language (:mod:`shared.wording`, ``KANSLI_LANGUAGE``), times in
the settings' zone with the zone named (:func:`shared.clock.local_time`), and each item's output as
fields (``Brev: beslut-X.docx``), linked to the file when it names one: in the run folder, its
artifacts, or a folder the run was given as a parameter (the robot's output folder).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

from shared.clock import local_time
from shared.files import atomic_path
from shared.redaction import redact
from shared.store import ItemRecord, RunRecord, Store
from shared.wording import Wording, wording

if TYPE_CHECKING:
    from shared.settings import Settings

MAX_INLINE_IMAGE_BYTES = 4 * 2**20
MAX_LINKED_NAME = 4096


@dataclass
class ReportField:
    """One ``label: value`` of an output or a parameter; ``href`` links to the file it names."""

    label: str
    text: str
    href: str | None = None


@dataclass
class ReportItem:
    """An item as the report shows it."""

    record: ItemRecord
    outcome: str
    fields: list[ReportField]
    screenshots: list[str]
    links: list[tuple[str, str]]


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("shared", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(record: RunRecord, items: list[ItemRecord], settings: Settings | None = None) -> str:
    """The report page of one run, as HTML text (language and zone from ``settings``)."""
    if settings is None:
        from shared.settings import get_settings

        settings = get_settings()
    words = wording(settings)
    run_dir = Path(record.run_dir or ".")
    folders = _linkable_folders(record, run_dir)
    counts: dict[str, int] = {}
    for item in items:
        counts[item.outcome] = counts.get(item.outcome, 0) + 1
    page = _environment().get_template("report.html.j2").render(
        run=record,
        t=words,
        status=words.run_status(record.status),
        error=words.run_error(record.error),
        started=local_time(record.started_at, zone_name=settings.timezone, seconds=True),
        finished=local_time(record.finished_at, zone_name=settings.timezone, seconds=True),
        params=[_field(name, value, run_dir, [], folders_too=True) for name, value in record.params.items()],
        items=[_report_item(item, run_dir, folders, words) for item in items],
        counts=[(outcome, words.outcome(outcome), count) for outcome, count in sorted(counts.items())],
        has_log=(run_dir / "log.txt").is_file(),
    )
    return redact(page)


def _report_item(item: ItemRecord, run_dir: Path, folders: list[Path], words: Wording) -> ReportItem:
    screenshots: list[str] = []
    links: list[tuple[str, str]] = []
    for relative in item.artifacts:
        path = run_dir / relative
        if path.suffix.lower() == ".png" and path.is_file() and item.outcome != "done":
            if path.stat().st_size <= MAX_INLINE_IMAGE_BYTES:
                screenshots.append(base64.b64encode(path.read_bytes()).decode("ascii"))
                continue
        links.append((_href(path, run_dir), path.name))
    return ReportItem(item, words.outcome(item.outcome), _output_fields(item.output, run_dir, folders, words),
                      screenshots, links)


def _output_fields(output: Any, run_dir: Path, folders: list[Path], words: Wording) -> list[ReportField]:
    """An item's output as fields: a mapping's entries, or one value."""
    if output is None or output == "" or output == {}:
        return []
    if isinstance(output, dict):
        return [_field(words.label("field", str(key)), value, run_dir, folders)
                for key, value in output.items()]
    return [_field(words("field.value"), output, run_dir, folders)]


def _field(
    label: str, value: Any, run_dir: Path, folders: list[Path], *, folders_too: bool = False
) -> ReportField:
    """A field; a text naming an existing file (as a path, or a name in ``folders``) links to it."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    target = _named_file(value, folders, folders_too) if isinstance(value, str) else None
    return ReportField(label, text, _href(target, run_dir) if target is not None else None)


def _named_file(text: str, folders: list[Path], folders_too: bool = False) -> Path | None:
    if not text.strip() or len(text) > MAX_LINKED_NAME or "\n" in text:
        return None
    named = Path(text)
    candidates = [named] if named.is_absolute() else [named, *(folder / named for folder in folders)]
    for candidate in candidates:
        try:
            if candidate.is_file() or (folders_too and candidate.is_dir()):
                return candidate.resolve()
        except OSError:  # a name too long for the file system, a folder we may not read
            continue
    return None


def _linkable_folders(record: RunRecord, run_dir: Path) -> list[Path]:
    """Where an output's file names are looked up: the run folder, its artifacts, folder parameters."""
    folders = [run_dir, run_dir / "artifacts"]
    for value in record.params.values():
        if isinstance(value, str) and value.strip() and len(value) <= 4096:
            folder = Path(value)
            try:
                if folder.is_dir():
                    folders.append(folder.resolve())
            except OSError:
                continue
    return folders


def _href(target: Path, run_dir: Path) -> str:
    """A link from the report (in ``run_dir``) to ``target``: relative when it can be."""
    try:
        relative = os.path.relpath(target.resolve(), run_dir.resolve())
    except ValueError:  # another drive (Windows)
        return target.resolve().as_uri()
    return quote(Path(relative).as_posix())


def write_report(store: Store, run_id: str, settings: Settings | None = None) -> Path:
    """Write ``report.html`` into the run's folder and return its path."""
    record = store.find_run(run_id)
    if record is None or not record.run_dir:
        from shared.errors import UsageError

        raise UsageError(f"no run with id {run_id!r} (see `kansli runs`)")
    destination = Path(record.run_dir) / "report.html"
    html = render_report(record, store.list_items(record.run_id), settings)
    with atomic_path(destination) as temporary:
        temporary.write_text(html, encoding="utf-8")
    return destination
