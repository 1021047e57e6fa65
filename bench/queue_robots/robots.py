"""A producer, a consumer that does nothing, and a register robot: the queue's own cost."""

from __future__ import annotations

from pathlib import Path

from robots.decision_letters import Application
from shared.excel import read_rows, row_items
from shared.items import WorkItem
from shared.registry import robot
from shared.runner import Run


@robot()
def bench_producer(run: Run, input: Path) -> None:
    """Enqueue every row of a register into the queue ``bench`` by its Diarienummer."""
    rows = read_rows(input, Application)
    run.enqueue_many("bench", ((str(row.values["Diarienummer"]), {"row": row.number}) for row in rows),
                     source=input.name)


@robot()
def bench_consumer(run: Run) -> None:
    """Take every ready item of the queue ``bench`` with a handler that does nothing."""
    run.consume(lambda item: None, queue="bench")


@robot()
def bench_register(run: Run, input: Path) -> None:
    """Enter a register's rows in the queue and do those not done, with a handler that does nothing."""
    rows = list(read_rows(input, Application))

    def nothing(item: WorkItem) -> None:
        return None

    run.process(row_items(rows, "Diarienummer", input), nothing, total=len(rows))
