"""A chain's folder: its daily files, their digests, retention, and the file primitives beneath.

The folder of a chain is ``<log_dir>/audit`` or ``<log_dir>/audit/hosts/<host>``
(:func:`chain_directory`). :class:`_DayFiles` is the part of :class:`shared.audit.AuditLog` that
deals with the folder as files: the paths of the daily files and digests, the lock appends take,
the digest that seals a closed day, and the deletion of old days (with the marker that tells a
retention gap from a missing day).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from loguru import logger

from shared.audit.format import Digest, _canonical, _peek, _utc
from shared.errors import AuditError

_DAY_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.jsonl")
_DIGEST_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.digest\.json")

#: Under ``<log_dir>/audit``: one folder per host's chain (``KANSLI_HOST_ID``).
HOSTS_DIR = "hosts"


def chain_directory(root: Path, chain: str | None) -> Path:
    """The folder of ``chain`` under the audit root: the root itself, or ``hosts/<host>``."""
    return root / HOSTS_DIR / chain if chain else root


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _atomic_write(path: Path, payload: bytes, *, durable: bool) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(payload)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)


def _append_bytes(path: Path, payload: bytes) -> None:
    """Append ``payload`` with one write (looping only on a short write), then fsync."""
    created = not path.exists()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _last_event(path: Path) -> tuple[tuple[int, str] | None, bool]:
    """The last complete event of a file (seq, hash) and whether the file ends without a newline."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, False
    block = 8192
    with path.open("rb") as handle:
        while size:
            start = max(0, size - block)
            handle.seek(start)
            data = handle.read(size - start)
            lines = data.split(b"\n")
            for raw in reversed(lines[1:] if start else lines):
                fields = _peek(raw + b"\n") if raw else None
                if fields is not None:
                    return (fields[0], fields[2].decode()), not data.endswith(b"\n")
            if start == 0:
                return None, not data.endswith(b"\n")
            block *= 8
    return None, False


class _DayFiles:
    """The daily files and digests of one chain's folder, and the lock appends to it take.

    :class:`shared.audit.AuditLog` sets the attributes below in its ``__init__``.
    """

    directory: Path
    read_only: bool
    _digest: Digest
    _clock: Callable[[], datetime]
    _thread_lock: threading.RLock
    _file_lock: FileLock

    # -- paths --------------------------------------------------------------------------------

    @property
    def head_path(self) -> Path:
        return self.directory / "head.json"

    @property
    def retention_path(self) -> Path:
        return self.directory / "retention.json"

    def day_path(self, day: date) -> Path:
        return self.directory / f"{day.isoformat()}.jsonl"

    def digest_path(self, day: date) -> Path:
        return self.directory / f"{day.isoformat()}.digest.json"

    def day_files(self, since: date | None = None, until: date | None = None) -> list[tuple[date, Path]]:
        """The daily files, oldest first, optionally only those in ``since..until``."""
        found = self._dated(_DAY_FILE)
        return [
            (day, path)
            for day, path in sorted(found.items())
            if (since is None or day >= since) and (until is None or day <= until)
        ]

    def digest_files(self) -> dict[date, Path]:
        return self._dated(_DIGEST_FILE)

    def _dated(self, pattern: re.Pattern[str]) -> dict[date, Path]:
        found: dict[date, Path] = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return found
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match:
                try:
                    found[date.fromisoformat(match.group(1))] = Path(entry.path)
                except ValueError:
                    continue
        return found

    # -- the lock -----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self.read_only:
            raise AuditError(f"the audit trail in {self.directory} is another host's: it is only read here")
        with self._thread_lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._file_lock.acquire()
            except Timeout:
                raise AuditError("the audit trail is locked by another process") from None
            except OSError as error:
                raise AuditError(f"cannot open the audit trail: {error.strerror}") from None
            try:
                yield
            finally:
                self._file_lock.release()

    def _now(self) -> datetime:
        return _utc(self._clock())

    # -- digests ------------------------------------------------------------------------------

    def close_day(self, day: date) -> Path | None:
        """Write the digest of a past day (idempotent); the digest's path, or None if no events."""
        if day >= self._now().date():
            raise AuditError(f"cannot close {day.isoformat()}: the day is not over")
        with self._locked():
            return self._seal(day)

    def seal_closed_days(self) -> list[Path]:
        """Write every missing digest for the days before today."""
        with self._locked():
            return self._seal_before(self._now().date())

    def _seal_before(self, today: date) -> list[Path]:
        digests = self.digest_files()
        written = []
        for day, _ in self.day_files(until=today - timedelta(days=1)):
            if day not in digests:
                path = self._seal(day)
                if path is not None:
                    written.append(path)
        return written

    def _seal(self, day: date) -> Path | None:
        target = self.digest_path(day)
        if target.exists():
            return target
        fields = self._day_stats(day)
        if fields is None:
            return None
        fields["digest_hash"] = self._digest(_canonical(fields)).decode()
        _atomic_write(target, _canonical(fields) + b"\n", durable=True)
        logger.debug("audit day {} sealed: events {}..{}", day, fields["first_seq"], fields["last_seq"])
        return target

    def _day_stats(self, day: date) -> dict[str, Any] | None:
        first: tuple[int, bytes, bytes] | None = None
        last: tuple[int, bytes, bytes] | None = None
        count = 0
        path = self.day_path(day)
        if not path.exists():
            return None
        with path.open("rb") as handle:
            for line in handle:
                fields = _peek(line if line.endswith(b"\n") else line + b"\n")
                if fields is not None:
                    first = first or fields
                    last, count = fields, count + 1
        if first is None or last is None:
            return None
        return {
            "date": day.isoformat(),
            "first_seq": first[0],
            "first_prev_hash": first[1].decode(),
            "last_seq": last[0],
            "last_hash": last[2].decode(),
            "count": count,
        }

    def _digest_valid(self, digest: dict[str, Any]) -> bool:
        fields = {key: value for key, value in digest.items() if key != "digest_hash"}
        types = {"first_seq": int, "last_seq": int, "count": int, "last_hash": str}
        if any(not isinstance(fields.get(name), kind) for name, kind in types.items()):
            return False
        if not isinstance(fields.get("first_prev_hash"), str):
            return False
        stored = digest.get("digest_hash")
        return isinstance(stored, str) and self._digest(_canonical(fields)) == stored.encode()

    # -- retention ----------------------------------------------------------------------------

    def _retain(self, days: int) -> list[Path]:
        today = self._now().date()
        self._seal_before(today)
        cutoff = today - timedelta(days=days)
        doomed = [(day, path) for day, path in self.day_files()[:-1] if day < cutoff]
        if not doomed:
            return []
        through = max(doomed[-1][0], self.retention_through() or date.min)
        marker: dict[str, Any] = {"deleted_through": through.isoformat()}
        marker["marker_hash"] = self._digest(_canonical(marker)).decode()
        _atomic_write(self.retention_path, _canonical(marker) + b"\n", durable=True)
        for _, path in doomed:
            path.unlink()
        logger.info("audit retention: {} daily files up to {} deleted", len(doomed), through)
        return [path for _, path in doomed]

    def retention_through(self) -> date | None:
        """The last day deleted by retention, when ``retention.json`` verifies."""
        marker = _read_json(self.retention_path)
        if marker is None:
            return None
        through = marker.get("deleted_through")
        fields = {"deleted_through": through}
        stored = marker.get("marker_hash")
        if not isinstance(through, str) or not isinstance(stored, str):
            return None
        if self._digest(_canonical(fields)) != stored.encode():
            return None
        try:
            return date.fromisoformat(through)
        except ValueError:
            return None
