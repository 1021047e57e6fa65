"""A consumer whose handler only waits, as a robot waits on a slow target system (no CPU)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shared.items import WorkItem
from shared.registry import robot
from shared.runner import Run


@robot(parallel=True)
def scale_consumer(run: Run, queue: str = "scale", delay: float = 0.2, log: Path | None = None) -> None:
    """Take the ready items of ``queue``, waiting ``delay`` seconds on each. Runs of it may overlap,
    on one host or several, and share the queue's items. With ``log``, each item appends
    ``<host> <run id> <robot start> <handler start>`` (``time.time()``) to it."""
    host = os.environ.get("KANSLI_HOST_ID", "local")
    started = time.time()

    def wait(item: WorkItem) -> None:
        if log is not None:
            with log.open("a", encoding="utf-8") as handle:
                handle.write(f"{host} {run.run_id} {started:.6f} {time.time():.6f}\n")
        time.sleep(delay)

    run.consume(wait, queue=queue)
