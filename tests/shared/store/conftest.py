"""Fixtures of the store's tests: the run history on SQLite and (when KANSLI_TEST_POSTGRES_URL is set)
on PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get("KANSLI_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    if not POSTGRES_URL:
        pytest.skip("KANSLI_TEST_POSTGRES_URL is not set: PostgreSQL store tests not run")
    return POSTGRES_URL
