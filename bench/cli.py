"""CLI start-up benchmark: ``kansli --help`` and ``kansli robots`` against ``python -c pass``.

Run from the repository root: ``.venv/bin/python bench/cli.py [--repeat N] [--repo PATH]``. Each
command is a fresh ``python -m shared.cli ...`` process on the demo robots (package ``robots``), in a
temporary folder with its own data and log dirs; the commands take turns, ``--repeat`` rounds
(default 11), so a change in the machine's load hits them all alike. It prints the median wall time of
each, the median less the floor (what Kansli itself costs), the ratio to the floor, and the target.

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


def timed(arguments: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], env=env, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(repos: list[Path], repeat: int) -> dict[Path, dict[str, float]]:
    """The median seconds of each command in each checkout, all taking turns round by round."""
    samples: dict[Path, dict[str, list[float]]] = {
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
    return {repo: {label: statistics.median(values) for label, values in by_label.items()}
            for repo, by_label in samples.items()}


def report(medians: dict[str, float]) -> None:
    floor = medians[COMMANDS[0][0]]
    print(f"{'command':<26} {'median':>9} {'- floor':>9} {'x floor':>8}  target")
    for label, _, target in COMMANDS:
        seconds = medians[label]
        verdict = "" if target is None else (
            f"< {target:.1f} s: {'met' if seconds < target else 'NOT met'}")
        print(f"{label:<26} {seconds * 1000:7.0f} ms {(seconds - floor) * 1000:6.0f} ms "
              f"{seconds / floor:7.1f}x  {verdict}")


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
        report(medians[repo])


if __name__ == "__main__":
    main()
