"""One queue over several workers (issue 11): items/s on 1, 2 and 4 hosts next to local mode.

* **Throughput.** ``--items`` items (default 1,000) of the ``scale_consumer`` robot
  (bench/scale_robots: ``parallel=True``, a handler that waits ``--delay`` s, default 0.2, the
  target system's latency, no CPU).
  - *cluster*: a fresh PostgreSQL database; N ``kansli worker --robots scale_consumer
    --concurrency 1`` processes, each with its host id and data dir (one shared log dir), started and
    heartbeating before the clock starts; N runs queued (:func:`shared.execution.enqueue_run`); the
    time from the first run queued to the last item done.
  - *local*: the default mode, SQLite: N ``kansli run scale_consumer`` processes started together on
    one data dir; the time from the first started to the last item done.
  Items/s, the ratio to one worker of the same mode (target: 4 workers >= 3.5x) and to local mode.
* **Dispatch latency.** ``--rounds`` single runs (one item, no wait), each queued while every worker
  is idle: from ``enqueue_run`` returning to the handler's start (and to the robot function's start),
  median and p95, against local mode (from ``subprocess.Popen(kansli run)`` to the same points), on
  SQLite and on PostgreSQL.
* **PostgreSQL connections per worker**, sampled each second while the workers are busy: every
  client backend of the bench database is attributed to the process holding its socket (a worker,
  the ``kansli run`` process it started, or the bench itself), by the client port.

Only 127.0.0.1 is used; databases and processes are removed at the end, also on Ctrl-C.

    .venv/bin/python bench/scale.py [--items 1000] [--delay 0.2] [--workers 1,2,4] [--rounds 40]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from shared.execution import enqueue_run, opened_app  # noqa: E402
from shared.queue import WorkQueue  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.store import Store  # noqa: E402
from shared.worker import list_workers  # noqa: E402

PACKAGE, ROBOT, QUEUE, PING = "bench.scale_robots", "scale_consumer", "scale", "ping"
KANSLI = [sys.executable, "-m", "shared.cli"]
FINAL = {"succeeded", "failed", "partial", "skipped", "cancelled", "timeout", "interrupted"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# -- databases and processes, all removed at the end ----------------------------------------------


@dataclass
class Bench:
    """The bench's databases and processes; :meth:`close` removes them, whatever happened."""

    base_url: str
    work: Path
    admin: sa.Engine = field(init=False)
    databases: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        host = make_url(self.base_url).host or "127.0.0.1"
        if host not in LOCAL_HOSTS:
            raise SystemExit(f"the bench talks to the local PostgreSQL only, not {host}")
        self.admin = sa.create_engine(self.base_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)

    def database(self) -> str:
        """The URL of a fresh database of its own."""
        name = f"kansli_scale_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return make_url(self.base_url).set(database=name).render_as_string(hide_password=False)

    def env(self, host: str, database_url: str | None, data: str | None = None) -> dict[str, str]:
        """A host's environment: its host id and data dir (``data``: shared by local runs), one log dir."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "KANSLI_ROBOTS_PACKAGE": PACKAGE,
               "KANSLI_HOST_ID": host, "KANSLI_DATA_DIR": str(self.work / (data or host) / "data"),
               "KANSLI_LOG_DIR": str(self.work / "log"), "KANSLI_EXECUTION": "local",
               "KANSLI_QUEUE__STOP_AFTER_FAILURES": "0"}
        env.pop("KANSLI_DATABASE_URL", None)
        if database_url:
            env["KANSLI_DATABASE_URL"] = database_url
        return env

    def start(self, args: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with (self.work / log).open("ab") as output:
            process = subprocess.Popen([*KANSLI, *args], env=env, cwd=self.work, stdin=subprocess.DEVNULL,
                                       stdout=output, stderr=output, start_new_session=True)
        self.processes.append(process)
        return process

    def stop(self, processes: list[subprocess.Popen[bytes]], grace: float = 30) -> None:
        """SIGTERM to each process group, SIGKILL after ``grace``."""
        for process in processes:
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def close(self) -> None:
        self.stop(self.processes, grace=10)
        from shared import store as store_module

        for name in self.databases:
            url = make_url(self.base_url).set(database=name).render_as_string(hide_password=False)
            engine = store_module._engines.pop(url, None)
            if engine is not None:
                engine.dispose()
            self.drop(name)
        self.admin.dispose()

    def drop(self, name: str, patience: float = 120) -> None:
        """Drop a database, waiting for a PostgreSQL that restarts (another session's test may)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                with self.admin.connect() as connection:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    print(f"could not drop the database {name}: drop it by hand")
                    return
                time.sleep(1)


def cluster_settings(bench: Bench, url: str) -> Settings:
    return Settings(execution="procrastinate", database_url=url, robots_package=PACKAGE, host_id="bench",
                    data_dir=bench.work / "bench" / "data", log_dir=bench.work / "log")


@contextmanager
def workers(bench: Bench, url: str, count: int, tag: str) -> Iterator[dict[str, int]]:
    """``count`` worker processes serving the bench robot, heartbeating; host id -> pid."""
    hosts = [f"{tag}-w{number}" for number in range(1, count + 1)]
    started = [bench.start(["worker", "--robots", ROBOT, "--concurrency", "1", "--log-level", "INFO"],
                           bench.env(host, url) | {"KANSLI_EXECUTION": "procrastinate"}, f"{host}.log")
               for host in hosts]
    store = Store(url)
    try:
        wait_until(lambda: {info.host for info in list_workers(store, 60) if info.alive} >= set(hosts),
                   120, f"{count} worker(s) to heartbeat (logs in {bench.work})", every=0.2)
        yield {host: process.pid for host, process in zip(hosts, started, strict=True)}
    finally:
        bench.stop(started)


def run_lines(log: Path) -> list[tuple[str, str, float, float]]:
    """The handler's notes: (host, run id, robot start, handler start)."""
    if not log.exists():
        return []
    lines = [line.split() for line in log.read_text().splitlines()]
    return [(host, run_id, float(robot), float(handler)) for host, run_id, robot, handler in lines]


# -- PostgreSQL connections, by the process that holds each ------------------------------------------


def port(address: Any) -> int | None:
    """The port of a psutil address (an empty tuple when there is none)."""
    return getattr(address, "port", None)


@dataclass
class Connections:
    """The most connections seen at once, per worker host: its own process, its run process."""

    worker_pids: dict[str, int]
    peak: dict[tuple[str, str], int] = field(default_factory=dict)
    peak_total: int = 0
    names: set[str] = field(default_factory=set)

    def owner(self, pid: int | None) -> tuple[str, str]:
        if pid is None:
            return ("?", "unattributed")
        if pid == os.getpid():
            return ("bench", "bench")
        for host, worker_pid in self.worker_pids.items():
            if pid == worker_pid:
                return (host, "worker")
        with suppress(psutil.Error):
            for parent in psutil.Process(pid).parents():
                for host, worker_pid in self.worker_pids.items():
                    if parent.pid == worker_pid:
                        return (host, "run")
        return ("?", "other")

    def sample(self, admin: sa.Engine, database: str) -> None:
        with admin.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT client_port, application_name FROM pg_stat_activity "
                "WHERE datname = :name AND backend_type = 'client backend'"), {"name": database}).all()
        sockets = {port(conn.laddr): conn.pid for conn in psutil.net_connections("tcp")
                   if conn.pid and port(conn.raddr) == 5432}
        counts: dict[tuple[str, str], int] = {}
        for client_port, name in rows:
            host, role = self.owner(sockets.get(client_port))
            if role == "worker":  # its procrastinate pool names itself; its SQLAlchemy engine does not
                role = "procrastinate" if (name or "").startswith("kansli ") else "sqlalchemy"
            counts[host, role] = counts.get((host, role), 0) + 1
            counts[host, "all"] = counts.get((host, "all"), 0) + 1
            self.names.add(f"{role}: {name or '(none)'}")
        for key, count in counts.items():
            self.peak[key] = max(self.peak.get(key, 0), count)
        total = sum(count for (host, role), count in counts.items() if role == "all" and host != "bench")
        self.peak_total = max(self.peak_total, total)

    def per_worker(self) -> dict[str, int]:
        """The most any one worker had, by kind: its procrastinate pool, its SQLAlchemy engine, its run
        process, all of them."""
        return {role: max((self.peak.get((host, role), 0) for host in self.worker_pids), default=0)
                for role in ("procrastinate", "sqlalchemy", "run", "all")}


