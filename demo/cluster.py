"""``make demo-cluster``: the demo robots through two workers and two schedulers on the local PostgreSQL.

A database of its own (``kansli_demo_cluster``, made anew) on the PostgreSQL of
``KANSLI_DEMO_POSTGRES_URL`` (default: the local one on 127.0.0.1:5432), the demo e-service on a free
port, then four processes, each as it would run on a host of its own (its ``KANSLI_HOST_ID`` and data
dir under ``var/demo-cluster/``; the log dir, with the audit chains, shared):

- workers ``robot-1`` and ``robot-2`` (``--tags chromium``),
- schedulers ``sched-1`` and ``sched-2``: one leads, the other stands by.

It queues ``intake_forms`` (the demo register into the e-service) and ``decision_letters`` with
``kansli run --queue-it``, lets the leader fire a demo schedule, waits for the runs, shows the workers,
the runs and the audit verification, and stops everything.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

WORK = Path("var/demo-cluster").resolve()
DATABASE = "kansli_demo_cluster"
FINAL = {"succeeded", "failed", "partial", "skipped", "cancelled", "timeout", "interrupted"}
SCHEDULE = """\
[[schedule]]
id = "letters-every-20s"
robot = "decision_letters"
every = "20s"
params = {{ input = "{root}/demo/data/applications.xlsx", output_dir = "{work}/out/scheduled" }}
timeout = "5m"
misfire_grace = "1m"
"""


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fresh_database(admin_url: str) -> str:
    """Drop and create the demo database; its URL."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{DATABASE}"')
    admin.dispose()
    return make_url(admin_url).set(database=DATABASE).render_as_string(hide_password=False)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"demo-cluster: timed out waiting for {what} (logs in {WORK})")


class Cluster:
    """The demo's processes and the environment each host gets."""

    def __init__(self, url: str, site_url: str) -> None:
        self.url, self.site_url = url, site_url
        self.processes: list[subprocess.Popen[bytes]] = []

    def env(self, host: str) -> dict[str, str]:
        return {**os.environ, "KANSLI_EXECUTION": "procrastinate", "KANSLI_DATABASE_URL": self.url,
                "KANSLI_HOST_ID": host, "KANSLI_DATA_DIR": str(WORK / host / "data"),
                "KANSLI_LOG_DIR": str(WORK / "log"), "KANSLI_SCHEDULES_DIR": str(WORK / "schedules"),
                "KANSLI_ESERVICE__URL": self.site_url, "KANSLI_CLUSTER__HEARTBEAT_S": "1",
                "KANSLI_CLUSTER__HEARTBEAT_TIMEOUT_S": "10"}

    def start(self, host: str, *args: str) -> None:
        log = (WORK / f"{host}.log").open("ab")
        command = [sys.executable, "-m", "shared.cli", *args]
        self.processes.append(subprocess.Popen(command, env=self.env(host), stdout=log, stderr=log,
                                               start_new_session=True))

    def cli(self, *args: str, host: str = "operator") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "shared.cli", *args], env=self.env(host),
                              capture_output=True, text=True, timeout=300)

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def queue(cluster: Cluster, robot: str, *params: str) -> str:
    result = cluster.cli("run", robot, "--queue-it", "--json", *(f"--param={p}" for p in params))
    if result.returncode != 0:
        raise SystemExit(f"demo-cluster: could not queue {robot}: {result.stderr.strip()}")
    run_id = str(json.loads(result.stdout)["run_id"])
    say(f"queued {robot}: run {run_id}")
    return run_id


def run_demo(cluster: Cluster) -> int:
    root = Path.cwd()
    for host in ("robot-1", "robot-2"):
        cluster.start(host, "worker", "--tags", "chromium", "--concurrency", "1")
    for host in ("sched-1", "sched-2"):
        cluster.start(host, "scheduler")
    wait_until(lambda: len(cluster.json("workers") or []) == 2, 120, "both workers")
    say("workers robot-1 and robot-2 are up; schedulers sched-1 and sched-2 started")
    runs = [queue(cluster, "intake_forms", f"input={root}/demo/data/intake.xlsx", "fast=true", "workers=2",
                  f"output_dir={WORK}/out/intake_forms"),
            queue(cluster, "decision_letters", f"input={root}/demo/data/applications.xlsx",
                  f"output_dir={WORK}/out/decision_letters")]

    def ended() -> list[dict[str, Any]] | None:
        listed = cluster.json("runs", "--limit", "50") or []
        mine = [run for run in listed if run["run_id"] in runs and run["status"] in FINAL]
        fired = [run for run in listed if run["trigger"].startswith("schedule:") and run["status"] in FINAL]
        return listed if len(mine) == len(runs) and fired else None

    listed = wait_until(ended, 600, "the queued runs and a scheduled one")
    say()
    say(cluster.cli("workers").stdout.rstrip())
    say(cluster.cli("runs", "--limit", "10").stdout.rstrip())
    say(cluster.cli("audit", "verify").stdout.rstrip())
    bad = [run for run in listed if run["run_id"] in runs and run["status"] not in ("succeeded", "partial")]
    return 1 if bad else 0


def main() -> int:
    from demo.site import RunningSite, SiteConfig

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "schedules").mkdir(parents=True)
    (WORK / "schedules" / "cluster.toml").write_text(
        SCHEDULE.format(root=Path.cwd(), work=WORK), encoding="utf-8")
    admin_url = os.environ.get("KANSLI_DEMO_POSTGRES_URL",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    url = fresh_database(admin_url)
    say(f"PostgreSQL database {DATABASE}; processes' logs in {WORK}")
    config = SiteConfig(db_path=WORK / "eservice.db", username="handlaggare", password="demo-lösenord-2026")
    with RunningSite(config) as site:
        say(f"demo e-service at {site.url}")
        cluster = Cluster(url, site.url)
        try:
            code = run_demo(cluster)
        finally:
            cluster.stop()
            say("all workers and schedulers stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
