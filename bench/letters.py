"""Letters per second: Kansli's runner against plain docxtpl rendering the same letters.

Kansli: ``decision_letters`` through the in-process runner (one worker): read and validate the
register, ledger every item in SQLite, render each letter atomically, write the results workbook.
Baseline: a plain loop that loads the template and renders each letter with docxtpl, with the
contexts already built. Target: Kansli's overhead at most 15%. Kansli compiles the template's Jinja
once (plain docxtpl recompiles it for every letter), so it also prints a plain loop with that same
trick: the ratio to it is the framework's own cost.

    .venv/bin/python bench/letters.py [--letters 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from docxtpl import DocxTemplate

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo.scale import scaled_register  # noqa: E402
from robots.decision_letters import DEFAULT_TEMPLATE, Application, letter_context  # noqa: E402
from shared._docxtpl import CompilingOnce as _CompilingOnce  # noqa: E402
from shared.excel import read_rows  # noqa: E402


def plain_docxtpl(register: Path, out: Path, *, cached: bool = False) -> float:
    contexts = [
        (row.model.diarienummer, letter_context(row.model))
        for row in read_rows(register, Application)
        if row.model is not None
    ]
    out.mkdir(parents=True)
    environment = _CompilingOnce() if cached else None
    started = time.perf_counter()
    for reference, context in contexts:
        document = DocxTemplate(str(DEFAULT_TEMPLATE))
        document.render(context, jinja_env=environment, autoescape=True)
        document.save(str(out / f"beslut-{reference}.docx"))
    return time.perf_counter() - started


def through_kansli(register: Path, out: Path, work: Path) -> float:
    os.environ["KANSLI_DATA_DIR"] = str(work / "data")
    os.environ["KANSLI_LOG_DIR"] = str(work / "log")
    from shared.runner import Runner
    from shared.settings import reset_settings

    reset_settings()
    runner = Runner()
    started = time.perf_counter()
    record = runner.run("decision_letters", {"input": str(register), "output_dir": str(out)},
                        trigger="bench")
    elapsed = time.perf_counter() - started
    assert record.status == "succeeded", record.error
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the two paths this often")
    args = parser.parse_args()
    plain_times: list[float] = []
    cached_times: list[float] = []
    kansli_times: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        valid = {row.number for row in read_rows(REPO / "demo/data/applications.xlsx", Application)
                 if row.model is not None}
        register = scaled_register(work / "register.xlsx", args.letters, valid=valid)
        plain_docxtpl(register, work / "warmup")  # imports, disk cache
        for round_number in range(args.rounds):
            plain_times.append(plain_docxtpl(register, work / f"plain-{round_number}"))
            cached_times.append(plain_docxtpl(register, work / f"cached-{round_number}", cached=True))
            kansli_times.append(
                through_kansli(register, work / f"kansli-{round_number}", work / f"w{round_number}")
            )
    report(args.letters, min(plain_times), min(cached_times), min(kansli_times), args.rounds)


def report(count: int, plain: float, cached: float, kansli: float, rounds: int) -> None:
    print(f"letters: {count}   cores: {os.cpu_count()}   best of {rounds} alternating rounds")
    print(f"{'path':<36}{'seconds':>10}{'letters/s':>12}")
    print(f"{'plain docxtpl loop (baseline)':<36}{plain:>10.2f}{count / plain:>12.1f}")
    print(f"{'plain docxtpl, templates compiled once':<36}{cached:>10.2f}{count / cached:>12.1f}")
    print(f"{'kansli run decision_letters':<36}{kansli:>10.2f}{count / kansli:>12.1f}")
    print(f"kansli / plain docxtpl time ratio: {kansli / plain:.3f}  "
          f"(overhead {kansli / plain - 1:+.1%}; target <= +15%)")
    print(f"kansli / compiled-once loop: {kansli / cached:.3f}  "
          f"(the framework's own cost: Excel in and out, ledger, audit, logs, atomic writes)")


if __name__ == "__main__":
    main()
