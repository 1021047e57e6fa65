"""Benchmark the audit trail: append rate, verify and search speed and memory.

    .venv/bin/python -m bench.audit                 # 1,000,000 events
    .venv/bin/python -m bench.audit --quick         # a smoke run in seconds
    .venv/bin/python -m bench.audit --events 200000 --keyed

Appends are measured with fsync, one process and four at once, without and with the head anchored in
a run history database at every append (SQLite in the scratch folder, or ``--database URL``), event
by event alternately into a bare and an anchored trail, so that other load hits both alike. The
large file set is written by the bulk writer (the same canonical lines and chain, one lock, buffered
writes) over ten days and anchored with its checkpoints, then verified (against the database's head
and checkpoints) and searched in fresh child processes whose peak RSS (VmHWM) is reported.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loguru import logger

from shared.audit import AuditAnchor, AuditLog
from shared.store import Store

VERIFY_TARGET = 200_000  # events per second
MEMORY_TARGET = 100.0  # MB
DAYS = 10


def _peak_mb() -> float:
    """Peak RSS of this process. VmHWM belongs to the process image, so unlike ``ru_maxrss`` it
    does not include the parent's memory at fork time before the child exec'd."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _log(directory: Path, database: str | None, key: str | None = None) -> AuditLog:
    anchor = AuditAnchor(Store(database)) if database else None
    return AuditLog(directory, key=key, anchor=anchor)


def _interleaved(directory: Path, database: str | None, count: int) -> tuple[float, float]:
    """Seconds spent appending ``count`` events to a bare trail and ``count`` to an anchored one,
    alternating event by event, so that the load of a shared machine falls on both alike."""
    trails = (AuditLog(directory / "bare"), _log(directory / "anchored", database))
    spent = [0.0, 0.0]
    for number in range(count):
        for index, log in enumerate(trails):
            started = time.perf_counter()
            log.append("item.outcome", run_id="bench", robot="bench", data={"item_key": str(number)})
            spent[index] += time.perf_counter() - started
    return spent[0], spent[1]


def _append_worker(directory: str, database: str, count: int, barrier: Any) -> tuple[float, float]:
    barrier.wait()
    return _interleaved(Path(directory), database, count)


def bench_append(directory: Path, count: int, database: str) -> tuple[float, float]:
    """Events per second, one process, fsync per event: bare, and anchored in ``database``."""
    bare, anchored = _interleaved(directory, database, count)
    return count / bare, count / anchored


def bench_append_concurrent(
    directory: Path, count: int, database: str, processes: int = 4
) -> tuple[float, float]:
    """Total events per second with ``processes`` processes appending to the same trails at once."""
    Store(database)  # created before the workers open it, as an installed database is
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(processes)
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            futures = [
                pool.submit(_append_worker, str(directory), database, count, barrier)
                for _ in range(processes)
            ]
            spent = [future.result() for future in futures]
    bare = statistics.mean(bare for bare, _ in spent)
    anchored = statistics.mean(anchored for _, anchored in spent)
    return processes * count / bare, processes * count / anchored


def _records(total: int) -> Iterator[dict[str, Any]]:
    start = datetime(2026, 1, 1, 6, tzinfo=UTC)
    step = timedelta(days=DAYS) / total
    statuses = ("done", "done", "done", "failed", "skipped")
    for number in range(total):
        yield {
            "event": "item.outcome" if number % 50 else "run.started",
            "time": start + step * number,
            "run_id": f"run-{number // 1000}",
            "robot": f"robot-{number % 7}",
            "actor": "scheduler@kansli01",
            "data": {
                "item_key": f"ARENDE-{number:08d}",
                "status": statuses[number % 5],
                "attempts": 1 + number % 3,
            },
        }


def generate(directory: Path, total: int, key: str | None, database: str | None) -> float:
    """Write ``total`` events over ten days (anchored, with checkpoints); events per second."""
    log = _log(directory, database, key)
    started = time.perf_counter()
    log._write_bulk(_records(total))
    return total / (time.perf_counter() - started)


def _verify_child(
    directory: str, key: str | None, database: str | None
) -> tuple[float, float, int, bool, str, float]:
    log = _log(Path(directory), database, key)
    started, cpu = time.perf_counter(), time.process_time()
    report = log.verify()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return elapsed, cpu, report.events, report.ok, report.summary(), _peak_mb()


