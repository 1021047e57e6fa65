"""``kansli worker`` / ``kansli workers`` / ``kansli run --queue-it`` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.testing import kansli

POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def test_procrastinate_mode_needs_postgresql(tmp_path: Path) -> None:
    result = kansli("worker", env={"KANSLI_EXECUTION": "procrastinate"}, cwd=tmp_path)
    assert result.returncode == 4
    assert "KANSLI_EXECUTION=procrastinate needs KANSLI_DATABASE_URL on PostgreSQL" in result.stderr
    queued = kansli("run", "counting", "--queue-it", env={"KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"},
                    cwd=tmp_path)
    assert queued.returncode == 4
    assert "needs KANSLI_EXECUTION=procrastinate" in queued.stderr


@pytest.mark.postgres
@POSTGRES
def test_workers_and_queue_it_on_an_empty_cluster(database_url: str, tmp_path: Path) -> None:
    env = {"KANSLI_EXECUTION": "procrastinate", "KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}
    listed = kansli("workers", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "no live worker" in listed.stderr
    bad = kansli("run", "counting", "--queue-it", "-p", "count=x", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "parameter 'count'" in bad.stderr
    good = kansli("run", "counting", "--queue-it", "-p", "count=1", env=env, cwd=tmp_path)
    assert good.returncode == 0 and "queued" in good.stdout
    runs = kansli("runs", env=env, cwd=tmp_path)
    assert "waiting: no live worker serves counting" in runs.stdout
