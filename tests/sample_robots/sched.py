"""Robots for the scheduler's tests: a quick one that notes each run, and one that spawns a child."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from shared.registry import robot
from shared.runner import Run


@robot()
def ticker(run: Run, marker: Path | None = None, pause: float = 0.0, release: Path | None = None) -> None:
    """Append the run id and the time to ``marker``, then sleep ``pause`` seconds (ended early once
    the file ``release`` exists, so a test decides when the run ends)."""
    if marker is not None:
        with marker.open("a", encoding="utf-8") as out:
            out.write(f"{run.run_id} {datetime.now(UTC).isoformat()} {os.getpid()}\n")
    deadline = time.monotonic() + pause
    while time.monotonic() < deadline and not (release is not None and release.exists()):
        time.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))


@robot()
def spawner(run: Run, child_pid_file: Path, seconds: float = 60.0) -> None:
    """Start a ``sleep`` child process, write its pid to ``child_pid_file`` and wait for it."""
    child = subprocess.Popen(["sleep", str(seconds)])
    partial = child_pid_file.with_name(child_pid_file.name + ".partial")  # whole, then renamed
    partial.write_text(f"{os.getpid()} {child.pid}")
    partial.replace(child_pid_file)
    child.wait()
