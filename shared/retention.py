"""Retention: run folders and log files older than their settings' days are deleted.

The audit trail is exempt unless ``KANSLI_RETENTION__AUDIT_DAYS`` is set; its deletions are recorded
so that verify tells a deliberate gap from a missing day. Run records stay in the run history; the
copies of run files in the database (PostgreSQL, :mod:`shared.run_files`) go with the run folders.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loguru import logger

from shared.audit import AuditLog
from shared.settings import Settings

DAY = 86_400


@dataclass
class RetentionReport:
    """What a clean-up deleted (or would delete, in a dry run)."""

    run_folders: list[Path] = field(default_factory=list)
    log_files: list[Path] = field(default_factory=list)
    audit_files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.run_folders)} run folders, {len(self.log_files)} log files, "
                f"{len(self.audit_files)} audit files")


def old_run_folders(runs_dir: Path, days: int, now: datetime | None = None) -> list[Path]:
    """Run folders whose run started more than ``days`` days ago (by the date in the run id)."""
    if days <= 0 or not runs_dir.is_dir():
        return []
    cutoff = ((now or datetime.now(UTC)) - timedelta(days=days)).strftime("%Y%m%d")
    return sorted(path for path in runs_dir.iterdir() if path.is_dir() and path.name[:8] < cutoff)


def old_log_files(log_dir: Path, days: int, now: float | None = None) -> list[Path]:
    """Files under the log dir, outside ``audit/``, last written more than ``days`` days ago."""
    if days <= 0 or not log_dir.is_dir():
        return []
    cutoff = (now or time.time()) - days * DAY
    audit_dir = log_dir / "audit"
    return sorted(
        path for path in log_dir.rglob("*")
        if path.is_file() and audit_dir not in path.parents and path.stat().st_mtime < cutoff
    )


def _delete_stored_run_files(settings: Settings, days: int) -> None:
    from shared.run_files import delete_run_files_before
    from shared.store import open_store

    cutoff = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="microseconds")
    deleted = delete_run_files_before(open_store(settings.effective_database_url), cutoff)
    logger.info("retention: deleted {} run file(s) stored in the database", deleted)


def apply_retention(settings: Settings, *, dry_run: bool = False) -> RetentionReport:
    """Delete what the retention settings say is too old; returns what was (or would be) deleted."""
    retention = settings.retention
    report = RetentionReport(
        run_folders=old_run_folders(settings.runs_dir, retention.runs_days),
        log_files=old_log_files(settings.log_dir, retention.logs_days),
    )
    if dry_run:
        return report
    for folder in report.run_folders:
        shutil.rmtree(folder, ignore_errors=True)
    for path in report.log_files:
        path.unlink(missing_ok=True)
    if retention.runs_days > 0 and (settings.database_url or "").startswith("postgresql"):
        _delete_stored_run_files(settings, retention.runs_days)
    if retention.audit_days > 0:
        report.audit_files = AuditLog.from_settings(settings).apply_retention(retention.audit_days)
    logger.info("retention: deleted {}", report.summary())
    return report
