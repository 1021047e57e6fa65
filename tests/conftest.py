"""Shared fixtures: every test gets its own data and log dirs and its own SQLite database.

The reusable ones (``settings``, ``eservice``, the ``kansli()`` CLI helper, ``kansli_env``'s
isolation) live in the pytest plugin :mod:`shared.testing` that robot repos get by installing kansli;
they are imported here too, so ``from tests.conftest import kansli, REPO, ...`` keeps working.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings, load_settings, reset_settings
from shared.testing import (  # noqa: F401 - fixtures and helpers re-exported for the suite
    ESERVICE_PASSWORD,
    ESERVICE_USERNAME,
    KANSLI,
    eservice,
    isolate,
    kansli,
    settings,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def kansli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Isolate settings for every test of the suite: a fresh working dir, no stray KANSLI_ vars."""
    yield isolate(tmp_path / "work", monkeypatch)
    reset_settings()


@pytest.fixture
def sample_runner(settings: Settings):  # type: ignore[no-untyped-def]  # noqa: F811 - the fixture
    from shared.runner import Runner

    return Runner(settings, robots_package="tests.sample_robots")


# -- a database of its own on the real PostgreSQL, for tests that need a clean one ----------------


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The run history on SQLite (the data dir's), or on a fresh PostgreSQL database of its own.

    KANSLI_DATABASE_URL is set for the test's processes; the PostgreSQL database is dropped after.
    """
    if request.param == "sqlite":
        yield load_settings().effective_database_url
        return
    base = os.environ.get("KANSLI_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("KANSLI_TEST_POSTGRES_URL is not set: PostgreSQL not tested")
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"kansli_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # a test may restart it
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("KANSLI_DATABASE_URL", url)
    reset_settings()
    try:
        yield url
    finally:
        from shared import store as store_module

        engine = store_module._engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        reset_settings()
