"""The processes of runs: the ``kansli run`` command line, the run the daemon watches, killing a tree.

Each run is a subprocess ``python -m shared.cli run ROBOT --param k=v ... --trigger
schedule:<id> --run-id <id>`` in its own session, so a crashing robot never takes the daemon
down (the workers of ``KANSLI_EXECUTION=procrastinate`` start theirs with the same command line). A
run that must stop (its timeout, the end of the stop grace) is stopped with its whole process tree:
SIGTERM, then SIGKILL for what is left after the kill grace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import psutil

from shared.redaction import redact
from shared.schedules import Schedule

STDERR_TAIL = 2000


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _living(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            continue
    return alive


def _signal_all(processes: list[psutil.Process], pgid: int, sig: signal.Signals) -> None:
    for process in processes:
        try:
            process.send_signal(sig)
        except psutil.Error:
            continue
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = _living(processes)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = _living(alive)
    return alive


def kill_process_tree(pid: int, grace: float) -> int:
    """SIGTERM a process, its descendants and its process group; SIGKILL what is left after ``grace``.

    Returns how many processes were found. Zombies count as gone.
    """
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    _signal_all(processes, pid, signal.SIGTERM)
    alive = _wait_gone(processes, grace)
    if alive:
        _signal_all(alive, pid, signal.SIGKILL)
        _wait_gone(alive, grace)
    return len(processes)


def run_command(schedule: Schedule, run_id: str) -> list[str]:
    """The ``kansli run`` command line of one run of ``schedule``."""
    return kansli_run_command(schedule.robot, run_id, f"schedule:{schedule.id}", schedule.params)


def kansli_run_command(
    robot: str, run_id: str, trigger: str, params: Mapping[str, Any], rerun_all: bool = False
) -> list[str]:
    """The ``kansli run`` command line of a run started by a daemon (scheduler or worker)."""
    command = [sys.executable, "-m", "shared.cli", "run", robot, "--json", "--trigger", trigger,
               "--run-id", run_id]
    if rerun_all:
        command.append("--rerun-all")
    for key, value in params.items():
        command += ["--param", f"{key}={_param_text(value)}"]
    return command


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@dataclass
class ChildRun:
    """A run the daemon started (or adopted after a restart) and watches."""

    run_id: str
    schedule: Schedule
    pid: int
    started: float
    process: subprocess.Popen[bytes] | None = None
    stderr: IO[bytes] | None = None

    def exited(self, wait: float) -> bool:
        if self.process is not None:
            try:
                self.process.wait(timeout=wait)
                return True
            except subprocess.TimeoutExpired:
                return False
        time.sleep(wait)
        return not _pid_alive(self.pid)

    def stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - STDERR_TAIL))
        return redact(self.stderr.read().decode("utf-8", "replace")).strip()