@contextmanager
def sampling(bench: Bench, url: str, worker_pids: dict[str, int]) -> Iterator[Connections]:
    found = Connections(worker_pids)
    database = make_url(url).database or ""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            with suppress(sa.exc.OperationalError, psutil.Error):  # lost while processes come and go
                found.sample(bench.admin, database)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()


# -- throughput ---------------------------------------------------------------------------------------


@dataclass
class Throughput:
    mode: str
    count: int
    items: int
    seconds: float
    first_item: float  # the last run's first handler start, from the clock's start
    overhead_ms: float  # per item, between two handler starts of one run, beyond the delay
    spread: dict[str, int]  # items by host
    connections: Connections | None = None

    @property
    def rate(self) -> float:
        return self.items / self.seconds


def fill(store: Store, items: int) -> None:
    WorkQueue(store, QUEUE).enqueue_many((f"k{number:05d}", {"n": number}) for number in range(items))


def all_done(store: Store, items: int) -> bool:
    return WorkQueue(store, QUEUE).counts().get("done", 0) >= items


def check_once(store: Store, items: int, run_ids: list[str]) -> None:
    """Every item done, by one attempt; every run succeeded."""
    found = WorkQueue(store, QUEUE).items(limit=items + 1)
    again = [item.key for item in found if item.status != "done" or item.attempts != 1]
    statuses = {run_id: getattr(store.get_run(run_id), "status", None) for run_id in run_ids}
    if len(found) != items or again or set(statuses.values()) != {"succeeded"}:
        raise SystemExit(f"wrong end: {len(found)} items, not done once: {again[:10]}; runs: {statuses}")