def _search_child(directory: str) -> tuple[float, int, float]:
    started = time.perf_counter()
    found = sum(1 for _ in AuditLog(Path(directory)).search(robot="robot-3", status="failed"))
    return time.perf_counter() - started, found, _peak_mb()


def _idle_child() -> float:
    import shared.audit  # noqa: F401 - the same imports as the measured children

    return _peak_mb()


def _in_child(function: Any, *args: Any) -> Any:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def _row(name: str, value: str, target: str = "", passed: bool | None = None) -> None:
    verdict = "" if passed is None else ("ok" if passed else "MISSED")
    print(f"{name:<44} {value:>16} {target:>14} {verdict:>7}", flush=True)


def _verify_rows(directory: Path, key: str | None, label: str, database: str | None) -> None:
    elapsed, cpu, events, ok, summary, peak = _in_child(_verify_child, str(directory), key, database)
    rate = events / elapsed
    _row(
        f"verify {label} ({events:,} events)",
        f"{rate:,.0f} ev/s",
        f">= {VERIFY_TARGET:,}",
        rate >= VERIFY_TARGET and ok,
    )
    _row(f"verify {label}: time", f"{elapsed:.2f} s")
    _row(f"verify {label}: per CPU second (load-free)", f"{events / cpu:,.0f} ev/s")
    _row(f"verify {label}: peak RSS", f"{peak:.1f} MB", f"< {MEMORY_TARGET:.0f} MB", peak < MEMORY_TARGET)
    if not ok:
        print(f"  !! {summary}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the verify set")
    parser.add_argument("--appends", type=int, default=2000, help="appends per measurement")
    parser.add_argument("--quick", action="store_true", help="50,000 events, 300 appends")
    parser.add_argument("--keyed", action="store_true", help="also verify a keyed (HMAC) set")
    parser.add_argument("--database", help="anchor in this database (default: SQLite in the scratch dir)")
    options = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    events = 50_000 if options.quick else options.events
    appends = 300 if options.quick else options.appends
    with tempfile.TemporaryDirectory(prefix="kansli-audit-bench-") as scratch:
        root = Path(scratch)
        def database(name: str) -> str:  # one run history database per trail, as installed
            return options.database or f"sqlite:///{root / name}.db"

        print(f"{'measure':<44} {'value':>16} {'target':>14} {'':>7}")
        _append_rows(root, appends, database)
        rate = generate(root / "big", events, None, database("big"))
        _row(f"bulk generate {events:,} events", f"{rate:,.0f} ev/s")
        size = sum(path.stat().st_size for path in (root / "big").glob("*.jsonl"))
        _row("file set size", f"{size / 1e6:,.0f} MB")
        _row("idle child peak RSS (python + imports)", f"{_in_child(_idle_child):.1f} MB")
        _verify_rows(root / "big", None, "unkeyed", database("big"))
        elapsed, found, peak = _in_child(_search_child, str(root / "big"))
        _row(f"search robot+status ({found:,} hits)", f"{events / elapsed:,.0f} ev/s")
        _row("search: peak RSS", f"{peak:.1f} MB", f"< {MEMORY_TARGET:.0f} MB", peak < MEMORY_TARGET)
        if options.keyed:
            generate(root / "keyed", events, "bench-key", database("keyed"))
            _verify_rows(root / "keyed", "bench-key", "keyed", database("keyed"))
    return 0


def _append_rows(root: Path, appends: int, database: Callable[[str], str]) -> None:
    """Each append rate bare (as before the anchor) and with the head anchored at every append."""
    one = bench_append(root / "a1", appends, database("a1"))
    four = bench_append_concurrent(root / "a4", appends, database("a4"))
    for name, (bare, anchored) in (("1 process (fsync each)", one), ("4 processes at once (total)", four)):
        _row(f"append, {name}", f"{bare:,.0f} ev/s")
        _row(f"append, {name}, anchored", f"{anchored:,.0f} ev/s", f"{anchored / bare:.0%} of bare")

if __name__ == "__main__":
    raise SystemExit(main())
