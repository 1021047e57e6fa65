"""Health checks for ``kansli doctor``: each says what is wrong and how to fix it."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared.errors import KansliError
from shared.settings import Settings, load_settings


@dataclass
class Check:
    """One check's verdict."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks() -> list[Check]:
    """Every check, in order; settings first, since the rest depend on them."""
    try:
        settings = load_settings()
    except KansliError as error:
        return [Check("settings", False, str(error), "correct the variable in .env or the environment")]
    return [
        Check("settings", True, "loaded"),
        check_directory("data dir", settings.data_dir, "KANSLI_DATA_DIR"),
        check_directory("log dir", settings.log_dir, "KANSLI_LOG_DIR"),
        check_database(settings),
        check_robots(settings),
        check_chromium(settings),
        *([check_workers(settings)] if settings.execution == "procrastinate" else []),
    ]


def check_directory(name: str, path: Path, variable: str) -> Check:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        return Check(name, False, f"{path} is not writable ({error.strerror})",
                     f"create it with write access, or set {variable}")
    return Check(name, True, str(path.resolve()))


def check_database(settings: Settings) -> Check:
    from shared.store import Store

    try:
        store = Store(settings.effective_database_url)
        store.list_runs(limit=1)
    except KansliError as error:
        return Check("database", False, str(error), "check KANSLI_DATABASE_URL and the server")
    return Check("database", True, settings.masked()["database_url"])


def check_robots(settings: Settings) -> Check:
    """The robots package imports and its robots are found (the robots are listed, not run)."""
    from shared.registry import discover

    try:
        found = discover(settings.robots_package)
    except KansliError as error:
        return Check("robots", False, str(error), "check KANSLI_ROBOTS_PACKAGE and the robot modules")
    names = ", ".join(found) or "none"
    return Check("robots", True, f"{len(found)} in package {settings.robots_package}: {names}")


def check_chromium(settings: Settings) -> Check:
    path = settings.browser.chromium_path()
    fix = "apt-get install chromium chromium-headless-shell, or set KANSLI_BROWSER__EXECUTABLE_PATH"
    if path is None or not path.exists():
        return Check("chromium", False, f"not found ({path or 'nothing on PATH'})", fix)
    try:
        version = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return Check("chromium", False, f"{path} does not start: {error}", fix)
    if not any(name in version for name in ("Chromium", "Chrome")):
        return Check("chromium", False, f"{path} is not Chromium (--version: {version[:80]!r})", fix)
    return Check("chromium", True, f"{version} at {path}")


def check_workers(settings: Settings) -> Check:
    """Several hosts: live workers, and no run job waiting for a robot that no live worker serves."""
    from shared.execution import waiting_jobs
    from shared.store import Store
    from shared.worker import live_workers

    try:
        store = Store(settings.effective_database_url)
        alive = live_workers(store, settings.cluster.heartbeat_timeout_s)
        waiting = waiting_jobs(store)
    except Exception as error:  # noqa: BLE001 - the database check above says more
        return Check("workers", False, f"cannot read the workers: {error}", "check KANSLI_DATABASE_URL")
    unserved = sorted({job["robot"] for job in waiting if not job["served"]})
    if unserved:
        count = sum(1 for job in waiting if not job["served"])
        return Check("workers", False, f"{count} run job(s) waiting for a robot no live worker serves: "
                     f"{', '.join(unserved)}", "start `kansli worker` on a host that has the robots' tags "
                     f"(kansli robots shows them), e.g. kansli worker --robots {','.join(unserved)}")
    hosts = sorted({worker.host for worker in alive})
    detail = f"{len(alive)} live worker(s) on {', '.join(hosts) or 'no host'}; {len(waiting)} job(s) waiting"
    return Check("workers", bool(alive), detail, "" if alive else "start `kansli worker` on a robot host")
