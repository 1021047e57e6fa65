"""The exactly-once invariant under a register's life and crashes, property-based (hypothesis, stateful).

A register is appended to, re-sorted, renamed, moved and edited; runs of a real robot keying it
into a case system (a SQLite file) go through the real CLI in subprocesses, some SIGKILLed at the
framework's crash points. After every run: no key is in the case system twice. After every run that
was not killed: every valid key of every row ever seen is there exactly once, and every invalid row
of the register is a business error of that run.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from openpyxl import Workbook

from shared.store import open_store
from tests.conftest import kansli

pytestmark = pytest.mark.slow
ENV = {"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots", "KANSLI_RETRY__BACKOFF_INITIAL": "0.01"}
HEADER = ("Referens", "Belopp", "Anteckning")


class RegisterLife(RuleBasedStateMachine):
    """One register over its life; ``work`` is the test's working directory (set per example)."""

    work: Path
    examples = 0

    @initialize()
    def start(self) -> None:
        RegisterLife.examples += 1
        self.root = self.work / f"example-{RegisterLife.examples}"
        (self.root / "a").mkdir(parents=True)
        self.path = self.root / "a" / "register.xlsx"
        self.cases = self.root / "cases.db"
        self.rows: list[list[object]] = []
        self.valid: set[str] = set()
        self.next = 0
        self.env = {**ENV, "KANSLI_DATA_DIR": str(self.root / "data"),
                    "KANSLI_LOG_DIR": str(self.root / "log")}
        self.append_rows(3, bad=True)

    def save(self) -> None:
        workbook = Workbook()
        sheet = workbook.active
        assert sheet is not None
        sheet.append(HEADER)
        for row in self.rows:
            sheet.append(row)
        workbook.save(self.path)

    @rule(count=st.integers(1, 4), bad=st.booleans())
    def append_rows(self, count: int, bad: bool) -> None:
        for index in range(count):
            key = f"R-{self.next:04d}"
            self.next += 1
            invalid = bad and index == 0
            self.rows.append([key, -5 if invalid else 100 + self.next, None])
            if not invalid:
                self.valid.add(key)
        self.save()

    @rule(seed=st.integers(0, 1000))
    @precondition(lambda self: len(self.rows) > 1)
    def shuffle(self, seed: int) -> None:
        random.Random(seed).shuffle(self.rows)
        self.save()

    @rule(folder=st.sampled_from(["a", "b", "c"]), name=st.sampled_from(["register", "kopia", "ärenden"]))
    def move(self, folder: str, name: str) -> None:
        target = self.root / folder / f"{name}.xlsx"
        target.parent.mkdir(exist_ok=True)
        self.path.rename(target)
        self.path = target

    @rule(index=st.integers(0, 50), note=st.text("abcåäö ", min_size=1, max_size=8))
    @precondition(lambda self: bool(self.rows))
    def edit_note(self, index: int, note: str) -> None:
        self.rows[index % len(self.rows)][2] = note
        self.save()

    @rule(crash=st.sampled_from([None, "submitted:1", "submitted:2", "item.recorded:1"]))
    def run(self, crash: str | None) -> None:
        """A run, maybe killed at a crash point; a killed run is followed by one that is not."""
        if self.run_once(crash):
            assert not self.run_once(None)

    def run_once(self, crash: str | None) -> bool:
        env = {**self.env, **({"KANSLI_TEST_CRASH_AT": crash} if crash else {})}
        result = kansli("run", "keyed_register", "-p", f"input={self.path}", "-p", f"cases={self.cases}",
                        cwd=self.root, env=env)
        killed = result.returncode == -9
        assert killed or result.returncode in (0, 3), result.stdout + result.stderr
        if not killed:
            self.check_complete()
        return killed

    def submitted(self) -> Counter[str]:
        if not self.cases.exists():
            return Counter()
        with sqlite3.connect(self.cases) as connection:
            return Counter(key for (key,) in connection.execute("SELECT referens FROM cases"))

    @invariant()
    def never_twice(self) -> None:
        if hasattr(self, "cases"):
            assert all(count == 1 for count in self.submitted().values()), self.submitted()

    def check_complete(self) -> None:
        assert set(self.submitted()) == self.valid
        store = open_store(f"sqlite:///{(self.root / 'data' / 'kansli.db').resolve()}")
        [last] = store.list_runs(robot="keyed_register", limit=1)
        outcomes = {item.key: item.outcome for item in store.list_items(last.run_id)}
        for key, _, _ in self.rows:
            expected = ("done", "skipped") if key in self.valid else ("business_error",)
            assert outcomes[str(key)] in expected, (key, outcomes)


def test_every_valid_key_is_submitted_exactly_once_whatever_happens(tmp_path: Path) -> None:
    RegisterLife.work = tmp_path
    machine = RegisterLife.TestCase
    machine.settings = settings(max_examples=5, stateful_step_count=7, deadline=None,
                                suppress_health_check=list(HealthCheck))
    machine().runTest()
