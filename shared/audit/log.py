"""The audit trail: an append-only, hash-chained log that an auditor can prove was not edited.

Every event is one line of canonical JSON in a daily file ``<log_dir>/audit/YYYY-MM-DD.jsonl`` (UTC
date)::

    {"actor":"anna@ws12","data":{"status":"done"},"event":"run.finished","prev_hash":"<64 hex>",
     "robot":"faktura","run_id":"r-17","seq":42,"time":"2026-11-25T14:20:01.123456+00:00","hash":"<64 hex>"}

(one line in the file). The keys are sorted, with ``hash`` moved to the end. ``hash`` is SHA-256
(HMAC-SHA256 when a key is configured) over the canonical JSON of the event without ``hash``
(``sort_keys``, separators ``(",", ":")``, ``ensure_ascii=False``, UTF-8). Because of that layout
the hashed bytes are exactly the line up to ``,"hash":"`` plus ``}``, which is what lets
:meth:`AuditLog.verify` check a million events in a few seconds. ``seq`` is global and never restarts;
``prev_hash`` is the previous event's ``hash`` (64 zeros for the first event).

When a day closes, a digest ``YYYY-MM-DD.digest.json`` records its first and last event and a hash
over those fields, so a whole day's file cannot disappear unnoticed. ``head.json`` caches the last
``seq``/``hash``; the files themselves are always the truth. With an :class:`AuditAnchor`, every
append also records the head, and every 100th event a checkpoint, in the run history database,
where an attacker with write access to the audit folder cannot follow (docs/audit.md has the table
of what each attacker can hide).

Several hosts (``KANSLI_HOST_ID`` set) keep one chain each, in ``<log_dir>/audit/hosts/<host>/``
with its own files, lock and numbering, anchored in the shared database under its host
(:mod:`shared.audit_trails` verifies and searches all of them). Their events carry ``"host":"<host>"``,
hashed like every field; it sorts between ``event`` and ``prev_hash``, so the layout above still holds.

Every field passes :func:`shared.redaction.redact_value` before it is hashed or written: no secret and
no personal identity number ever reaches the trail (with a pseudonym key, numbers become stable
pseudonyms instead of masks).

Conventional ``data`` keys: ``status`` (run or item status), ``outcome``, ``item_key``, ``counts``,
``error`` (an exception class name), ``schedule``, ``trigger``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, NoReturn, TypeVar

from filelock import FileLock, Timeout
from loguru import logger

from shared.errors import AuditError
from shared.redaction import is_personnummer, pseudonym, redact_value

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.store import Store

ZERO_HASH = "0" * 64

#: Every event type Kansli writes (docs/audit.md lists them); ``kansli audit search --event`` accepts these.
EVENT_TYPES = (
    "config.loaded", "run.started", "item.outcome", "run.finished", "run.skipped", "run.status_changed",
    "run.missed", "run.triggered", "schedule.trigger.started", "schedule.paused", "schedule.resumed",
    "schedule.synced", "daemon.started", "daemon.stopped", "audit.retention", "audit.unanchored",
    "audit.anchor_mismatch", "run.scheduled", "run.shifted", "run.retry", "run.resubmit",
    "item.enqueued", "queue.enqueued", "items.skipped", "queue.retry", "queue.forget", "mail.filed",
    "file.downloaded", "file.uploaded",
    "daemon.leading", "daemon.lost_lead",
)
LOCK_TIMEOUT = 60.0

_SEP = b',"hash":"'
_END = b'"}\n'
_TIME_KEY = b',"time":"'
_PREV_KEY = b'"prev_hash":"'
_SEQ_KEY = b',"seq":'
# Offsets from the end of a canonical line: ,"hash":"<64>"}\n is 76 bytes, the time value 32.
_SUFFIX = 76
_TIME_END = -109
_SEQ_END = -118
_DAY_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.jsonl")
_DIGEST_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.digest\.json")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NUMBER = re.compile(r"(?<![\d])(?:19|20)?\d{6}[-+]?\d{4}(?![\d])")

Digest = Callable[[bytes], bytes]
_T = TypeVar("_T")


class ProblemKind(StrEnum):
    """What went wrong with the trail."""

    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    MISSING_DAY = "missing day"
    TORN = "torn"
    UNANCHORED = "unanchored"
    MISSING_CHAIN = "missing chain"


@dataclass(frozen=True)
class Problem:
    """One finding of :meth:`AuditLog.verify`: where it is and what it is."""

    kind: ProblemKind
    file: Path | None
    line: int | None
    message: str

    def where(self) -> str:
        if self.file is None:
            return "the audit trail"
        return str(self.file) if self.line is None else f"{self.file}:{self.line}"


@dataclass
class VerifyReport:
    """The outcome of a verification. ``ok`` is False only for tampering or loss."""

    ok: bool
    events: int
    files: int
    first_seq: int | None
    last_seq: int | None
    problem: Problem | None = None
    torn: Problem | None = None
    torn_at_end: bool = False
    last_hash: str | None = None
    notes: list[str] = field(default_factory=list)
    #: The host whose chain this is; None for the chain of an installation without host ids.
    chain: str | None = None

    @property
    def status(self) -> str:
        """``intact``, ``torn`` (last line cut off by a crash; not tampering) or ``broken``."""
        if self.problem is not None:
            return "broken"
        return "torn" if self.torn is not None and self.torn_at_end else "intact"

    @property
    def name(self) -> str:
        """``audit trail``, or ``audit trail of host <host>`` for a host's chain."""
        return "audit trail" if self.chain is None else f"audit trail of host {self.chain}"

    def summary(self) -> str:
        """One line for a console or a report."""
        if self.problem is not None:
            problem = self.problem
            return f"{self.name} BROKEN ({problem.kind}) at {problem.where()}: {problem.message}"
        span = f" (seq {self.first_seq}..{self.last_seq})" if self.events else ""
        text = f"{self.name} intact: {self.events} events{span} in {self.files} files"
        if self.torn is not None:
            text += f"; {self.torn.message} at {self.torn.where()}"
        return text + "".join(f"; {note}" for note in self.notes)


