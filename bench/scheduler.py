"""Scheduler benchmark: sync time and memory with 1,000 schedules, trigger latency, ``kansli --help``.

Run from the repository root: ``.venv/bin/python bench/scheduler.py [--quick]``. Everything happens in
a temporary folder with its own SQLite database; the test robots (``tests.sample_robots``) are used.

* sync: read and validate 1,000 schedule files' entries and sync them into the job store (first start,
  then a restart with nothing changed), in process, through the daemon's own code;
* memory: peak RSS (VmHWM) of a real ``kansli scheduler`` process holding 1,000 schedules;
* latency: planned fire time -> ``Popen`` returned, for a real daemon firing once a second (three
  ``every = "3s"`` schedules, staggered by one second, so each run has time to end), against a bare
  APScheduler job (same job store type, SQLite) that starts ``python -c pass``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ROBOTS_PACKAGE = "tests.sample_robots"
LATE = re.compile(r"late by ([0-9.]+) ms")


def environment(work: Path, schedules: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("KANSLI_")}
    env.update({"PYTHONPATH": str(REPO), "KANSLI_DATA_DIR": str(work / "data"),
                "KANSLI_LOG_DIR": str(work / "log"), "KANSLI_SCHEDULES_DIR": str(schedules),
                "KANSLI_ROBOTS_PACKAGE": ROBOTS_PACKAGE})
    return env


def write_many(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    per_file = 100
    for start in range(0, count, per_file):
        blocks = []
        for number in range(start, min(count, start + per_file)):
            trigger = f'cron = "{number % 60} {number % 24} * * *"' if number % 2 else 'every = "1h"'
            blocks.append(f'[[schedule]]\nid = "s{number:04d}"\nrobot = "ticker"\n{trigger}\n'
                          f'params = {{ pause = 0 }}\ntimeout = "10m"\nmisfire_grace = "5m"\n')
        (folder / f"many-{start // per_file:02d}.toml").write_text("\n".join(blocks))


def timed_sync(env: dict[str, str]) -> float:
    """Seconds to load, validate and sync the schedules into the job store, through Daemon."""
    os.environ.update(env)
    from apscheduler.events import EVENT_SCHEDULER_STARTED

    from shared.registry import discover
    from shared.scheduler import Daemon, DaemonOptions
    from shared.schedules import load_schedules, require_valid
    from shared.settings import load_settings
    from shared.store import Store

    settings = load_settings()
    store = Store(settings.effective_database_url)
    began = time.perf_counter()
    loaded = load_schedules(settings.schedules_dir, discover(settings.robots_package))
    require_valid(loaded)
    daemon = Daemon(settings, store, DaemonOptions())
    daemon.schedules = loaded.by_id()
    synced = threading.Event()
    daemon.scheduler.add_listener(lambda _event: synced.set(), EVENT_SCHEDULER_STARTED)  # after sync
    thread = threading.Thread(target=daemon.scheduler.start, daemon=True)
    thread.start()
    synced.wait(120)
    elapsed = time.perf_counter() - began
    daemon.scheduler.shutdown(wait=False)
    thread.join(10)
    return elapsed


def start_daemon(env: dict[str, str], work: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "shared.cli", "scheduler", "--stop-grace", "5"],
                            env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def wait_for_text(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{text!r} not in {log} after {timeout}s:\n{log.read_text(errors='replace')}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def daemon_memory(env: dict[str, str], work: Path) -> tuple[float, float]:
    """Peak RSS (MB) of a daemon with the 1,000 schedules, and its time from exec to started."""
    log = work / "memory.log"
    began = time.perf_counter()
    daemon = start_daemon(env, work, log)
    wait_for_text(log, "scheduler started", 120)
    startup = time.perf_counter() - began
    time.sleep(3)
    peak = peak_rss_mb(daemon.pid)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(60)
    return peak, startup


def daemon_latency(work: Path, fires: int) -> list[float]:
    """Lateness (ms) of planned fire -> subprocess started, for ``fires`` fires one second apart."""
    folder = work / "latency-schedules"
    folder.mkdir()
    first = (datetime.now().astimezone() + timedelta(seconds=8)).replace(microsecond=0)
    blocks = [f'[[schedule]]\nid = "lat{n}"\nrobot = "ticker"\nevery = "3s"\n'
              f'start = "{(first + timedelta(seconds=n)).isoformat()}"\nmisfire_grace = "30s"\n'
              for n in range(3)]
    (folder / "latency.toml").write_text("\n".join(blocks))
    env = environment(work / "latency", folder)
    (work / "latency").mkdir()
    log = work / "latency.log"
    daemon = start_daemon(env, work / "latency", log)
    try:
        deadline = time.monotonic() + fires * 3 + 60
        while len(LATE.findall(log.read_text(errors="replace"))) < fires:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"the daemon did not fire {fires} times:\n{log.read_text()}")
            time.sleep(0.2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    return [float(value) for value in LATE.findall(log.read_text(errors="replace"))[:fires]]


_bare_start: datetime | None = None
_bare_command: list[str] = []
_bare_env: dict[str, str] = {}
_bare_job_ms: list[float] = []
_bare_spawn_ms: list[float] = []
_bare_children: list[subprocess.Popen[bytes]] = []


def bare_job() -> None:
    """The bare APScheduler job: note the lateness, start the command (not waited for here)."""
    assert _bare_start is not None
    now = datetime.now(UTC)
    planned = _bare_start + timedelta(seconds=round((now - _bare_start).total_seconds()))
    _bare_job_ms.append((now - planned).total_seconds() * 1000)
    child = subprocess.Popen(_bare_command, env=_bare_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    _bare_spawn_ms.append((datetime.now(UTC) - planned).total_seconds() * 1000)
    _bare_children.append(child)


def bare_latency(
    work: Path, fires: int, command: list[str], env: dict[str, str]
) -> tuple[list[float], list[float]]:
    """A BlockingScheduler + SQLAlchemy job store on SQLite, no Kansli: job start and Popen lateness."""
    global _bare_start
    _bare_command[:] = command
    _bare_env.clear()
    _bare_env.update(env)
    _bare_job_ms.clear()
    _bare_spawn_ms.clear()
    (work / "bare.db").unlink(missing_ok=True)
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{work / 'bare.db'}")},
        job_defaults={"coalesce": True, "max_instances": 1}, timezone=UTC)
    _bare_start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    scheduler.add_job(bare_job, "interval", seconds=1, start_date=_bare_start, id="bare")
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    while len(_bare_spawn_ms) < fires:
        time.sleep(0.1)
    scheduler.shutdown(wait=False)
    thread.join(10)
    for child in _bare_children:
        child.wait()
    _bare_children.clear()
    return list(_bare_job_ms[:fires]), list(_bare_spawn_ms[:fires])


def help_time(env: dict[str, str], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "shared.cli", "--help"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def describe(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms   max {max(values):7.1f} ms   (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="15 latency fires instead of 60")
    parser.add_argument("--schedules", type=int, default=1000)
    args = parser.parse_args()
    fires = 15 if args.quick else 60
    with tempfile.TemporaryDirectory(prefix="kansli-bench-", ignore_cleanup_errors=True) as folder:
        work = Path(folder)
        many = work / "many"
        write_many(many, args.schedules)
        env = environment(work, many)
        first_sync = timed_sync(env)
        second_sync = timed_sync(env)
        peak, startup = daemon_memory(env, work)
        help_seconds = help_time(env)
        latency = daemon_latency(work, fires)
        bare_job_ms, bare_spawn_ms = bare_latency(work, fires, [sys.executable, "-c", "pass"], env)
        time.sleep(3)
        run_env = environment(work / "latency", work / "latency-schedules")
        same_command = [sys.executable, "-m", "shared.cli", "run", "ticker", "--json"]
        _, bare_run_ms = bare_latency(work, fires, same_command, run_env)
    print(f"Kansli scheduler benchmark ({'quick' if args.quick else 'full'}), Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"load + validate + sync {args.schedules} schedules (first start):   {first_sync:6.2f} s")
    print(f"load + validate + sync {args.schedules} schedules (restart, no change): "
          f"{second_sync:6.2f} s")
    print(f"daemon with {args.schedules} schedules: peak RSS {peak:6.1f} MB, exec -> started "
          f"{startup:5.2f} s")
    print(f"kansli --help:                                   {help_seconds * 1000:6.0f} ms (median of 7)")
    print(f"trigger latency, Kansli daemon (planned -> Popen returned): {describe(latency)}")
    print(f"trigger latency, bare APScheduler job start:                {describe(bare_job_ms)}")
    print(f"trigger latency, bare APScheduler + Popen(python -c pass):  {describe(bare_spawn_ms)}")
    print(f"trigger latency, bare APScheduler + Popen(kansli run):      {describe(bare_run_ms)}")
    ratio = statistics.median(latency) / max(statistics.median(bare_spawn_ms), 0.001)
    print(f"Kansli median / bare+Popen(python -c pass) median: {ratio:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
