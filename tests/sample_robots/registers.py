"""A robot keying a register into a small case system of its own (a SQLite file): for crash tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pydantic import BaseModel, Field

from shared.errors import InputError
from shared.excel import Row, read_rows, row_items
from shared.items import WorkItem, crash_point
from shared.registry import robot
from shared.runner import Run


class Case(BaseModel):
    referens: str = Field(alias="Referens", min_length=1)
    belopp: int = Field(alias="Belopp", ge=0)
    anteckning: str | None = Field(default=None, alias="Anteckning")


def case_system(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("CREATE TABLE IF NOT EXISTS cases (number INTEGER PRIMARY KEY, referens TEXT)")
    return connection


@robot(side_effects=True)
def keyed_register(run: Run, input: Path, cases: Path) -> None:
    """Key each row of a register into the case system once; look a row up before any retry."""
    rows = list(read_rows(input, Case))

    def submit(item: WorkItem) -> int:
        row: Row[Case] = item.data
        if row.model is None:
            raise InputError(row.error or "invalid")
        with case_system(cases) as connection:
            number = connection.execute("INSERT INTO cases (referens) VALUES (?)",
                                        (row.model.referens,)).lastrowid
        crash_point("submitted")
        return int(number or 0)

    def already_submitted(item: WorkItem) -> int | None:
        with case_system(cases) as connection:
            found = connection.execute("SELECT number FROM cases WHERE referens = ?", (item.key,)).fetchone()
        return int(found[0]) if found else None

    run.process(row_items(rows, "Referens", input), submit, reconcile=already_submitted, total=len(rows))
