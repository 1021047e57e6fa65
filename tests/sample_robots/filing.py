"""A robot whose outputs name files: a letter in its output folder and a receipt in its artifacts."""

from __future__ import annotations

from pathlib import Path

from shared.errors import InputError
from shared.items import WorkItem
from shared.registry import robot
from shared.runner import Run


@robot()
def filing(run: Run, output_dir: Path, count: int = 3, bad: str = "k1") -> None:
    """Write ``beslut-å-KEY.txt`` into ``output_dir`` and ``kvitto-KEY.txt`` into the artifacts."""
    output_dir.mkdir(parents=True, exist_ok=True)

    def handle(item: WorkItem) -> dict[str, str]:
        if item.key == bad:
            raise InputError(f"item {item.key}: Beslut saknas")
        letter = output_dir / f"beslut-å-{item.key}.txt"
        letter.write_text(f"brev {item.key}", encoding="utf-8")
        receipt = run.artifacts_dir / f"kvitto-{item.key}.txt"
        receipt.write_text(f"kvitto {item.key}", encoding="utf-8")
        return {"letter": letter.name, "receipt": receipt.name, "case_number": f"KS-{item.position}"}

    run.process((WorkItem(key=f"k{n}", position=n) for n in range(count)), handle, total=count)
