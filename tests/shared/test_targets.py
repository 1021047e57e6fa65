"""Per-target session limits over processes and hosts, on PostgreSQL (advisory locks) and SQLite (files)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.errors import TargetUnavailableError
from shared.settings import load_settings
from shared.store import open_store
from shared.targets import TargetLimit, target_limit, target_session
from shared.testing import import_path

#: A process holding one session of target ``eservice`` until told to let go (file ``release-NAME``).
HOLDER = """
import sys, time
from pathlib import Path
from loguru import logger
from shared.settings import load_settings
from shared.store import open_store
from shared.targets import target_session

name, trace, folder = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

def write(line):
    with trace.open("a", encoding="utf-8") as out:  # one short appended line: not interleaved
        out.write(line + "\\n")

logger.remove()
logger.add(lambda message: write(f"log {name} {message.record['message']}"), level="INFO")
settings = load_settings()
store = open_store(settings.effective_database_url)
with target_session(settings, store, "eservice") as slot:
    write(f"enter {name} {slot} {time.time_ns()}")
    while not (folder / f"release-{name}").exists():
        time.sleep(0.01)
    write(f"exit {name} {slot} {time.time_ns()}")
"""


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Holders:
    """Holder processes and the trace of what they did (``enter``/``exit``/``log`` lines)."""

    def __init__(self, folder: Path, max_sessions: int) -> None:
        self.folder = folder
        self.trace = folder / "trace.txt"
        self.script = folder / "holder.py"
        self.script.write_text(HOLDER, encoding="utf-8")
        self.env = {**os.environ, "PYTHONPATH": import_path(),
                    "KANSLI_TARGETS__ESERVICE__MAX_SESSIONS": str(max_sessions)}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        self.processes[name] = subprocess.Popen([sys.executable, str(self.script), name, str(self.trace),
                                                 str(self.folder)], env=self.env)

    def lines(self, kind: str) -> list[list[str]]:
        text = self.trace.read_text(encoding="utf-8") if self.trace.exists() else ""
        return [line.split(" ") for line in text.splitlines() if line.startswith(kind + " ")]

    def entered(self) -> list[str]:
        return [line[1] for line in self.lines("enter")]

    def waiting(self) -> set[str]:
        return {line[1] for line in self.lines("log") if "waiting for a free session" in " ".join(line)}

    def release(self, name: str) -> None:
        (self.folder / f"release-{name}").touch()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture
def holders(tmp_path: Path, database_url: str) -> Iterator[Callable[[int], Holders]]:
    made: list[Holders] = []

    def make(max_sessions: int) -> Holders:
        made.append(Holders(tmp_path, max_sessions))
        return made[-1]

    yield make
    for each in made:
        each.stop()


def most_at_once(trace: list[list[str]]) -> int:
    """The most sessions held at one instant, from the enter/exit time stamps."""
    events = sorted((int(line[3]), 1 if line[0] == "enter" else -1) for line in trace)
    held = peak = 0
    for _, change in events:
        held += change
        peak = max(peak, held)
    return peak


def test_five_processes_on_three_slots_never_hold_more_than_three(holders: Callable[[int], Holders]) -> None:
    group = holders(3)
    names = [f"p{number}" for number in range(5)]
    for name in names:
        group.start(name)
    wait_until(lambda: len(group.entered()) == 3 and len(group.waiting()) == 2, "3 holders and 2 waiting")
    assert group.waiting().isdisjoint(group.entered())
    for released in range(1, 6):  # let go one at a time, oldest first: each frees a slot for a waiter
        group.release(group.entered()[released - 1])

        def freed(released: int = released) -> bool:
            return len(group.lines("exit")) == released and len(group.entered()) == min(5, 3 + released)

        wait_until(freed, f"release {released}")
    for process in group.processes.values():
        assert process.wait(timeout=60) == 0
    trace = group.lines("enter") + group.lines("exit")
    assert most_at_once(trace) == 3
    assert sorted(group.entered()) == names
    assert {line[2] for line in group.lines("enter")} == {"0", "1", "2"}


def test_a_killed_holder_frees_its_slot(holders: Callable[[int], Holders]) -> None:
    group = holders(1)
    group.start("killed")
    wait_until(lambda: group.entered() == ["killed"], "the first holder")
    group.start("next")
    wait_until(lambda: group.waiting() == {"next"}, "the second holder waiting")
    group.processes["killed"].send_signal(signal.SIGKILL)
    assert group.processes["killed"].wait(timeout=30) == -signal.SIGKILL
    wait_until(lambda: group.entered() == ["killed", "next"], "the slot of the killed holder")
    group.release("next")
    assert group.processes["next"].wait(timeout=60) == 0


def limit_of(max_sessions: int, monkeypatch: pytest.MonkeyPatch, **env: str) -> TargetLimit:
    monkeypatch.setenv("KANSLI_TARGETS__ESERVICE__MAX_SESSIONS", str(max_sessions))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    limit = target_limit(settings, open_store(settings.effective_database_url), "eservice")
    assert limit is not None
    return limit


def test_no_free_session_within_the_wait_names_the_target(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = limit_of(1, monkeypatch, KANSLI_TARGETS__ESERVICE__WAIT_S="0.3")
    other = limit_of(1, monkeypatch, KANSLI_TARGETS__ESERVICE__WAIT_S="0.3")
    slot = holder.take()
    assert other.try_take() is None and other.in_use() == holder.in_use() == 1
    with pytest.raises(TargetUnavailableError, match=r"no free session on target eservice within 0.3 s \(1 "):
        other.take()
    holder.release(slot)
    assert other.in_use() == 0
    with target_session(load_settings(), open_store(database_url), "eservice") as again:
        assert again == 0 and holder.in_use() == 1
    assert holder.in_use() == 0


def test_no_limit_takes_nothing(database_url: str, kansli_env: Path) -> None:
    settings = load_settings()
    store = open_store(settings.effective_database_url)
    assert target_limit(settings, store, "eservice") is None
    with target_session(settings, store, "eservice") as slot:
        assert slot is None
    assert not settings.locks_dir.exists() or not list(settings.locks_dir.iterdir())


def test_a_slot_taken_after_its_waiter_was_cancelled_is_given_back(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, waiter = limit_of(1, monkeypatch), limit_of(1, monkeypatch)

    async def main() -> None:
        trying = asyncio.ensure_future(waiter.try_take_async())
        await asyncio.sleep(0)  # its try runs in a thread now, and will get the free slot
        trying.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trying
        await asyncio.get_running_loop().shutdown_default_executor()  # the try has ended, its callbacks run

    asyncio.run(main())
    assert holder.in_use() == 0, "the cancelled waiter kept the slot"


# -- the browser pool: a robot's browser contexts hold the slots --------------------------------


@pytest.mark.browser
def test_a_pools_contexts_hold_slots_and_join_when_one_frees(
    eservice: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robots.intake_forms import log_in
    from shared.browser import BrowserPool, goto, open_browser

    outside = limit_of(2, monkeypatch)
    slot = outside.take()  # another host's session
    settings = load_settings()
    limit = target_limit(settings, open_store(database_url), "eservice")

    async def main() -> tuple[int, int, int, int]:
        async with open_browser(settings.browser) as browser, BrowserPool(
            browser, settings.browser, login=lambda page: log_in(page, settings.eservice), size=3,
            retry=settings.retry, limit=limit,
        ) as pool:
            at_start, held = pool.in_use, outside.in_use()
            outside.release(slot)
            deadline = asyncio.get_running_loop().time() + 60
            while pool.in_use < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            async with pool.session() as first, pool.session() as second:
                await asyncio.gather(*(goto(page, f"{settings.eservice.url}/ansokan/steg1")
                                       for page in (first, second)))
            return at_start, held, pool.in_use, outside.in_use()

    at_start, held, later, held_later = asyncio.run(main())
    assert (at_start, held) == (1, 2), "the pool took more sessions than were free"
    assert (later, held_later) == (2, 2), "the third context took a session over the limit"
    assert outside.in_use() == 0, "the pool did not give its sessions back"


@pytest.mark.browser
def test_a_robot_waits_for_a_free_session_on_its_target(
    eservice: Any, database_url: str, kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.robots.test_intake_forms import one_case_per_valid_row, register

    rows = [2, 3, 4]
    source = register(kansli_env / "inkomna.xlsx", rows)
    other_host = limit_of(1, monkeypatch)
    slot = other_host.take()
    env = {**os.environ, "PYTHONPATH": import_path()}
    command = [sys.executable, "-m", "shared.cli", "run", "intake_forms", "-p", f"input={source}",
               "-p", f"output_dir={kansli_env / 'ut'}", "-p", "workers=2"]
    process = subprocess.Popen(command, cwd=kansli_env, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        runs = load_settings().runs_dir

        def run_log() -> str:
            return "".join(path.read_text(encoding="utf-8") for path in runs.glob("*/log.txt"))

        wait_until(lambda: "waiting for a free session on target eservice (1 of 1 in use)" in run_log(),
                   "the run waiting for the session")
        assert process.poll() is None and not eservice.cases()
        other_host.release(slot)
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    one_case_per_valid_row(eservice, rows)
    log = run_log()
    assert "got a session on target eservice" in log
    assert "browser context 2 waits for a free session on target eservice" in log
    assert other_host.in_use() == 0
