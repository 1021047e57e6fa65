"""The HTML run report: one self-contained page per run (``<run folder>/report.html``).

Header (robot, parameters, actor, trigger, times, status), the items with outcome and error, filters
by outcome, screenshots of failed items inline, links to the log and traces. Everything shown went
through the redaction policy when it was recorded; the page is redacted once more on the way out.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from shared.files import atomic_path
from shared.redaction import redact
from shared.store import ItemRecord, RunRecord, Store

OUTCOME_LABELS = {
    "done": "klar", "skipped": "klar sedan tidigare", "business_error": "fel i data",
    "app_error": "tekniskt fel", "in_progress": "avbruten",
}
MAX_INLINE_IMAGE_BYTES = 4 * 2**20


@dataclass
class ReportItem:
    """An item as the report shows it."""

    record: ItemRecord
    output: str
    screenshots: list[str]
    links: list[tuple[str, str]]


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("shared", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(record: RunRecord, items: list[ItemRecord]) -> str:
    """The report page of one run, as HTML text."""
    run_dir = Path(record.run_dir or ".")
    counts: dict[str, int] = {}
    for item in items:
        counts[item.outcome] = counts.get(item.outcome, 0) + 1
    page = _environment().get_template("report.html.j2").render(
        run=record,
        params=json.dumps(record.params, ensure_ascii=False, indent=1),
        items=[_report_item(item, run_dir) for item in items],
        counts=counts,
        labels=OUTCOME_LABELS,
        has_log=(run_dir / "log.txt").is_file(),
    )
    return redact(page)


def _report_item(item: ItemRecord, run_dir: Path) -> ReportItem:
    screenshots: list[str] = []
    links: list[tuple[str, str]] = []
    for relative in item.artifacts:
        path = run_dir / relative
        if path.suffix.lower() == ".png" and path.is_file() and item.outcome != "done":
            if path.stat().st_size <= MAX_INLINE_IMAGE_BYTES:
                screenshots.append(base64.b64encode(path.read_bytes()).decode("ascii"))
                continue
        links.append((relative, path.name))
    output = "" if item.output is None else json.dumps(item.output, ensure_ascii=False)
    return ReportItem(item, output, screenshots, links)


def write_report(store: Store, run_id: str) -> Path:
    """Write ``report.html`` into the run's folder and return its path."""
    record = store.find_run(run_id)
    if record is None or not record.run_dir:
        from shared.errors import UsageError

        raise UsageError(f"no run with id {run_id!r} (see `kansli runs`)")
    destination = Path(record.run_dir) / "report.html"
    html = render_report(record, store.list_items(record.run_id))
    with atomic_path(destination) as temporary:
        temporary.write_text(html, encoding="utf-8")
    return destination