def summarise(mode: str, count: int, items: int, seconds: float, log: Path, started: float,
              delay: float) -> Throughput:
    lines = run_lines(log)
    by_run: dict[str, list[float]] = {}
    spread: dict[str, int] = {}
    for host, run_id, _robot, handler in lines:
        by_run.setdefault(run_id, []).append(handler)
        spread[host] = spread.get(host, 0) + 1
    gaps = [later - earlier - delay for starts in by_run.values() for earlier, later in
            zip(sorted(starts), sorted(starts)[1:], strict=False)]
    first = max((min(starts) - started for starts in by_run.values()), default=0.0)
    return Throughput(mode, count, items, seconds, first, 1000 * statistics.mean(gaps) if gaps else 0.0,
                      spread)


def cluster_throughput(bench: Bench, count: int, items: int, delay: float) -> Throughput:
    url = bench.database()
    store = Store(url)
    fill(store, items)
    log = bench.work / f"cluster-{count}.items"
    settings = cluster_settings(bench, url)
    with workers(bench, url, count, f"t{count}") as pids, sampling(bench, url, pids) as connections:
        with opened_app(settings) as app:
            started = time.time()
            run_ids = [enqueue_run(settings, ROBOT, {"delay": delay, "log": str(log)}, trigger="bench",
                                   app=app, store=store) for _ in range(count)]
        wait_until(lambda: all_done(store, items), items * delay * 2 + 300, "the items", every=0.1)
        seconds = time.time() - started
        ids = [run_id for run_id in run_ids if run_id]
        wait_until(lambda: all(ended(store, run_id) for run_id in ids), 120, "the runs to end", every=0.2)
    check_once(store, items, ids)
    result = summarise("cluster, PostgreSQL", count, items, seconds, log, started, delay)
    result.connections = connections
    return result


def local_throughput(bench: Bench, count: int, items: int, delay: float) -> Throughput:
    data = f"local-{count}"
    store = Store(f"sqlite:///{bench.work / data / 'data' / 'kansli.db'}")
    fill(store, items)
    log = bench.work / f"local-{count}.items"
    started = time.time()
    processes = [bench.start(["run", ROBOT, "--param", f"delay={delay}", "--param", f"log={log}"],
                             bench.env(f"l{count}-{number}", None, data), f"{data}-{number}.log")
                 for number in range(count)]
    wait_until(lambda: all_done(store, items), items * delay * 2 + 300, "the items", every=0.1)
    seconds = time.time() - started
    for process in processes:
        if process.wait(timeout=120) != 0:
            raise SystemExit(f"a local run failed (exit {process.returncode}; logs in {bench.work})")
    runs = [record.run_id for record in store.list_runs(robot=ROBOT, limit=count + 1)]
    check_once(store, items, runs)
    return summarise("local, SQLite", count, items, seconds, log, started, delay)


