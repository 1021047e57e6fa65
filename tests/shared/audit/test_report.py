"""shared.audit.report: what a verification reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.shared.audit.conftest import write_days


@pytest.mark.parametrize("make", [lambda: None, lambda: "k"])
def test_verify_reports_counts(tmp_path: Path, make: Callable[[], str | None]) -> None:
    log, _ = write_days(tmp_path, days=2, per_day=7, key=make())
    report = log.verify()
    assert (report.ok, report.events, report.files, report.first_seq, report.last_seq) == (
        True,
        14,
        2,
        1,
        14,
    )
    assert report.last_hash == log.head()[1]
