"""The demo e-service's own case register: one SQLite file in WAL mode.

Every call opens its own connection, so the store is safe from any thread; case numbers are
handed out inside a ``BEGIN IMMEDIATE`` transaction, so concurrent submits never share one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

CASE_PREFIX = "KS"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_number TEXT NOT NULL UNIQUE,
    year INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    reference TEXT NOT NULL,
    applicant_name TEXT NOT NULL,
    personnummer TEXT NOT NULL,
    email TEXT NOT NULL,
    phone TEXT NOT NULL,
    address TEXT NOT NULL,
    postal_code TEXT NOT NULL,
    city TEXT NOT NULL,
    case_type TEXT NOT NULL,
    start_date TEXT NOT NULL,
    description TEXT NOT NULL,
    attachment_name TEXT,
    attachment_size INTEGER,
    UNIQUE (year, seq)
);
CREATE INDEX IF NOT EXISTS cases_reference ON cases (reference);
"""

CASE_FIELDS = (
    "reference",
    "applicant_name",
    "personnummer",
    "email",
    "phone",
    "address",
    "postal_code",
    "city",
    "case_type",
    "start_date",
    "description",
    "attachment_name",
    "attachment_size",
)
PUBLIC_FIELDS = ("case_number", "reference", "created_at", "applicant_name", "case_type")


def format_case_number(year: int, seq: int) -> str:
    """``KS-2026-000123``."""
    return f"{CASE_PREFIX}-{year}-{seq:06d}"


class CaseStore:
    """Cases submitted to the demo e-service."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        connection.row_factory = sqlite3.Row
        try:
            connection.execute("PRAGMA busy_timeout=30000")
            yield connection
        finally:
            connection.close()

    def add(self, values: Mapping[str, Any], now: datetime | None = None) -> str:
        """Store one case and return its new case number."""
        moment = now or datetime.now().astimezone()
        row = {name: values.get(name) for name in CASE_FIELDS}
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                number = self._insert(connection, moment, row)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        return number

    @staticmethod
    def _insert(connection: sqlite3.Connection, moment: datetime, row: dict[str, Any]) -> str:
        year = moment.year
        (last,) = connection.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM cases WHERE year = ?", (year,)
        ).fetchone()
        number = format_case_number(year, last + 1)
        columns = ("case_number", "year", "seq", "created_at", *CASE_FIELDS)
        params = (number, year, last + 1, moment.isoformat(timespec="seconds"), *row.values())
        marks = ", ".join("?" for _ in columns)
        connection.execute(f"INSERT INTO cases ({', '.join(columns)}) VALUES ({marks})", params)
        return number

    def get(self, case_number: str) -> dict[str, Any] | None:
        """One case with every field, or None."""
        with self._connect() as connection:
            row = connection.execute(
                "SELECT * FROM cases WHERE case_number = ?", (case_number,)
            ).fetchone()
        return dict(row) if row is not None else None

    def find_by_reference(self, reference: str) -> list[dict[str, Any]]:
        """Cases whose applicant reference is ``reference`` (exact, surrounding blanks ignored)."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT * FROM cases WHERE reference = ? ORDER BY id", (reference.strip(),)
            ).fetchall()
        return [dict(row) for row in rows]

    def all(self, public: bool = False) -> list[dict[str, Any]]:
        """Every case in submit order; ``public`` keeps only :data:`PUBLIC_FIELDS`."""
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM cases ORDER BY id").fetchall()
        if public:
            return [{name: row[name] for name in PUBLIC_FIELDS} for row in rows]
        return [dict(row) for row in rows]
