"""Small robots that exercise the runner: items, retries, failures, slowness."""

from __future__ import annotations

import os
import time
from pathlib import Path

from loguru import logger

from shared.errors import InputError, TargetError
from shared.items import WorkItem
from shared.registry import robot
from shared.runner import Run


@robot()
def counting(run: Run, count: int = 5, bad: str = "", flaky: str = "", marker: Path | None = None,
             pause: float = 0.0) -> None:
    """Count items; keys listed in ``bad`` are bad data, in ``flaky`` fail once then work."""
    bad_keys = {key for key in bad.split(",") if key}
    flaky_keys = {key for key in flaky.split(",") if key}

    def handle(item: WorkItem) -> dict[str, int]:
        if item.key in bad_keys:
            raise InputError(f"item {item.key}: bad data")
        if item.key in flaky_keys and item.attempt == 1:
            raise TargetError("the target answered 500")
        if marker is not None:
            with marker.open("a") as handle_file:
                handle_file.write(f"{item.key}\n")
        time.sleep(pause)
        logger.debug("handled {}", item.key)
        return {"value": int(item.key[1:]) * 2}

    run.process((WorkItem(key=f"k{n}", data=n, position=n) for n in range(count)), handle,
                total=count)


@robot()
def crashing(run: Run, message: str = "boom") -> None:
    """Fail at once with an unexpected error."""
    raise RuntimeError(message)


@robot()
def sleeper(run: Run, seconds: float = 30.0, ready: Path | None = None) -> None:
    """Sleep, so tests can see a running robot (lock, signals)."""
    if ready is not None:
        ready.write_text(str(os.getpid()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
