"""CLI start-up benchmark: ``kansli --help`` and ``kansli robots`` against ``python -c pass``.

Run from the repository root: ``.venv/bin/python bench/cli.py [--repeat N] [--repo PATH]``. Each
command is a fresh ``python -m shared.cli ...`` process on the demo robots (package ``robots``), in a
temporary folder with its own data and log dirs; the commands take turns, ``--repeat`` rounds
(default 11), so a change in the machine's load hits them all alike. It prints the median wall time
and CPU time (user + system) of each, their ratios to the floor (and to the first checkout given),
and each target with the share of it used. On a loaded machine
the wall time includes waiting for a core; the CPU time is what the command itself costs.

``--repo`` measures another checkout (for instance an older commit unpacked with ``git archive``)
with this interpreter, for before/after figures; given several times, the checkouts take turns too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: (label, arguments after ``python``, target in seconds or None)
COMMANDS: list[tuple[str, list[str], float | None]] = [
    ("python -c pass (floor)", ["-c", "pass"], None),
    ("kansli --help", ["-m", "shared.cli", "--help"], 0.3),
    ("kansli robots", ["-m", "shared.cli", "robots"], 0.5),
    ("kansli robots --json", ["-m", "shared.cli", "robots", "--json"], 0.5),
]


def environment(repo: Path, work: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("KANSLI_")}
    env.update({"PYTHONPATH": str(repo), "KANSLI_DATA_DIR": str(work / "data"),
                "KANSLI_LOG_DIR": str(work / "log")})
    return env


def timed(arguments: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the process and its children) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *arguments], env=env, cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{arguments} ended with exit code {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


Medians = dict[str, tuple[float, float]]


def measure(repos: list[Path], repeat: int) -> dict[Path, Medians]:
    """The median wall and CPU seconds of each command in each checkout, all taking turns."""
    samples: dict[Path, dict[str, list[tuple[float, float]]]] = {
        repo: {label: [] for label, _, _ in COMMANDS} for repo in repos}
    with tempfile.TemporaryDirectory(prefix="kansli-bench-cli-") as folder:
        envs = {repo: environment(repo, Path(folder) / str(index)) for index, repo in enumerate(repos)}
        for repo in repos:  # warm the file cache and the .pyc files once
            for _, arguments, _ in COMMANDS:
                timed(arguments, envs[repo], repo)
        for _ in range(repeat):
            for repo in repos:
                for label, arguments, _ in COMMANDS:
                    samples[repo][label].append(timed(arguments, envs[repo], repo))
    return {repo: {label: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
                   for label, values in by_label.items()}
            for repo, by_label in samples.items()}


def report(medians: Medians, before: Medians | None = None) -> None:
    """Wall time (what a person waits, loaded machine included) and CPU time (what the command costs,
    close to its wall time on an idle machine), each against the floor and, given ``before`` (the
    first checkout), as a ratio to it; then each target with its margin, checked on both."""
    floor_wall, floor_cpu = medians[COMMANDS[0][0]]
    ratio_head = f" {'CPU x before':>12}" if before is not None else ""
    print(f"{'command':<26} {'wall':>8} {'x floor':>8} {'CPU':>8} {'x floor':>8}{ratio_head}")
    for label, _, _ in COMMANDS:
        wall, cpu = medians[label]
        ratio = f" {cpu / before[label][1]:11.2f}x" if before is not None else ""
        print(f"{label:<26} {wall * 1000:5.0f} ms {wall / floor_wall:7.1f}x {cpu * 1000:5.0f} ms "
              f"{cpu / floor_cpu:7.1f}x{ratio}")
    for label, _, target in COMMANDS:
        if target is None:
            continue
        wall, cpu = medians[label]
        verdicts = [f"{name} {seconds * 1000:.0f} ms ({seconds / target:.2f} of it, "
                    f"{'met' if seconds < target else 'NOT met'})"
                    for name, seconds in (("wall", wall), ("CPU", cpu))]
        print(f"  {label}: target < {target * 1000:.0f} ms: {', '.join(verdicts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11, help="rounds (default 11)")
    parser.add_argument("--repo", type=Path, action="append",
                        help="a checkout to measure (default: this one); repeat for more")
    options = parser.parse_args()
    repos = [repo.resolve() for repo in options.repo or [REPO]]
    before = os.getloadavg()[0]
    medians = measure(repos, options.repeat)
    print(f"{os.cpu_count()} cores, load average {before:.1f} -> {os.getloadavg()[0]:.1f}, "
          f"median of {options.repeat} rounds")
    for repo in repos:
        print(f"\n{repo}")
        report(medians[repo], medians[repos[0]] if repo != repos[0] else None)


if __name__ == "__main__":
    main()