# -- dispatch latency ---------------------------------------------------------------------------------


@dataclass
class Latency:
    what: str
    to_handler: list[float] = field(default_factory=list)  # seconds
    to_robot: list[float] = field(default_factory=list)
    enqueue: list[float] = field(default_factory=list)  # enqueue_run's own time


def note_round(latency: Latency, log: Path, run_id: str, since: float) -> None:
    lines = [line for line in run_lines(log) if line[1] == run_id]
    if len(lines) != 1:
        raise SystemExit(f"run {run_id} did not do its one item (see {log})")
    _host, _run, robot, handler = lines[0]
    latency.to_robot.append(robot - since)
    latency.to_handler.append(handler - since)


def ended(store: Store, run_id: str) -> bool:
    return getattr(store.get_run(run_id), "status", None) in FINAL


def idle_after(store: Store, run_id: str) -> bool:
    """The run ended and no job is waiting or being done: every worker idle."""
    return ended(store, run_id) and jobs_idle(store)


def jobs_idle(store: Store) -> bool:
    with store.engine.connect() as connection:
        busy = connection.execute(sa.text(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")).scalar_one()
    return busy == 0


def cluster_latency(bench: Bench, count: int, rounds: int) -> Latency:
    url = bench.database()
    store, log, latency = Store(url), bench.work / f"latency-cluster-{count}.items", Latency(
        f"cluster, {count} idle worker(s): enqueue_run returned ->")
    settings = cluster_settings(bench, url)
    with workers(bench, url, count, f"d{count}"), opened_app(settings) as app:
        for number in range(rounds):
            WorkQueue(store, PING).enqueue(f"p{number:03d}", {"n": number})
            before = time.time()
            run_id = enqueue_run(settings, ROBOT, {"queue": PING, "delay": 0, "log": str(log)},
                                 trigger="bench", app=app, store=store)
            since = time.time()
            assert run_id is not None
            latency.enqueue.append(since - before)
            wait_until(partial(idle_after, store, run_id), 120, f"run {run_id}")
            note_round(latency, log, run_id, since)
    return latency


def local_latency(bench: Bench, rounds: int, database_url: str | None) -> Latency:
    data = "latency-local-" + ("pg" if database_url else "sqlite")
    env = bench.env(data, database_url)
    store = Store(database_url or f"sqlite:///{bench.work / data / 'data' / 'kansli.db'}")
    log = bench.work / f"{data}.items"
    latency = Latency(f"local, {'PostgreSQL' if database_url else 'SQLite'}: Popen(kansli run) ->")
    for number in range(rounds):
        WorkQueue(store, PING).enqueue(f"p{number:03d}", {"n": number})
        since = time.time()
        process = bench.start(["run", ROBOT, "--json", "--param", f"queue={PING}", "--param", "delay=0",
                               "--param", f"log={log}"], env, f"{data}.log")
        if process.wait(timeout=120) != 0:
            raise SystemExit(f"a local run failed (see {bench.work / data}.log)")
        run_id = run_lines(log)[-1][1]
        note_round(latency, log, run_id, since)
    return latency


# -- the report ---------------------------------------------------------------------------------------


def print_throughput(results: list[Throughput]) -> None:
    one = {result.mode: result.rate for result in results if result.count == 1}
    local = {result.count: result.rate for result in results if result.mode.startswith("local")}
    print(f"\n{'mode':<20} {'N':>2} {'items':>6} {'seconds':>8} {'items/s':>8} {'x 1 worker':>10} "
          f"{'x local':>8} {'1st item s':>10} {'ms/item':>8}  items by host")
    for result in results:
        base = one.get(result.mode)
        vs_one = f"{result.rate / base:9.2f}x" if base else ""
        vs_local = f"{result.rate / local[result.count]:7.2f}x" if result.count in local else ""
        spread = " ".join(f"{count}" for _host, count in sorted(result.spread.items()))
        print(f"{result.mode:<20} {result.count:>2} {result.items:>6} {result.seconds:8.2f} "
              f"{result.rate:8.2f} {vs_one:>10} {vs_local:>8} {result.first_item:10.2f} "
              f"{result.overhead_ms:8.1f}  {spread}",
              flush=True)
    print("target: 4 workers >= 3.5x one worker. '1st item s': the last run's first handler start after "
          "the clock started; 'ms/item': time between two handler starts of a run beyond the delay")


def print_latency(latencies: list[Latency]) -> None:
    local = next((item for item in latencies if "SQLite" in item.what), None)
    print(f"\n{'dispatch latency, ms':<58} {'handler: median':>15} {'p95':>6} {'x local':>8} "
          f"{'robot: median':>13} {'p95':>6}")
    for latency in latencies:
        median = 1000 * statistics.median(latency.to_handler)
        ratio = f"{statistics.median(latency.to_handler) / statistics.median(local.to_handler):7.2f}x" \
            if local else ""
        print(f"{latency.what:<58} {median:15.0f} {1000 * percentile(latency.to_handler, 0.95):6.0f} "
              f"{ratio:>8} {1000 * statistics.median(latency.to_robot):13.0f} "
              f"{1000 * percentile(latency.to_robot, 0.95):6.0f}", flush=True)
        if latency.enqueue:
            print(f"{'':<4}enqueue_run itself: median {1000 * statistics.median(latency.enqueue):.0f} ms, "
                  f"p95 {1000 * percentile(latency.enqueue, 0.95):.0f} ms")


def print_connections(results: list[Throughput], bench: Bench) -> None:
    with bench.admin.connect() as connection:
        limit = connection.execute(sa.text("SHOW max_connections")).scalar_one()
    print(f"\nPostgreSQL connections while busy (peak of 1 s samples; server max_connections {limit})")
    for result in results:
        if result.connections is None:
            continue
        per = result.connections.per_worker()
        print(f"  {result.count} worker(s): per worker at most {per['all']}: the worker process "
              f"{per['procrastinate']} (procrastinate pool) + {per['sqlalchemy']} (SQLAlchemy), its "
              f"kansli run process {per['run']}; all workers together {result.connections.peak_total}")
    names = sorted({name for result in results if result.connections for name in result.connections.names})
    print("  application_name seen: " + "; ".join(names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.2, help="the handler's wait, seconds")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=40, help="single runs for the dispatch latency")
    parser.add_argument("--skip", default="", help="'throughput' or 'latency' to leave one out")
    parser.add_argument("--postgres", default=os.environ.get("KANSLI_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("give --postgres URL or set KANSLI_TEST_POSTGRES_URL (the local PostgreSQL)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up as Ctrl-C does
    counts = [int(count) for count in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="kansli-bench-scale-") as folder:
        bench = Bench(args.postgres, Path(folder))
        try:
            report(bench, args, counts)
        except sa.exc.OperationalError as error:
            raise SystemExit(f"PostgreSQL went away during the measurement (restarted?): {error.orig}; "
                             "its figures would be void, run the bench again") from None
        finally:
            bench.close()


def report(bench: Bench, args: argparse.Namespace, counts: list[int]) -> None:
    print(f"{args.items} items, handler waits {args.delay * 1000:g} ms; workers {counts}; 2-core machine")
    if args.skip != "throughput":
        results: list[Throughput] = []
        for count in counts:
            results.append(cluster_throughput(bench, count, args.items, args.delay))
            print_throughput(results[-1:])
            results.append(local_throughput(bench, count, args.items, args.delay))
            print_throughput(results[-1:])
        print_throughput(results)
        print_connections(results, bench)
    if args.skip != "latency":
        latencies = [local_latency(bench, args.rounds, None),
                     local_latency(bench, args.rounds, bench.database())]
        latencies += [cluster_latency(bench, count, args.rounds)
                      for count in sorted({min(counts), max(counts)})]
        print_latency(latencies)


if __name__ == "__main__":
    main()
