"""The hash-chained audit trail of one chain: :class:`AuditLog`, appending, search and bulk writes.

The format, the folder and the verification are in the other modules of :mod:`shared.audit`; this
one writes events (redacted, pseudonymised, chained, fsynced and anchored) and reads them back.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from filelock import FileLock
from loguru import logger

from shared.audit.anchor import AuditAnchor, _shared_store
from shared.audit.days import (
    _append_bytes,
    _atomic_write,
    _DayFiles,
    _last_event,
    _read_json,
    chain_directory,
)
from shared.audit.format import (
    _END,
    _SEP,
    ZERO_HASH,
    AuditEvent,
    _canonical,
    _iso,
    _make_digest,
    _utc,
    current_actor,
)
from shared.audit.report import VerifyReport
from shared.audit.verify import _Verifier
from shared.errors import AuditError
from shared.redaction import is_personnummer, pseudonym, redact_value

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.store import Store

LOCK_TIMEOUT = 60.0

_NUMBER = re.compile(r"(?<![\d])(?:19|20)?\d{6}[-+]?\d{4}(?![\d])")


class _Head(NamedTuple):
    seq: int
    hash: str
    newest: Path | None
    needs_newline: bool


class AuditLog(_DayFiles):
    """The hash-chained audit trail in one directory (usually ``<log_dir>/audit``).

    Appends are serialised across threads and processes by ``<dir>/.lock``. ``clock`` returns the
    current time (UTC); tests inject one to write several days. ``chain`` is the host whose chain
    this is (its events carry it as ``host``, its anchor is kept under it; None: the chain of an
    installation without host ids). ``read_only``: another host's chain, read without ever taking
    its lock (no lock crosses hosts); appending to it raises :class:`AuditError`. The paths of its
    files, the lock, the digests of closed days and retention come from
    :class:`~shared.audit.days._DayFiles`.
    """

    def __init__(
        self,
        directory: Path,
        key: str | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        pseudonym_key: str | None = None,
        anchor: AuditAnchor | None = None,
        chain: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.chain = chain or None
        self.read_only = read_only
        self.anchor = anchor if anchor is None or anchor.chain == self.chain else anchor.for_chain(self.chain)
        self.keyed = key is not None
        self._digest = _make_digest(key)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._pseudonym_key = pseudonym_key
        self._thread_lock = threading.RLock()
        self._file_lock = FileLock(str(self.directory / ".lock"), timeout=LOCK_TIMEOUT)

    @classmethod
    def from_settings(cls, settings: Settings, *, store: Store | None = None) -> AuditLog:
        """This host's trail: ``<log_dir>/audit``, or ``<log_dir>/audit/hosts/<host_id>`` when
        ``KANSLI_HOST_ID`` is set; keyed and pseudonymised as configured, anchored in the run history
        database (``store``, or the settings' database, opened at the first append)."""
        return cls.for_chain(settings, settings.host_id, store=store)

    @classmethod
    def for_chain(
        cls, settings: Settings, chain: str | None, *, store: Store | None = None, read_only: bool = False
    ) -> AuditLog:
        """The trail of ``chain`` (a host id; None: the chain without a host) of this installation."""
        audit = settings.audit
        url = settings.effective_database_url
        return cls(
            chain_directory(settings.log_dir / "audit", chain),
            key=audit.key.get_secret_value() if audit.key else None,
            pseudonym_key=(audit.pseudonym_key.get_secret_value() if audit.pseudonym_key else None),
            anchor=AuditAnchor(store if store is not None else lambda: _shared_store(url), chain=chain),
            chain=chain,
            read_only=read_only,
        )

    # -- writing ------------------------------------------------------------------------------

    def append(
        self,
        event: str,
        *,
        run_id: str | None = None,
        robot: str | None = None,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record one event durably (fsync) and return it as written, with ``seq`` and ``hash``."""
        return self.append_many([AuditEvent(event, run_id, robot, actor, data)])[0]

    def append_many(self, events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
        """Record several events in order with one lock, one write and one fsync."""
        prepared = [self._prepare(e.event, e.run_id, e.robot, e.actor, e.data) for e in events]
        if not prepared:
            return []
        try:
            with self._locked():
                return self._append_locked(prepared)
        except OSError as error:
            raise AuditError(f"cannot write the audit trail: {error.strerror}") from None

    def _append_locked(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now = self._now()
        head = self._current_head()
        day = now.date()
        if head.newest is not None:
            day = max(day, date.fromisoformat(head.newest.stem))
        target = self.day_path(day)
        if head.newest is not None and target != head.newest:
            self._seal_before(day)
        seq, previous = head.seq, head.hash
        lines: list[bytes] = []
        written: list[dict[str, Any]] = []
        for fields in batch:
            seq += 1
            record = {**fields, "seq": seq, "prev_hash": previous, "time": _iso(now)}
            line, previous = self._encode(record)
            lines.append(line)
            written.append({**record, "hash": previous})
        payload = b"".join(lines)
        torn = head.needs_newline and target == head.newest
        _append_bytes(target, b"\n" + payload if torn else payload)
        self._write_head(seq, previous, target)
        if self.anchor is not None:
            written_hashes = [(e["seq"], e["hash"]) for e in written]
            self._anchor_note(self.anchor.record((head.seq, head.hash), (seq, previous), written_hashes))
        return written

    def _anchor_note(self, note: AuditEvent | None) -> None:
        """Append what the anchor found (the database's head was not the files' head), under the lock."""
        if note is not None:
            self._append_locked([self._prepare(*note)])

    def _prepare(
        self,
        event: str,
        run_id: str | None,
        robot: str | None,
        actor: str | None,
        data: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if not isinstance(event, str) or not event:
            raise AuditError("an audit event needs a type")
        fields = {
            "event": event,
            "run_id": run_id,
            "robot": robot,
            "actor": actor or current_actor(),
            "data": dict(data or {}),
        }
        if self.chain is not None:
            fields["host"] = self.chain
        cleaned = self._clean(fields)
        assert isinstance(cleaned, dict)
        return cleaned

    def clean(self, value: Any) -> Any:
        """``value`` as the trail would store it (to compare a value with what was written)."""
        return self._clean(value)

    def _clean(self, value: Any) -> Any:
        """JSON-safe, pseudonymised (when keyed) and redacted copy of ``value``."""
        if isinstance(value, str):
            return self._clean_text(value)
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        if isinstance(value, Mapping):
            return {self._clean_text(str(key)): self._clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(item) for item in value]
        return self._clean_text(str(value))

    def _clean_text(self, text: str) -> str:
        if self._pseudonym_key is not None:
            text = self._pseudonymise(text, self._pseudonym_key)
        return str(redact_value(text))

    @staticmethod
    def _pseudonymise(text: str, key: str) -> str:
        if not any(char.isdigit() for char in text):
            return text

        def replace(match: re.Match[str]) -> str:
            number = match.group(0)
            return pseudonym(number, key) if is_personnummer(number) else number

        return _NUMBER.sub(replace, text)

    def _encode(self, record: dict[str, Any]) -> tuple[bytes, str]:
        """The canonical line (``hash`` last, newline-terminated) and the event's hash."""
        body = _canonical(record)
        digest = self._digest(body)
        return body[:-1] + _SEP + digest + _END, digest.decode()

    def _write_head(self, seq: int, digest: str, path: Path) -> None:
        head = {"seq": seq, "hash": digest, "file": path.name}
        _atomic_write(self.head_path, _canonical(head), durable=False)

    def _current_head(self) -> _Head:
        """The chain's head: the last complete line of the newest file is the truth."""
        files = self.day_files()
        newest = files[-1][1] if files else None
        needs_newline = False
        for _, path in reversed(files):
            last, torn = _last_event(path)
            if path == newest:
                needs_newline = torn
            if last is not None:
                self._compare_head_file(last)
                return _Head(last[0], last[1], newest, needs_newline)
        seq, digest = self._fallback_head()
        return _Head(seq, digest, newest, needs_newline)

    def _compare_head_file(self, last: tuple[int, str]) -> None:
        stored = _read_json(self.head_path)
        if stored is None:
            return
        seq, digest = stored.get("seq"), stored.get("hash")
        if isinstance(seq, int) and (seq > last[0] or (seq == last[0] and digest != last[1])):
            logger.warning(
                "audit head.json (seq {}) is ahead of the log (seq {}): the log's tail may have "
                "been cut off; continuing from the log",
                seq,
                last[0],
            )

    def _fallback_head(self) -> tuple[int, str]:
        """No daily file holds an event: continue from head.json or the newest digest."""
        best = (0, ZERO_HASH)
        stored = _read_json(self.head_path)
        if stored and isinstance(stored.get("seq"), int) and isinstance(stored.get("hash"), str):
            best = (stored["seq"], stored["hash"])
        for path in self.digest_files().values():
            digest = _read_json(path)
            if digest and self._digest_valid(digest) and digest["last_seq"] > best[0]:
                best = (digest["last_seq"], digest["last_hash"])
        return best

    def head(self) -> tuple[int, str]:
        """``(last seq, last hash)``; ``(0, ZERO_HASH)`` for an empty trail."""
        head = self._current_head()
        return head.seq, head.hash

    # -- retention ----------------------------------------------------------------------------

    def apply_retention(self, days: int) -> list[Path]:
        """Delete daily files older than ``days`` days (never when ``days`` <= 0; digests stay).

        The deletion is recorded in ``retention.json`` and as an ``audit.retention`` event, so
        :meth:`verify` tells a deliberate retention gap from a missing day.
        """
        if days <= 0:
            return []
        with self._locked():
            deleted = self._retain(days)
            if deleted and self.anchor is not None:
                self.anchor.prune(self, date.fromisoformat(deleted[-1].stem))
            if deleted:
                self.append(
                    "audit.retention",
                    data={"days": days, "files": len(deleted), "deleted_through": deleted[-1].stem},
                )
        return deleted

    # -- reading ------------------------------------------------------------------------------

    def verify(
        self,
        since: date | None = None,
        until: date | None = None,
        anchor: tuple[int, str] | None = None,
    ) -> VerifyReport:
        """Recompute the chain file by file, line by line; report the first problem found.

        ``anchor`` is a head ``(seq, hash)`` recorded elsewhere. A log with an :class:`AuditAnchor`
        also checks the head and checkpoints of its database (see docs/audit.md).
        """
        return _Verifier(self, since, until, anchor).run()

    def search(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        robot: str | None = None,
        run_id: str | None = None,
        actor: str | None = None,
        event: str | None = None,
        status: str | None = None,
        item_key: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream the events that match every given filter, oldest first.

        ``status`` matches ``data.status`` or ``data.outcome``; ``item_key`` matches
        ``data.item_key``. Values are redacted/pseudonymised like the events themselves, so a
        personnummer finds its pseudonym.
        """
        top = {"robot": robot, "run_id": run_id, "actor": actor, "event": event}
        wanted = {name: self._clean(value) for name, value in top.items() if value is not None}
        extra: dict[str, Any] = {}
        if status is not None:
            extra["status"] = self._clean(status)
        if item_key is not None:
            extra["item_key"] = self._clean(item_key)
        needles = [b'"%s":%s' % (name.encode(), _canonical(value)) for name, value in wanted.items()]
        needles += [_canonical(value) for value in extra.values()]
        for _, path in self.day_files(since, until):
            yield from _search_file(path, needles, wanted, extra)

    def _write_bulk(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append many events under one lock with buffered writes (benchmarks, imports).

        Each record has ``event`` and ``time`` (a datetime) and optionally ``run_id``, ``robot``,
        ``actor``, ``data``. The result is the same valid chain :meth:`append` would write.
        """
        with self._locked():
            head = self._current_head()
            writer = _BulkWriter(self, head)
            for record in records:
                fields = self._prepare(
                    record["event"],
                    record.get("run_id"),
                    record.get("robot"),
                    record.get("actor"),
                    record.get("data"),
                )
                writer.write(fields, _utc(record["time"]))
            count = writer.close()
            if self.anchor is not None and count:
                before, after = (head.seq, head.hash), (writer.seq, writer.hash)
                self._anchor_note(self.anchor.record(before, after, writer.checkpoints))
            return count


class _BulkWriter:
    def __init__(self, log: AuditLog, head: _Head) -> None:
        self.log, self.seq, self.hash = log, head.seq, head.hash
        self.path = head.newest
        self.day = date.fromisoformat(head.newest.stem) if head.newest else date.min
        self.handle: BinaryIO | None = None if head.newest is None else head.newest.open("ab")
        if self.handle is not None and head.needs_newline:
            self.handle.write(b"\n")
        self.count = 0
        self.every = log.anchor.every if log.anchor is not None else 0
        self.checkpoints: list[tuple[int, str]] = []

    def write(self, fields: dict[str, Any], moment: datetime) -> None:
        day = max(self.day, moment.date())
        if day != self.day or self.handle is None:
            self._switch(day)
        self.seq += 1
        record = {**fields, "seq": self.seq, "prev_hash": self.hash, "time": _iso(moment)}
        line, self.hash = self.log._encode(record)
        assert self.handle is not None
        self.handle.write(line)
        self.count += 1
        if self.every and self.seq % self.every == 0:
            self.checkpoints.append((self.seq, self.hash))

    def _switch(self, day: date) -> None:
        self._flush_close()
        if self.path is not None:
            self.log._seal_before(day)
        self.day, self.path = day, self.log.day_path(day)
        self.handle = self.path.open("ab", buffering=1 << 20)

    def _flush_close(self) -> None:
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            self.handle = None

    def close(self) -> int:
        self._flush_close()
        if self.path is not None and self.count:
            self.log._write_head(self.seq, self.hash, self.path)
        return self.count


def _search_file(
    path: Path, needles: list[bytes], wanted: dict[str, Any], extra: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            if not all(needle in line for needle in needles):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and _matches(event, wanted, extra):
                yield event


def _matches(event: dict[str, Any], wanted: dict[str, Any], extra: dict[str, Any]) -> bool:
    if any(event.get(name) != value for name, value in wanted.items()):
        return False
    data = event.get("data")
    data = data if isinstance(data, dict) else {}
    if "status" in extra and extra["status"] not in (data.get("status"), data.get("outcome")):
        return False
    return "item_key" not in extra or data.get("item_key") == extra["item_key"]
