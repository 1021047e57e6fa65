"""Several robot hosts on the real PostgreSQL: worker processes with host ids and data dirs of their own."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.queue import WorkQueue
from shared.store import Store
from shared.testing import KANSLI, import_path, kansli

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
FINAL = {"succeeded", "failed", "partial", "skipped", "cancelled", "timeout", "interrupted"}


def wait_until(condition: Callable[[], Any], timeout: float = 120, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")


@dataclass
class Cluster:
    """Worker processes, each with its own host id and data dir; one shared log dir and database."""

    root: Path
    url: str
    robots_package: str = "tests.sample_robots"
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, host: str, **extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": import_path(), "KANSLI_EXECUTION": "procrastinate",
                "KANSLI_DATABASE_URL": self.url, "KANSLI_HOST_ID": host,
                "KANSLI_DATA_DIR": str(self.root / host / "data"), "KANSLI_LOG_DIR": str(self.root / "log"),
                "KANSLI_ROBOTS_PACKAGE": self.robots_package, "KANSLI_CLUSTER__HEARTBEAT_S": "0.5",
                "KANSLI_CLUSTER__HEARTBEAT_TIMEOUT_S": "5", **extra}

    def start_worker(self, host: str, *args: str) -> subprocess.Popen[bytes]:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / f"{host}.log").open("ab")
        process = subprocess.Popen([*KANSLI, "worker", "--log-level", "DEBUG", *args], env=self.env(host),
                                   stdout=log, stderr=log, cwd=self.root, start_new_session=True)
        self.workers[host] = process
        wait_until(lambda: any(worker["host"] == host for worker in self.list_workers()), 60,
                   f"worker {host} to heartbeat (log: {self.root / f'{host}.log'})")
        return process

    def cli(self, *args: str, host: str = "cli") -> subprocess.CompletedProcess[str]:
        return kansli(*args, env=self.env(host), cwd=self.root)

    def list_workers(self) -> list[dict[str, Any]]:
        result = self.cli("workers", "--json")
        return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else []

    def queue(self, robot: str, **params: Any) -> str:
        args = [f"--param={key}={value}" for key, value in params.items()]
        result = self.cli("run", robot, "--queue-it", "--json", *args)
        assert result.returncode == 0, result.stderr
        return str(json.loads(result.stdout)["run_id"])

    def enqueue(self, robot: str, params: dict[str, Any], **options: Any) -> str:
        """Queue a run through the Python API (the scheduler's way: timeout, retries)."""
        from shared.execution import enqueue_run
        from shared.settings import load_settings

        settings = load_settings(database_url=self.url, execution="procrastinate",
                                 robots_package=self.robots_package, data_dir=self.root / "api" / "data",
                                 log_dir=self.root / "log")
        run_id = enqueue_run(settings, robot, params, **options)
        assert run_id is not None
        return run_id

    def host_of(self, run_id: str) -> str:
        """The host whose worker took the run."""
        import sqlalchemy as sa

        from shared.store import cluster_runs

        with self.store().engine.connect() as connection:
            return str(connection.execute(sa.select(cluster_runs.c.host)
                                          .where(cluster_runs.c.run_id == run_id)).scalar())

    def store(self) -> Store:
        return Store(self.url)

    def wait_final(self, run_ids: list[str], timeout: float = 180) -> dict[str, Any]:
        store = self.store()

        def ended() -> dict[str, Any] | None:
            records = {run_id: store.get_run(run_id) for run_id in run_ids}
            if all(record is not None and record.status in FINAL for record in records.values()):
                return records
            return None

        return wait_until(ended, timeout, f"runs {run_ids} to end")

    def stop(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def cluster(database_url: str, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path, database_url)
    try:
        yield made
    finally:
        made.stop()


def cases_by_key(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT referens, COUNT(*) FROM cases GROUP BY referens").fetchall()
    return dict(rows)


@POSTGRES
def test_a_worker_serves_only_robots_whose_tags_it_has(cluster: Cluster) -> None:
    refused = cluster.cli("worker", "--robots", "needs_browser", host="w0")
    assert refused.returncode == 4
    assert "needs_browser needs --tags chromium" in refused.stderr
    cluster.start_worker("w1", "--robots", "stamp,needs_browser,counting")
    run_id = cluster.queue("needs_browser")
    assert cluster.queue("counting", count=2)  # served: the queue moves on
    runs = json.loads(cluster.cli("runs", "--json").stdout)
    waiting = {run["run_id"]: run.get("waiting") for run in runs}
    assert waiting[run_id] == "waiting: no live worker serves needs_browser"
    doctor = cluster.cli("doctor")
    assert "run job(s) waiting for a robot no live worker serves: needs_browser" in doctor.stdout
    cluster.start_worker("w2", "--robots", "needs_browser", "--tags", "chromium")
    assert cluster.wait_final([run_id])[run_id].status == "succeeded"
    hosts = {worker["host"]: worker for worker in cluster.list_workers()}
    assert hosts["w2"]["tags"] == ["chromium"] and hosts["w1"]["robots"] == ["counting", "stamp"]


@POSTGRES
def test_runs_spread_over_workers_and_a_robot_never_overlaps_itself(cluster: Cluster, tmp_path: Path) -> None:
    for host in ("w1", "w2", "w3"):
        cluster.start_worker(host, "--robots", "stamp,drain")
    log = tmp_path / "stamps.txt"
    stamped = [cluster.queue("stamp", log=log, seconds=0.2) for _ in range(6)]
    cases = tmp_path / "cases.db"
    WorkQueue(cluster.store(), "bulk").enqueue_many((f"c{n:03d}", {"n": n}) for n in range(60))
    drained = [cluster.queue("drain", cases=cases, delay=0.05) for _ in range(3)]
    records = cluster.wait_final(stamped + drained)
    assert {record.status for record in records.values()} == {"succeeded"}
    spans: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        kind, run_id, _host, moment = line.split()
        spans.setdefault(run_id, []).append(float(moment))
    ordered = sorted(spans.values())
    assert len(ordered) == 6
    assert all(earlier[1] <= later[0] for earlier, later in zip(ordered, ordered[1:], strict=False))
    with sqlite3.connect(cases) as connection:
        hosts = {row[0] for row in connection.execute("SELECT DISTINCT host FROM cases")}
    assert set(cases_by_key(cases).values()) == {1} and len(cases_by_key(cases)) == 60
    assert len(hosts) >= 2, hosts  # the queue's items were taken by runs on several hosts
    assert {item.status for item in WorkQueue(cluster.store(), "bulk").items()} == {"done"}
    listed = {run["run_id"]: run for run in json.loads(cluster.cli("runs", "--json", "--limit", "50").stdout)}
    drained_on = {listed[run_id]["host"] for run_id in drained}
    assert drained_on <= {"w1", "w2", "w3"} and len(drained_on) >= 2
    assert "host" in cluster.cli("runs", host="w1").stdout
    shown = json.loads(cluster.cli("show", drained[0], "--json", host="w1").stdout)["run"]
    assert shown["host"] == listed[drained[0]]["host"]
    assert f"host: {shown['host']}" in cluster.cli("show", drained[0], host="w1").stdout


@POSTGRES
def test_a_killed_worker_leaves_its_queue_to_another_host_each_key_done_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    cases, hold = tmp_path / "cases.db", tmp_path / "hold"
    WorkQueue(cluster.store(), "bulk").enqueue_many((f"c{n:02d}", {"n": n}) for n in range(12))
    hold.write_text("c04")
    first = cluster.start_worker("w1", "--robots", "drain")
    run_id = cluster.queue("drain", cases=cases, hold=hold, delay=0.3)  # >1 s: a batch of item events
    wait_until(hold.with_suffix(".reached").exists, 120, "the run to reach item c04")
    wait_until(lambda: json.loads(cluster.cli("audit", "search", "--host", "w1", "--event", "item.outcome",
                                              "--json").stdout), 60, "w1's first item events in its chain")
    os.killpg(first.pid, signal.SIGKILL)  # the host dies: its worker and the run it was doing
    first.wait()
    hold.unlink()
    cluster.start_worker("w2", "--robots", "drain")
    store = cluster.store()
    wait_until(lambda: {item.status for item in WorkQueue(store, "bulk").items()} == {"done"}, 180,
               "another host to finish the queue")
    assert cases_by_key(cases) == {f"c{n:02d}": 1 for n in range(12)}
    killed = store.get_run(run_id)
    assert killed is not None and killed.status == "interrupted"
    finisher = [record for record in store.list_runs(robot="drain") if record.run_id != run_id]
    assert finisher  # the queue is done: the run that did it may still be closing its record
    assert cluster.wait_final([finisher[0].run_id])[finisher[0].run_id].status == "succeeded"
    items = {item.key: item for item in store.list_items(finisher[0].run_id)}
    assert items["c04"].outcome == "done"  # reconciled: found keyed, not keyed again
    verified = cluster.cli("audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    events = json.loads(cluster.cli("audit", "search", "--run", run_id, "--json").stdout)
    finished = [event for event in events if event["event"] == "run.finished"]
    assert len(finished) == 1 and finished[0]["data"]["cause"] == "worker_gone"
    assert finished[0]["host"] == "w2"  # closed in the trail by the host that found it dead
    outcomes = Counter(event["data"]["item_key"] for event in events if event["event"] == "item.outcome")
    assert outcomes and max(outcomes.values()) == 1  # no item written twice (w1's events, w2's recovery)


def restart_postgresql() -> None:
    version = sorted(path.name for path in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   capture_output=True, timeout=120)
    wait_until(lambda: subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0, 120,
               "PostgreSQL to accept connections again")


@POSTGRES
@pytest.mark.skipif(not Path("/etc/postgresql").is_dir() or os.geteuid() != 0,
                    reason="needs the local PostgreSQL cluster and root to restart it")
def test_workers_survive_a_postgresql_restart_and_nothing_is_lost(cluster: Cluster, tmp_path: Path) -> None:
    cases = tmp_path / "cases.db"
    WorkQueue(cluster.store(), "bulk").enqueue_many((f"c{n:03d}", {"n": n}) for n in range(80))
    for host in ("w1", "w2"):
        cluster.start_worker(host, "--robots", "drain")
    first = [cluster.queue("drain", cases=cases, delay=0.1) for _ in range(2)]
    wait_until(lambda: cases.exists() and sum(cases_by_key(cases).values()) >= 10, 120, "items to be keyed")
    restart_postgresql()
    ended = cluster.wait_final(first, 240)
    for record in ended.values():  # a true status: finished, or failed/interrupted saying why
        assert record.status in ("succeeded", "failed", "interrupted"), record
        assert record.status == "succeeded" or record.error
    store = cluster.store()
    wait_until(lambda: {w["host"] for w in cluster.list_workers()} == {"w1", "w2"}, 120,
               "both workers to heartbeat again")
    again = cluster.queue("drain", cases=cases)
    assert cluster.wait_final([again], 240)[again].status == "succeeded"
    assert {item.status for item in WorkQueue(store, "bulk").items(limit=1000)} == {"done"}
    assert cases_by_key(cases) == {f"c{n:03d}": 1 for n in range(80)}


@POSTGRES
def test_a_worker_kills_a_run_at_its_timeout_and_retries_a_failed_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    import psutil

    cluster.start_worker("w1", "--robots", "sleeper,crashing")
    ready = tmp_path / "ready"
    timed = cluster.enqueue("sleeper", {"seconds": 300, "ready": str(ready)}, schedule_timeout=3)
    store = cluster.store()
    # "cancelled" first (the run's own SIGTERM handler), then the worker's verdict
    record = wait_until(lambda: (r := store.get_run(timed)) is not None and r.status == "timeout" and r, 120,
                        "the run to be recorded timed out")
    assert "timed out after 3 s" in (record.error or "")

    def run_processes() -> list[int]:  # on a loaded machine the run may be killed before it wrote `ready`
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if timed in (process.info["cmdline"] or []):
                found.append(process.pid)
        return found

    wait_until(lambda: not run_processes() and (not ready.exists() or not psutil.pid_exists(
        int(ready.read_text()))), 60, "the run's processes to be gone")
    first = cluster.enqueue("crashing", {"message": "nere"}, trigger="schedule:natt", retries=1,
                            retry_backoff=0.1)
    tried = wait_until(lambda: [r for r in store.list_runs(robot="crashing") if r.status in FINAL]
                       if len([r for r in store.list_runs(robot="crashing") if r.status in FINAL]) == 2
                       else None, 120, "the run and its retry")
    assert {r.status for r in tried} == {"failed"} and {r.trigger for r in tried} == {"schedule:natt"}
    assert first in {r.run_id for r in tried}
    assert [r.run_id for r in store.list_runs(robot="crashing")] == [r.run_id for r in tried]  # no third
