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