class _Broken(Exception):
    """Internal: stops a verification at its first problem."""

    def __init__(self, kind: ProblemKind, file: Path | None, line: int | None, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(kind, file, line, message)


class _Entry(NamedTuple):
    seq: int
    prev: bytes
    hash: bytes
    intact: bool
    body: bytes | None


class AuditEvent(NamedTuple):
    """An event to append: its type, the run and robot it concerns, who did it, and its data."""

    event: str
    run_id: str | None = None
    robot: str | None = None
    actor: str | None = None
    data: Mapping[str, Any] | None = None


class _Head(NamedTuple):
    seq: int
    hash: str
    newest: Path | None
    needs_newline: bool


def current_actor() -> str:
    """``user@host`` of this process; robust when the user name cannot be looked up."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError, ImportError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    try:
        host = socket.gethostname() or "localhost"
    except OSError:
        host = "localhost"
    return f"{user}@{host}"


def _canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _make_digest(key: str | None) -> Digest:
    """Hex digest (as ASCII bytes): SHA-256, or HMAC-SHA256 with precomputed pads when keyed."""
    sha256 = hashlib.sha256
    if key is None:
        return lambda data: sha256(data).hexdigest().encode()
    secret = key.encode("utf-8")
    if len(secret) > 64:
        secret = sha256(secret).digest()
    secret = secret.ljust(64, b"\0")
    inner = sha256(secret.translate(bytes(byte ^ 0x36 for byte in range(256))))
    outer = sha256(secret.translate(bytes(byte ^ 0x5C for byte in range(256))))

    def hmac_hex(data: bytes) -> bytes:
        first = inner.copy()
        first.update(data)
        second = outer.copy()
        second.update(first.digest())
        return second.hexdigest().encode()

    return hmac_hex


def _peek(line: bytes) -> tuple[int, bytes, bytes] | None:
    """``(seq, prev_hash, hash)`` of a structurally complete line, without checking the hash."""
    if line[-3:] == _END and line[-76:-67] == _SEP and line[_SEQ_END:_TIME_END] == _TIME_KEY:
        colon = line.rfind(b":", 0, _SEQ_END)
        start = line.rfind(_PREV_KEY, 0, colon)
        if start >= 0 and line[colon - 6 : colon + 1] == _SEQ_KEY:
            try:
                return int(line[colon + 1 : _SEQ_END]), line[start + 13 : start + 77], line[-67:-3]
            except ValueError:
                pass
    entry = _inspect(line, None)
    return None if entry is None or entry.seq < 0 else (entry.seq, entry.prev, entry.hash)


def _inspect(line: bytes, digest: Digest | None) -> _Entry | None:
    """Parse a line the slow, definitional way; None when it is not JSON at all (torn)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    broken = _Entry(-1, b"", b"", False, None)
    if not isinstance(value, dict):
        return broken
    stored, seq, prev = value.pop("hash", None), value.get("seq"), value.get("prev_hash")
    if type(seq) is not int or not isinstance(prev, str) or not isinstance(stored, str):
        return broken
    if not _HEX64.fullmatch(stored) or not _HEX64.fullmatch(prev):
        return broken
    try:
        body = _canonical(value)
    except ValueError:
        return broken
    intact = digest is not None and digest(body) == stored.encode()
    return _Entry(seq, prev.encode(), stored.encode(), intact, body)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


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


class AuditLog:
    """The hash-chained audit trail in one directory (usually ``<log_dir>/audit``).

    Appends are serialised across threads and processes by ``<dir>/.lock``. ``clock`` returns the
    current time (UTC); tests inject one to write several days. ``chain`` is the host whose chain
    this is (its events carry it as ``host``, its anchor is kept under it; None: the chain of an
    installation without host ids). ``read_only``: another host's chain, read without ever taking
    its lock (no lock crosses hosts); appending to it raises :class:`AuditError`.
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

    # -- writing ------------------------------------------------------------------------------

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


class _Verifier:
    """One streaming pass over the trail. State: the next expected ``seq`` (0: trust the next
    event) and the last accepted hash."""

    def __init__(
        self,
        log: AuditLog,
        since: date | None,
        until: date | None,
        anchor: tuple[int, str] | None,
    ) -> None:
        self.log, self.since, self.until = log, since, until
        self.digest = log._digest
        # (label, seq, hash, trusted): trusted checks are kept away from the files (the database)
        self.checks: list[tuple[str, int, bytes, bool]] = []
        if anchor is not None:
            self.checks.append(("anchor", anchor[0], anchor[1].encode(), True))
        self.database_head: tuple[int, str] | None = None
        self.anchored = False  # the database's head and checkpoints were read
        self.watch: set[int] = {1}
        self.watched: dict[int, tuple[bytes, Path, int]] = {}
        self.exp, self.last = 1, ZERO_HASH.encode()
        self.last_at: tuple[Path, int | None] | None = None
        self.events = self.files = self.file_start = self.file_lines = 0
        self.first_seq: int | None = None
        self.retained: date | None = None
        self.last_file: Path | None = None
        self.last_day: date | None = None
        self.pending: tuple[Problem, int] | None = None
        self.torn: Problem | None = None
        self.torn_at_end = False
        self.notes: list[str] = []

    def run(self) -> VerifyReport:
        self._read_head_file()
        self._read_database()
        self.watch.update(seq + offset for _, seq, _, _ in self.checks for offset in (0, 1))
        problem = None
        try:
            self._check_present()
            plan = self._plan()
            self._start()
            self._walk(plan)
            self._finish()
        except _Broken as broken:
            problem = broken.problem
        return self._report(problem)

    def _read_head_file(self) -> None:
        """head.json is read before any line, so appends made during the pass cannot confuse it."""
        stored = _read_json(self.log.head_path)
        if stored is None or self.until is not None:
            return
        seq, digest = stored.get("seq"), stored.get("hash")
        if isinstance(seq, int) and isinstance(digest, str):
            self.checks.append(("head.json", seq, digest.encode(), False))

    def _read_database(self) -> None:
        """The head and checkpoints anchored in the run history database, read before any line."""
        anchor = self.log.anchor
        if anchor is None:
            return
        try:
            head, points = anchor.head(), anchor.checkpoints()
        except _database_errors() as error:
            self.notes.append(f"the database anchor could not be read ({type(error).__name__})")
            return
        self.anchored = True
        if head is not None:
            self.database_head = head
            self.checks.append(("database's head anchor", head[0], head[1].encode(), True))
        for seq, digest, note in points:
            self.checks.append(("database checkpoint", seq, digest.encode(), True))
            if note and note.startswith("events seq"):
                self.notes.append(note)

    def _check_present(self) -> None:
        """A chain the database anchors events of must have files: a deleted folder is named."""
        head = self.database_head
        if head is None or head[0] == 0 or self.log.day_files() or self.log.digest_files():
            return
        whose = "the trail" if self.log.chain is None else f"host {self.log.chain}'s trail"
        raise _Broken(
            ProblemKind.MISSING_CHAIN,
            self.log.directory,
            None,
            f"{whose} is gone: {self.log.directory} holds no audit files, but the database anchors "
            f"its events up to seq {head[0]} (the folder or its files were deleted)",
        )

    def _report(self, problem: Problem | None) -> VerifyReport:
        return VerifyReport(
            ok=problem is None,
            events=self.events,
            files=self.files,
            first_seq=self.first_seq,
            last_seq=self.exp - 1 if self.events else None,
            problem=problem,
            torn=self.torn,
            torn_at_end=self.torn_at_end,
            last_hash=self.last.decode() if self.events else None,
            notes=self.notes,
            chain=self.log.chain,
        )

    def _plan(self) -> list[tuple[date, Path | None]]:
        files = dict(self.log.day_files())
        days = sorted(set(files) | set(self.log.digest_files()))
        return [
            (day, files.get(day))
            for day in days
            if (self.since is None or day >= self.since) and (self.until is None or day <= self.until)
        ]

    def _start(self) -> None:
        """With ``since``: start from the preceding day's digest, or trust the first event."""
        self.retained = self.log.retention_through()
        if self.since is None:
            return
        since = self.since
        files = dict(self.log.day_files(until=since - timedelta(days=1)))
        earlier = [*files, *(day for day in self.log.digest_files() if day < since)]
        if earlier and max(earlier) not in self.log.digest_files():
            last = _last_event(files[max(earlier)])[0]
            if last is not None:  # the day is not closed yet: continue from its last event
                self.exp, self.last = last[0] + 1, last[1].encode()
                self.last_at = (files[max(earlier)], None)
                return
        if not earlier or max(earlier) not in self.log.digest_files():
            self.exp = 0
            self.notes.append(f"the link of the first event on or after {since} to earlier days is trusted")
            return
        digest = self._load_digest(max(earlier))
        self.exp, self.last = digest["last_seq"] + 1, digest["last_hash"].encode()
        self.last_at = (self.log.digest_path(max(earlier)), None)

    def _walk(self, plan: list[tuple[date, Path | None]]) -> None:
        for index, (day, path) in enumerate(plan):
            if path is None:
                self._digest_only(day)
                continue
            later = [other for _, other in plan[index + 1 :] if other is not None]
            start = self.events
            self._scan(path, later)
            self._resolve_pending()
            self._check_digest(day, path, start)
            self.last_day, self.last_file = day, path

    def _scan(self, path: Path, later: list[Path]) -> None:
        """The hot loop: canonical, chained lines are checked over their raw bytes."""
        self.files += 1
        self.file_start = self.events
        digest, watch = self.digest, self.watch
        exp, last, count, last_line, number = self.exp, self.last, 0, 0, 0
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                needle = b',"seq":%d,"time":"' % exp
                start = line.rfind(_PREV_KEY, 0, _TIME_END)
                stored = line[-67:-3]
                if (
                    line[-3:] == _END
                    and line[-76:-67] == _SEP
                    and line[_TIME_END - len(needle) : _TIME_END] == needle
                    and line[start + 13 : start + 77] == last
                    and digest(line[:-_SUFFIX] + b"}") == stored
                ):
                    if exp in watch:
                        self.watched[exp] = (stored, path, number)
                    exp, last, count, last_line = exp + 1, stored, count + 1, number
                    continue
                self._sync(exp, last, count, path, last_line)
                self._anomaly(path, number, line, handle, later)
                exp, last, count, last_line = self.exp, self.last, 0, 0
        self._sync(exp, last, count, path, last_line)
        self.file_lines = number

    def _sync(self, exp: int, last: bytes, count: int, path: Path, last_line: int) -> None:
        if count:
            if self.first_seq is None:
                self.first_seq = exp - count
            self.events += count
            self.last_at = (path, last_line)
        self.exp, self.last = exp, last

    def _anomaly(self, path: Path, number: int, line: bytes, handle: Any, later: list[Path]) -> None:
        self._resolve_pending()
        entry = _inspect(line, self.digest)
        if entry is None:
            self._torn_line(path, number, line, handle, later)
        elif not entry.intact:
            raise _Broken(ProblemKind.EDITED, path, number, self._edit_message(entry, number))
        elif self.exp == 0 or (entry.seq == self.exp and entry.prev == self.last):
            self._accept(entry, path, number)
        else:
            self._broken_link(path, number, entry, handle, later)

    def _accept(self, entry: _Entry, path: Path, number: int) -> None:
        if entry.seq in self.watch:
            self.watched[entry.seq] = (entry.hash, path, number)
        if self.first_seq is None:
            self.first_seq = entry.seq
        self.exp, self.last = entry.seq + 1, entry.hash
        self.events += 1
        self.last_at = (path, number)

    def _edit_message(self, entry: _Entry, number: int) -> str:
        text = f"line {number}'s hash does not match its content: the line was edited"
        plain = _make_digest(None)
        if self.log.keyed and entry.body is not None and plain(entry.body) == entry.hash:
            return text + " and re-hashed without the key (or the log was written without a key)"
        if self.events == 0:
            return text + " (or it is verified with the wrong key)"
        return text

    def _torn_line(self, path: Path, number: int, line: bytes, handle: Any, later: list[Path]) -> None:
        if not line.endswith(b"\n") and not later:
            completed = self._reread(path, handle.tell() - len(line))
            if completed is not None:
                self._anomaly(path, number, completed, handle, later)
                return
            self.torn = Problem(
                ProblemKind.TORN, path, number, "last line torn by an interrupted write (not tampering)"
            )
            self.torn_at_end = True
            return
        if self.pending is None:
            message = "a torn line (interrupted write) was skipped; the chain continues after it"
            self.pending = (Problem(ProblemKind.TORN, path, number, message), self.exp)

    def _reread(self, path: Path, offset: int) -> bytes | None:
        """An incomplete last line may be an append in progress: look again under the lock (another
        host's chain: without it, until the line is complete or a moment has passed)."""

        def read() -> bytes:
            with path.open("rb") as handle:
                handle.seek(offset)
                return handle.readline()

        try:
            if self.log.read_only:
                line = _settled(read, lambda line: line.endswith(b"\n"), FOREIGN_WAIT)
            else:
                with self.log._file_lock.acquire(timeout=5):
                    line = read()
        except (Timeout, OSError):
            return None
        return line if line.endswith(b"\n") else None

    def _resolve_pending(self) -> None:
        if self.pending is not None and self.exp > self.pending[1]:
            self.torn = self.torn or self.pending[0]
            self.pending = None

    def _broken_link(self, path: Path, number: int, entry: _Entry, handle: Any, later: list[Path]) -> None:
        if self.pending is not None:
            torn = self.pending[0]
            raise _Broken(
                ProblemKind.EDITED,
                torn.file,
                torn.line,
                f"line {torn.line} is incomplete and the chain does not continue after it: "
                "an event was damaged, not merely cut off by a crash",
            )
        if entry.seq == self.exp:
            self._relinked(path, number)
        if entry.seq < self.exp:
            raise _Broken(
                ProblemKind.INSERTED,
                path,
                number,
                f"seq {entry.seq} appears after seq {self.exp - 1}: an extra (copied or forged) "
                "line was inserted",
            )
        if self.events == self.file_start:
            self._file_gap(path, number, entry)
        self._line_gap(path, number, entry, handle, later)

    def _relinked(self, path: Path, number: int) -> NoReturn:
        if self.last_at is None:
            raise _Broken(
                ProblemKind.EDITED, path, number, "the first event does not start from the zero hash"
            )
        file, line = self.last_at
        if line is None:
            raise _Broken(
                ProblemKind.EDITED,
                path,
                number,
                f"line {number} does not continue from {file}: the chain before it was changed",
            )
        raise _Broken(
            ProblemKind.EDITED,
            file,
            line,
            f"line {line} was changed and re-hashed: the next event ({path}:{number}) no "
            "longer links to it",
        )

    def _file_gap(self, path: Path, number: int, entry: _Entry) -> None:
        """The first event of a file skips seqs: lines lost at its start, or whole days missing."""
        missing = f"events seq {self.exp}..{entry.seq - 1} are missing"
        day = date.fromisoformat(path.stem)
        digest_path = self.log.digest_path(day)
        digest = self._load_digest(day) if digest_path.exists() else None
        if digest is not None and digest["first_seq"] == self.exp:
            raise _Broken(ProblemKind.DELETED, path, number, f"{missing} at the start of {path}")
        between: list[date] = []
        if self.last_day is not None:
            between = [self.last_day + timedelta(days=n) for n in range(1, (day - self.last_day).days)]
        if len(between) == 1:
            raise _Broken(
                ProblemKind.MISSING_DAY,
                self.log.day_path(between[0]),
                None,
                f"{missing}: the audit file for {between[0]} is missing",
            )
        if between or (digest is not None and digest["first_seq"] == entry.seq):
            span = f"between {self.last_day} and {day}" if between else f"before {day}"
            raise _Broken(ProblemKind.MISSING_DAY, path, None, f"{missing}: a day's file {span} is missing")

    def _line_gap(self, path: Path, number: int, entry: _Entry, handle: Any, later: list[Path]) -> None:
        target_at, copy_at = self._look_ahead(path, number, handle, later, entry)
        if copy_at is not None:
            raise _Broken(
                ProblemKind.INSERTED,
                path,
                number,
                f"line {number} is a copy of a later event (seq {entry.seq} appears again at {copy_at})",
            )
        if target_at is not None:
            raise _Broken(
                ProblemKind.REORDERED,
                path,
                number,
                f"seq {entry.seq} comes before seq {self.exp} (found at {target_at}): lines were moved",
            )
        raise _Broken(
            ProblemKind.DELETED,
            path,
            number,
            f"events seq {self.exp}..{entry.seq - 1} are missing before line {number}: lines were deleted",
        )

    def _look_ahead(
        self, path: Path, number: int, handle: Any, later: list[Path], entry: _Entry
    ) -> tuple[str | None, str | None]:
        target_at = None
        for where, line in _remaining(path, number, handle, later):
            fields = _peek(line if line.endswith(b"\n") else line + b"\n")
            if fields is None:
                continue
            if fields[0] == self.exp and target_at is None:
                target_at = where
            if fields[0] == entry.seq and fields[2] == entry.hash:
                return target_at, where
        return target_at, None

    def _load_digest(self, day: date) -> dict[str, Any]:
        path = self.log.digest_path(day)
        digest = _read_json(path)
        if digest is None or not self.log._digest_valid(digest) or digest.get("date") != day.isoformat():
            raise _Broken(
                ProblemKind.EDITED, path, None, f"the digest of {day} is unreadable or does not verify"
            )
        return digest

    def _check_digest(self, day: date, path: Path, start: int) -> None:
        if not self.log.digest_path(day).exists():
            return
        digest = self._load_digest(day)
        count, last_seq = self.events - start, self.exp - 1
        if digest["last_seq"] > last_seq and digest["count"] > count:
            raise _Broken(
                ProblemKind.DELETED,
                path,
                self.file_lines + 1,
                f"{path} ends at seq {last_seq} but its digest records seq {digest['last_seq']}: "
                "lines were removed from the end of the day",
            )
        if (digest["last_seq"], digest["last_hash"], digest["count"]) != (
            last_seq,
            self.last.decode(),
            count,
        ):
            raise _Broken(
                ProblemKind.EDITED,
                self.log.digest_path(day),
                None,
                f"{path} does not match its digest (count, last seq or last hash)",
            )

    def _digest_only(self, day: date) -> None:
        digest = self._load_digest(day)
        missing = self.log.day_path(day)
        span = f"events {digest['first_seq']}..{digest['last_seq']}"
        if self.retained is None or day > self.retained:
            raise _Broken(
                ProblemKind.MISSING_DAY,
                missing,
                None,
                f"the audit file for {day} is missing; its digest records {span}",
            )
        if self.exp != 0 and (
            digest["first_seq"] != self.exp or digest["first_prev_hash"] != self.last.decode()
        ):
            raise _Broken(
                ProblemKind.MISSING_DAY,
                missing,
                None,
                f"the digests around the retention gap do not link at {day}: a day is missing",
            )
        self.exp, self.last = digest["last_seq"] + 1, digest["last_hash"].encode()
        self.last_at, self.last_day = (self.log.digest_path(day), None), day
        note = f"files up to {self.retained} were deleted by retention (digests checked)"
        if note not in self.notes:
            self.notes.append(note)

    def _finish(self) -> None:
        self._resolve_pending()
        if self.pending is not None:
            torn = self.pending[0]
            message = "last line torn by an interrupted write (not tampering)"
            self.torn = Problem(ProblemKind.TORN, torn.file, torn.line, message)
            self.torn_at_end = True
        self._check_changed()
        self._check_cut()
        self._check_unanchored()

    def _check_changed(self) -> None:
        """A recorded hash the files no longer have: name the span the change lies in."""
        seen = sorted(
            (seq, label, digest, trusted)
            for label, seq, digest, trusted in self.checks
            if seq > 0 and seq in self.watched
        )
        bad = next((check for check in seen if self.watched[check[0]][0] != check[2]), None)
        if bad is None:
            return
        seq, label = bad[0], bad[1]
        good = [
            other for other, _, digest, trusted in seen
            if trusted and other < seq and self.watched[other][0] == digest
        ]
        how = "(edited and re-hashed, or cut off and re-grown)"
        if good:
            first = max(good) + 1
            _, path, line = self.watched.get(first, self.watched[seq])
            message = (
                f"events seq {first}..{seq} were changed after they were written {how}: seq {seq}'s "
                f"hash differs from the {label}, seq {first - 1}'s still matches"
            )
        else:
            _, path, line = self.watched[seq]
            message = (
                f"events up to seq {seq} were changed after they were written {how}: seq {seq}'s "
                f"hash differs from the {label}"
            )
        raise _Broken(ProblemKind.EDITED, path, line, message)

    def _check_cut(self) -> None:
        """A recorded seq beyond the trail's end: its tail was cut off."""
        if self.until is not None:
            return
        last_seq = self.exp - 1 if self.exp else 0
        beyond = [
            (seq, label) for label, seq, _, _ in self.checks if seq > last_seq and seq not in self.watched
        ]
        if not beyond:
            return
        seq, label = max(beyond)
        line = self.file_lines + 1 if self.last_file is not None else None
        raise _Broken(
            ProblemKind.TRUNCATED,
            self.last_file,
            line,
            f"the log ends at seq {last_seq} but the {label} records seq {seq}: its tail (events seq "
            f"{last_seq + 1}..{seq}) was cut off",
        )

    def _check_unanchored(self) -> None:
        """Events past the database's head: appended outside Kansli (or not anchored yet)."""
        anchor = self.log.anchor
        last_seq = self.exp - 1 if self.exp else 0
        if anchor is None or not self.anchored or self.until is not None or last_seq == 0:
            return
        if self.database_head is not None and self.database_head[0] >= last_seq:
            return
        errors: tuple[type[Exception], ...] = (Timeout, *_database_errors())
        try:
            current = self._anchored_head(anchor, last_seq)
        except errors:
            self.notes.append("the end of the trail could not be compared with the database anchor")
            return
        anchored = current[0] if current is not None else 0
        if anchored >= last_seq:
            return
        span = f"events seq {anchored + 1}..{last_seq}"
        if self.log.keyed:
            self.notes.append(f"{span} are not anchored in the database yet")
            return
        where = self.watched.get(anchored + 1)
        path, line = (where[1], where[2]) if where else (self.last_file, None)
        raise _Broken(
            ProblemKind.UNANCHORED,
            path,
            line,
            f"{span} are in the files but not anchored in the database: appended outside Kansli, "
            "or written while the database could not be reached (see the log)",
        )


    def _anchored_head(self, anchor: AuditAnchor, last_seq: int) -> tuple[int, str] | None:
        """The database's head once every batch already in the files is anchored: appends anchor
        under the lock, so take it; another host's lock is never taken, its head is read again until
        it reaches ``last_seq`` or a moment has passed."""
        if self.log.read_only:
            return _settled(anchor.head, lambda head: head is not None and head[0] >= last_seq, FOREIGN_WAIT)
        with self.log._file_lock.acquire(timeout=5):
            return anchor.head()


#: Seconds a verification waits for another host's append in progress (it never takes that host's lock).
FOREIGN_WAIT = 2.0


def _settled(read: Callable[[], _T], done: Callable[[_T], bool], seconds: float) -> _T:
    """``read()`` again until ``done`` says its value is final or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.02)
        value = read()
    return value


def _remaining(path: Path, number: int, handle: Any, later: list[Path]) -> Iterator[tuple[str, bytes]]:
    for offset, line in enumerate(handle, number + 1):
        yield f"{path}:{offset}", line
    for other in later:
        with other.open("rb") as stream:
            for offset, line in enumerate(stream, 1):
                yield f"{other}:{offset}", line


# -- the trail of a run -------------------------------------------------------------------------------

ANCHOR_NAME = "audit_head"


class RunAudit:
    """The audit events of one run: start and end at once, item outcomes in small batches.

    Item outcomes are written every ``batch_size`` items or ``batch_seconds`` seconds (one lock and
    one fsync per batch instead of per item), and always before the run's end event. A run killed
    between two batches loses at most that batch's item events from the trail; the run history
    (ledger) still has the items, and the next run of the robot starts with a fresh ``run.started``.
    """

    def __init__(
        self,
        log: AuditLog,
        run_id: str,
        robot: str,
        actor: str,
        *,
        batch_size: int = 50,
        batch_seconds: float = 1.0,
    ) -> None:
        self.log = log
        self.run_id, self.robot, self.actor = run_id, robot, actor
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self._pending: list[AuditEvent] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def event(self, event: str, data: Mapping[str, Any] | None = None) -> None:
        """Append ``event`` now, after any pending item events."""
        with self._lock:
            self._pending.append(AuditEvent(event, self.run_id, self.robot, self.actor, data))
            self._flush_locked()

    def item(self, key: str, outcome: str, data: Mapping[str, Any]) -> None:
        """Queue an item's outcome; written with the next batch."""
        with self._lock:
            payload = {"item_key": key, "outcome": outcome, **data}
            self._pending.append(
                AuditEvent("item.outcome", self.run_id, self.robot, self.actor, payload)
            )
            due = time.monotonic() - self._last_flush >= self.batch_seconds
            if len(self._pending) >= self.batch_size or due:
                self._flush_locked()

    def later(self, event: str, data: Mapping[str, Any]) -> None:
        """Queue any event (``item.enqueued``, ...); written with the next batch, in order."""
        with self._lock:
            self._pending.append(AuditEvent(event, self.run_id, self.robot, self.actor, data))
            if len(self._pending) >= self.batch_size:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending:
            self.log.append_many(self._pending)
            self._pending = []
        self._last_flush = time.monotonic()


def anchor_head(log: AuditLog, store: Store) -> tuple[int, str]:
    """Record the trail's head in the run history database (never moving it backwards).

    Appends of a log with an :class:`AuditAnchor` anchor every batch, under the lock and after
    comparing with the database; for such a log this only returns the head (anchoring here could
    silently anchor events added to the files outside Kansli).
    """
    from shared.store import save_audit_anchor

    seq, digest = log.head()
    if log.anchor is not None:
        return seq, digest
    stored = read_anchor(store, chain=log.chain)
    if stored is None or stored[0] < seq:
        save_audit_anchor(store, (seq, digest), [], chain=log.chain)
    return seq, digest


def read_anchor(store: Store, *, chain: str | None = None) -> tuple[int, str] | None:
    """The head last anchored in the database for ``chain`` (None: the chain without a host), or None."""
    from shared.store import load_audit_head

    return load_audit_head(store, chain=chain)


#: Under ``<log_dir>/audit``: one folder per host's chain (``KANSLI_HOST_ID``).
HOSTS_DIR = "hosts"


def chain_directory(root: Path, chain: str | None) -> Path:
    """The folder of ``chain`` under the audit root: the root itself, or ``hosts/<host>``."""
    return root / HOSTS_DIR / chain if chain else root


# -- the anchor in the run history database -----------------------------------------------------------

#: A checkpoint (seq -> hash) is kept for every event whose seq is a multiple of this.
CHECKPOINT_EVERY = 100
UNANCHORED_EVENT = "audit.unanchored"
MISMATCH_EVENT = "audit.anchor_mismatch"

_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def _shared_store(url: str) -> Store:
    """One open store per database URL and process (the scheduler appends through many AuditLogs)."""
    from shared.store import Store

    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = Store(url)
        return store


class _AnchorPlan(NamedTuple):
    """What an append found when the database's head was not the files': an event, evidence."""

    event: AuditEvent | None = None
    evidence: tuple[tuple[int, str, str | None], ...] = ()


class AuditAnchor:
    """The trail's head and checkpoints in the run history database, kept at every append batch.

    After every batch, under the trail's lock, the head (``audit_head`` in ``kansli_meta``, or
    ``audit_head:<host>`` for a host's chain: the last event's seq and hash) moves from the files'
    head before the batch to the new one: one conditional UPDATE on the already open store. Every
    ``every``-th event also leaves a checkpoint (``kansli_audit_checkpoints``: chain, seq -> hash,
    insert-only), so :meth:`AuditLog.verify`
    can tell which span of events was changed after it was written. When the database's head was
    not the files' head, the database's head is kept as evidence and an event says so:
    ``audit.unanchored`` (the files held events without an anchor) or ``audit.anchor_mismatch`` (the
    files end before the anchored head, or differ from it). A failed database write is logged as an
    error and never fails the append: the event is already on disk.
    """

    def __init__(
        self, store: Store | Callable[[], Store], *, every: int = CHECKPOINT_EVERY, chain: str | None = None
    ) -> None:
        if every < 1:
            raise AuditError("the audit checkpoint interval must be at least 1")
        self._source = store
        self._store: Store | None = None
        self.every = every
        #: The chain anchored (a host id; None: the chain without a host); an AuditLog sets its own.
        self.chain = chain or None

    def for_chain(self, chain: str | None) -> AuditAnchor:
        """The same database and interval, anchoring ``chain``."""
        anchor = AuditAnchor(self._source, every=self.every, chain=chain)
        anchor._store = self._store
        return anchor

    @property
    def store(self) -> Store:
        if self._store is None:
            source = self._source
            self._store = source() if callable(source) else source
        return self._store

    def head(self) -> tuple[int, str] | None:
        """The head last anchored, or None."""
        from shared.store import load_audit_head

        return load_audit_head(self.store, chain=self.chain)

    def checkpoints(self) -> list[tuple[int, str, str | None]]:
        """Every checkpoint ``(seq, hash, note)``; a note marks evidence an append kept."""
        from shared.store import load_audit_checkpoints

        return load_audit_checkpoints(self.store, chain=self.chain)

    def record(
        self, before: tuple[int, str], head: tuple[int, str], written: Iterable[tuple[int, str]]
    ) -> AuditEvent | None:
        """After a batch that moved the files' head from ``before`` to ``head``: anchor it, with the
        batch's checkpoints. Returns the event to append when the database's head was not ``before``."""
        from shared.store import advance_audit_head, save_audit_anchor

        every = self.every
        points = [(seq, digest, None) for seq, digest in written if seq % every == 0]
        try:
            if advance_audit_head(self.store, before, head, points, chain=self.chain):
                return None
            plan = self._compare(self.head(), before)
            save_audit_anchor(self.store, head, [*plan.evidence, *points], chain=self.chain)
        except _database_errors() as error:
            logger.error(
                "audit events up to seq {} are written but could not be anchored in the run history "
                "database: {}",
                head[0],
                error,
            )
            return None
        return plan.event

    def _compare(self, stored: tuple[int, str] | None, before: tuple[int, str]) -> _AnchorPlan:
        if stored == before or (stored is None and before[0] == 0):
            return _AnchorPlan()
        if stored is None or stored[0] < before[0]:
            return self._unanchored(stored, *before)
        return self._mismatch(stored, before[0])

    def _unanchored(self, stored: tuple[int, str] | None, seq: int, digest: str) -> _AnchorPlan:
        anchored = stored[0] if stored is not None else 0
        logger.warning(
            "audit events seq {}..{} were found without an anchor in the database (written while it "
            "could not be reached, just before a crash, or outside Kansli); anchored now",
            anchored + 1,
            seq,
        )
        note = f"events seq {anchored + 1}..{seq} were found unanchored by a later append"
        evidence: list[tuple[int, str, str | None]] = [(seq, digest, note)]
        if stored is not None:
            evidence.append((stored[0], stored[1], "an anchored head"))
        data = {"first_seq": anchored + 1, "last_seq": seq, "anchored_seq": anchored}
        return _AnchorPlan(AuditEvent(UNANCHORED_EVENT, data=data), tuple(evidence))

    def _mismatch(self, stored: tuple[int, str], seq: int) -> _AnchorPlan:
        logger.error(
            "the audit trail ended at seq {} but the database anchored seq {} with another hash: the "
            "trail's tail was cut off or changed; the anchored head is kept as evidence",
            seq,
            stored[0],
        )
        note = f"an anchored head; a later append found the trail at seq {seq}"
        data = {"anchored_seq": stored[0], "trail_seq": seq}
        return _AnchorPlan(AuditEvent(MISMATCH_EVENT, data=data), ((stored[0], stored[1], note),))

    def prune(self, log: AuditLog, through: date) -> None:
        """Drop the checkpoints of days deleted by retention (up to ``through``, per its digest)."""
        from shared.store import delete_audit_checkpoints_before

        digest = _read_json(log.digest_path(through))
        if digest is None or not log._digest_valid(digest):
            return
        try:
            delete_audit_checkpoints_before(self.store, int(digest["last_seq"]) + 1, chain=self.chain)
        except _database_errors() as error:
            logger.error("cannot prune the audit checkpoints: {}", error)


def _database_errors() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    from shared.errors import KansliError

    return (SQLAlchemyError, KansliError, OSError)
