"""Pytest fixtures for testing robots: a pytest plugin, registered by installing kansli.

Installing kansli registers this module with pytest (the ``pytest11`` entry point ``kansli``), so a
robot repo's tests get these fixtures without importing anything:

* ``kansli_env``: a fresh working directory with its own data dir, log dir and SQLite run history,
  no stray ``KANSLI_*`` variables, and short retry backoffs. Request it, or make it apply to every
  test with an autouse fixture in your ``conftest.py``::

      @pytest.fixture(autouse=True)
      def isolated(kansli_env: Path) -> Path:
          return kansli_env

* ``settings``: the settings loaded in that environment;
* ``eservice``: the demo e-service on a free port of 127.0.0.1 with its own database, with
  ``KANSLI_ESERVICE__*`` pointing at it and short browser timeouts.

And a helper, :func:`kansli`, that runs the real ``kansli`` CLI in a subprocess.

A robot repo whose robots live in a package of its own names it in its pytest configuration
(``kansli_robots_package = "exempelby_robots"`` under ``[tool.pytest.ini_options]``); ``kansli_env``
then sets ``KANSLI_ROBOTS_PACKAGE`` to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings, load_settings, reset_settings

#: The ``kansli`` CLI as a command line: this Python, ``-m shared.cli``.
KANSLI = [sys.executable, "-m", "shared.cli"]
#: The ``eservice`` fixture's login (the password is a canary a test can scan written files for).
ESERVICE_USERNAME = "handlaggare"
ESERVICE_PASSWORD = "kanariefagel-lösen-4417"
#: Kept by ``kansli_env``: where the tests' PostgreSQL is.
KEPT_VARIABLES = frozenset({"KANSLI_TEST_POSTGRES_URL"})
ROBOTS_PACKAGE_INI = "kansli_robots_package"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``kansli_robots_package`` ini option."""
    parser.addini(ROBOTS_PACKAGE_INI, "the package of the robots under test (KANSLI_ROBOTS_PACKAGE "
                                      "in kansli_env); default: robots", default="")


def isolate(work: Path, monkeypatch: pytest.MonkeyPatch, robots_package: str = "") -> Path:
    """Make ``work`` the working directory of a Kansli of its own (what ``kansli_env`` does)."""
    for name in list(os.environ):
        if name.startswith("KANSLI_") and name not in KEPT_VARIABLES:
            monkeypatch.delenv(name)
    work.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("KANSLI_DATA_DIR", str(work / "data"))
    monkeypatch.setenv("KANSLI_LOG_DIR", str(work / "log"))
    monkeypatch.setenv("KANSLI_RETRY__BACKOFF_INITIAL", "0.01")
    monkeypatch.setenv("KANSLI_RETRY__BACKOFF_MAX", "0.05")
    if robots_package:
        monkeypatch.setenv("KANSLI_ROBOTS_PACKAGE", robots_package)
    reset_settings()
    return work


def robots_package_of(config: pytest.Config) -> str:
    """The ``kansli_robots_package`` ini option, or ``""`` when unset (or this plugin is not loaded)."""
    try:
        return str(config.getini(ROBOTS_PACKAGE_INI) or "")
    except ValueError:
        return ""


@pytest.fixture
def kansli_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """Isolate settings: a fresh working dir with data and log dirs, and no stray KANSLI_ vars."""
    yield isolate(tmp_path / "work", monkeypatch, robots_package_of(request.config))
    reset_settings()


@pytest.fixture
def settings(kansli_env: Path) -> Settings:
    """The settings of the test's isolated environment."""
    return load_settings()


def kansli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real ``kansli`` CLI in a subprocess; it can import what this test process imports."""
    full_env = {**os.environ, "PYTHONPATH": import_path(), **(env or {})}
    return subprocess.run([*KANSLI, *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout)


def import_path() -> str:
    """``PYTHONPATH`` for a subprocess: the project folders on this process's ``sys.path``.

    Those are the test's rootdir and ``pythonpath`` entries (where the robots are), not the
    interpreter's own folders, which the subprocess finds by itself.
    """
    system = {Path(prefix).resolve() for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    folders: list[str] = []
    for entry in sys.path:
        if not entry or not Path(entry).is_dir():
            continue
        resolved = Path(entry).resolve()
        if any(resolved == prefix or prefix in resolved.parents for prefix in system):
            continue
        if str(resolved) not in folders:
            folders.append(str(resolved))
    return os.pathsep.join(folders)


@pytest.fixture
def eservice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The demo e-service on a free port with its own database; KANSLI_ESERVICE__* point at it.

    Its password is a canary (so tests can scan every file a run wrote for it); the browser's
    timeouts are short, so the site's "slow" answers run past them quickly.
    """
    with running_eservice(tmp_path / "eservice", monkeypatch) as site:
        yield site


@contextmanager
def running_eservice(folder: Path, monkeypatch: pytest.MonkeyPatch, faults: Any = None) -> Iterator[Any]:
    """The demo e-service with its database in ``folder`` (and ``faults`` from its first request,
    a :class:`demo.site.FaultConfig`), the settings pointed at it; as the ``eservice`` fixture."""
    from demo.site import FaultConfig, RunningSite, SiteConfig

    config = SiteConfig(db_path=folder / "eservice.db", username=ESERVICE_USERNAME,
                        password=ESERVICE_PASSWORD, faults=faults or FaultConfig())
    with RunningSite(config) as site:
        monkeypatch.setenv("KANSLI_ESERVICE__URL", site.url)
        monkeypatch.setenv("KANSLI_ESERVICE__USERNAME", ESERVICE_USERNAME)
        monkeypatch.setenv("KANSLI_ESERVICE__PASSWORD", ESERVICE_PASSWORD)
        monkeypatch.setenv("KANSLI_BROWSER__TIMEOUT_MS", "2000")
        monkeypatch.setenv("KANSLI_BROWSER__NAVIGATION_TIMEOUT_MS", "2000")
        reset_settings()
        yield site
    reset_settings()
