"""Retention of run folders and logs; the audit trail is exempt unless set."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shared.audit import AuditLog
from tests.conftest import kansli


def _old_run_folder(runs: Path, name: str) -> Path:
    folder = runs / name
    (folder / "artifacts").mkdir(parents=True)
    (folder / "log.txt").write_text("gammal körning")
    return folder


def test_cleanup_deletes_old_runs_and_logs_but_keeps_audit(kansli_env: Path) -> None:
    runs, logs = kansli_env / "data" / "runs", kansli_env / "log"
    old = _old_run_folder(runs, "20200101-010101-000-abcd")
    recent = _old_run_folder(runs, time.strftime("%Y%m%d") + "-010101-000-abcd")
    stale_log = logs / "scheduler.log"
    stale_log.parent.mkdir(parents=True)
    stale_log.write_text("x")
    os.utime(stale_log, (time.time() - 200 * 86400,) * 2)
    audit = AuditLog(logs / "audit")
    audit.append("daemon.started", data={})
    os.utime(next((logs / "audit").glob("*.jsonl")), (time.time() - 400 * 86400,) * 2)

    dry = kansli("cleanup", "--dry-run", cwd=kansli_env)
    assert dry.returncode == 0 and "would delete" in dry.stdout and old.exists()
    done = kansli("cleanup", cwd=kansli_env)
    assert done.returncode == 0, done.stderr
    assert not old.exists() and recent.exists() and not stale_log.exists()
    assert list((logs / "audit").glob("*.jsonl")), "the audit trail must be exempt by default"
    assert "1 run folders, 1 log files, 0 audit files" in done.stdout


def test_runs_days_zero_keeps_everything(kansli_env: Path) -> None:
    old = _old_run_folder(kansli_env / "data" / "runs", "20200101-010101-000-abcd")
    result = kansli("cleanup", cwd=kansli_env, env={"KANSLI_RETENTION__RUNS_DAYS": "0"})
    assert result.returncode == 0 and old.exists()
