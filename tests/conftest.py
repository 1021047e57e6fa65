"""Shared fixtures: every test gets its own data and log dirs and its own SQLite database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings, load_settings, reset_settings

REPO = Path(__file__).resolve().parent.parent
KANSLI = [sys.executable, "-m", "shared.cli"]


@pytest.fixture(autouse=True)
def kansli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Isolate settings: a fresh working dir with data and log dirs, and no stray KANSLI_ vars."""
    for name in list(os.environ):
        if name.startswith("KANSLI_") and name != "KANSLI_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("KANSLI_DATA_DIR", str(work / "data"))
    monkeypatch.setenv("KANSLI_LOG_DIR", str(work / "log"))
    monkeypatch.setenv("KANSLI_RETRY__BACKOFF_INITIAL", "0.01")
    monkeypatch.setenv("KANSLI_RETRY__BACKOFF_MAX", "0.05")
    reset_settings()
    yield work
    reset_settings()


@pytest.fixture
def settings(kansli_env: Path) -> Settings:
    return load_settings()


@pytest.fixture
def sample_runner(settings: Settings):  # type: ignore[no-untyped-def]
    from shared.runner import Runner

    return Runner(settings, robots_package="tests.sample_robots")


def kansli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real ``kansli`` CLI in a subprocess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([*KANSLI, *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout)


# -- the demo e-service, for the browser tests ---------------------------------------------------

ESERVICE_USERNAME = "handlaggare"
ESERVICE_PASSWORD = "kanariefagel-lösen-4417"


@pytest.fixture
def eservice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The demo e-service on a free port with its own database; KANSLI_ESERVICE__* point at it.

    Its password is a canary (so tests can scan every file a run wrote for it); the browser's
    timeouts are short, so the site's "slow" answers run past them quickly.
    """
    from demo.site import RunningSite, SiteConfig

    config = SiteConfig(db_path=tmp_path / "eservice" / "eservice.db", username=ESERVICE_USERNAME,
                        password=ESERVICE_PASSWORD)
    with RunningSite(config) as site:
        monkeypatch.setenv("KANSLI_ESERVICE__URL", site.url)
        monkeypatch.setenv("KANSLI_ESERVICE__USERNAME", ESERVICE_USERNAME)
        monkeypatch.setenv("KANSLI_ESERVICE__PASSWORD", ESERVICE_PASSWORD)
        monkeypatch.setenv("KANSLI_BROWSER__TIMEOUT_MS", "2000")
        monkeypatch.setenv("KANSLI_BROWSER__NAVIGATION_TIMEOUT_MS", "2000")
        reset_settings()
        yield site
    reset_settings()


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
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
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
