"""A run's files in the database, so ``kansli logs`` and ``kansli report`` work on any host.

Each host has its own data dir, so a run's folder (``log.jsonl``, ``log.txt``, ``report.html``) is on
the host that ran it. On PostgreSQL (the database of several hosts) the runner copies these files,
gzip-compressed, into ``kansli_run_files`` when the run ends, and again when a run whose process died
is closed on its host. ``kansli logs`` and ``kansli report`` read the local file when there is one,
else the stored copy, and say so. A run still running on another host has no copy yet: its log is
on that host until it ends. On SQLite (one host) nothing is copied: the folder is on this host.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from loguru import logger

from shared.files import atomic_path
from shared.redaction import redact
from shared.store import RunRecord, Store, run_files, utcnow

if TYPE_CHECKING:
    from shared.settings import Settings

#: The files of a run folder that are stored, in this order.
RUN_FILES = ("log.jsonl", "log.txt", "report.html")
COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class StoredFile:
    """A run's file as stored in the database."""

    run_id: str
    name: str
    host: str
    stored_at: str
    size: int
    data: bytes

    def note(self, what: str) -> str:
        """One line saying where the file came from."""
        from shared.clock import local_time

        return (f"{what} of run {self.run_id} from the database (the run ran on host {self.host}; "
                f"stored {local_time(self.stored_at, seconds=True)})")


def keeps_files(store: Store) -> bool:
    """Whether run files are stored in this database: on PostgreSQL, shared by several hosts."""
    return store.dialect == "postgresql"


def store_run_files(store: Store, run_id: str, run_dir: Path | str | None, host: str) -> list[str]:
    """Copy the run's files that exist into the database (PostgreSQL only); returns their names.

    Never raises: a failure is logged (the run is already recorded; its folder keeps the files).
    """
    if not keeps_files(store) or not run_dir:
        return []
    try:
        return _store(store, run_id, Path(run_dir), host)
    except Exception as error:  # noqa: BLE001 - the run is already recorded
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        logger.warning("could not store the files of run {} in the database: {}", run_id, redact(first))
        return []


def _store(store: Store, run_id: str, run_dir: Path, host: str) -> list[str]:
    rows: list[dict[str, str | int | bytes]] = []
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_file():
            data = path.read_bytes()
            rows.append({"run_id": run_id, "name": name, "host": host, "size": len(data),
                         "content": gzip.compress(data, COMPRESS_LEVEL), "stored_at": utcnow()})
    if rows:
        insert = store.insert(run_files)
        statement = insert.on_conflict_do_update(
            index_elements=["run_id", "name"],
            set_={column: insert.excluded[column] for column in ("host", "content", "size", "stored_at")})
        with store.engine.begin() as connection:
            connection.execute(statement, rows)
    return [str(row["name"]) for row in rows]


def load_run_file(store: Store, run_id: str, name: str) -> StoredFile | None:
    """The stored copy of one of the run's files, or None."""
    if not keeps_files(store):
        return None
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(run_files).where(
            run_files.c.run_id == run_id, run_files.c.name == name)).first()
    if row is None:
        return None
    return StoredFile(row.run_id, row.name, row.host, row.stored_at, row.size, gzip.decompress(row.content))


def delete_run_files_before(store: Store, stored_before: str) -> int:
    """Delete the copies stored before this time (retention); returns how many."""
    with store.engine.begin() as connection:
        return connection.execute(run_files.delete().where(run_files.c.stored_at < stored_before)).rowcount


def is_local(record: RunRecord) -> bool:
    """Whether the run's folder is on this host (or on a data dir shared with the host that ran it)."""
    return bool(record.run_dir) and (Path(record.run_dir or "") / "log.txt").is_file()


def run_host(record: RunRecord) -> str:
    """The host that ran the run, from its actor (``user@host``)."""
    return record.actor.rpartition("@")[2] or record.actor


def run_file(store: Store, record: RunRecord, name: str) -> Path | StoredFile | None:
    """The run's file ``name``: the local one when it exists, else the stored copy, else None."""
    local = Path(record.run_dir or "") / name
    if record.run_dir and local.is_file():
        return local
    return load_run_file(store, record.run_id, name)


def missing_log(store: Store, record: RunRecord, name: str) -> str:
    """Why there is no log to show: still running on another host, or none anywhere."""
    path = Path(record.run_dir or "") / name
    if not keeps_files(store):
        return f"run {record.run_id} has no log at {path}"
    if record.status == "running":
        return (f"run {record.run_id} is still running on host {run_host(record)}: its log is stored in "
                f"the database when it ends; until then it is in {path} on that host")
    return (f"run {record.run_id} has no log at {path}, and none is stored in the database "
            f"(it ran on host {run_host(record)})")


def report_here(store: Store, record: RunRecord, settings: Settings) -> tuple[Path, str | None]:
    """The run's ``report.html`` and a note on where it came from (None: written as ever).

    In the run's folder when that is on this host (or on SQLite); else the stored copy, or one
    rendered from the run history, written into this host's runs dir.
    """
    from shared.report import render_report, write_report

    if not keeps_files(store) or is_local(record):
        return write_report(store, record.run_id, settings), None
    destination = settings.runs_dir / record.run_id / "report.html"
    stored = load_run_file(store, record.run_id, "report.html")
    if stored is not None:
        data, note = stored.data, stored.note("report")
    else:
        data = render_report(record, store.list_items(record.run_id), settings).encode("utf-8")
        state = "is still running" if record.status == "running" else "ran"
        note = (f"report of run {record.run_id} made here from the run history: the run {state} on host "
                f"{run_host(record)}, whose folder has its log and screenshots")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(destination) as temporary:
        temporary.write_bytes(data)
    return destination, note
