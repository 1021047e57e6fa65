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
def sleeper(run: Run, seconds: float = 30.0, ready: Path | None = None, release: Path | None = None) -> None:
    """Sleep, so tests can see a running robot (lock, signals); ended early once ``release`` exists."""
    if ready is not None:  # written whole, then renamed: a test that sees the file can read the pid
        partial = ready.with_name(ready.name + ".partial")
        partial.write_text(str(os.getpid()))
        partial.replace(ready)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (release is not None and release.exists()):
        time.sleep(0.05)


# A 1x1 PNG, standing in for a screenshot of a failed item.
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d494441"
    "54789c63f8cfc0f01f00050001ff89993d1d0000000049454e44ae426082"
)


@robot()
def evidence(run: Run, count: int = 4, bad: str = "k1", broken: str = "k2") -> None:
    """Items that fail leave a screenshot in the run's artifacts (for the report)."""
    bad_keys, broken_keys = set(bad.split(",")), set(broken.split(","))

    def handle(item: WorkItem) -> str:
        if item.key in bad_keys | broken_keys:
            shot = run.artifacts_dir / f"{item.key}.png"
            shot.write_bytes(PIXEL_PNG)
            item.artifacts.append(f"artifacts/{shot.name}")
        if item.key in bad_keys:
            raise InputError(f"item {item.key}: Personnummer 811218-9876 saknar kontrollsiffra")
        if item.key in broken_keys:
            raise TargetError("the target answered 500")
        return f"KS-2026-{item.position:06d}"

    run.process((WorkItem(key=f"k{n}", position=n) for n in range(count)), handle, total=count)


@robot()
def producer(run: Run, count: int = 5, start: int = 0, queue: str = "inbox") -> None:
    """Give work to the consumer: ``count`` keys into ``queue``."""
    for n in range(start, start + count):
        run.enqueue(queue, f"m{n}", {"number": n, "text": f"ärende {n}"}, source="producer")


@robot()
def consumer(run: Run, fail: str = "", marker: Path | None = None, queue: str = "inbox",
             limit: int | None = None) -> None:
    """Do the ready items of ``queue``; keys in ``fail`` fail as the target would (down)."""
    failing = {key for key in fail.split(",") if key}

    def handle(item: WorkItem) -> dict[str, int]:
        if item.key in failing or "*" in failing:
            raise TargetError("the target answered 503")
        if marker is not None:
            with marker.open("a") as handle_file:
                handle_file.write(f"{item.key}\n")
        return {"double": item.data["number"] * 2}

    run.consume(handle, queue=queue, limit=limit)
