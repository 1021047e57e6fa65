"""Larger registers made from the bundled demo ones, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from openpyxl import load_workbook

DEMO_DATA = Path(__file__).resolve().parent / "data"


def scaled_register(
    destination: Path,
    rows: int,
    *,
    source: Path = DEMO_DATA / "applications.xlsx",
    key_column: str = "Diarienummer",
    valid_only: bool = True,
    valid: set[int] | None = None,
) -> Path:
    """Write ``rows`` data rows cycled from ``source``, each with a unique ``key_column``.

    With ``valid_only``, only rows whose number is in ``valid`` (default: all) are copied.
    """
    workbook = load_workbook(source)
    sheet = workbook.worksheets[0]
    header = [cell.value for cell in sheet[1]]
    key_index = header.index(key_column)
    template_rows = [
        [cell.value for cell in row]
        for number, row in enumerate(sheet.iter_rows(min_row=2), start=2)
        if not valid_only or valid is None or number in valid
    ]
    sheet.delete_rows(2, sheet.max_row)
    for index in range(rows):
        values = list(template_rows[index % len(template_rows)])
        values[key_index] = f"{values[key_index] or 'X'}-{index:05d}"
        sheet.append(values)
    destination.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(destination)
    return destination
