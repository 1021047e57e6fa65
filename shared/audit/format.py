"""The line format of the audit trail: canonical JSON, its hash, and reading a line back.

:func:`_canonical` is the hashed form of an event; :func:`_make_digest` the hash (SHA-256, or
HMAC-SHA256 when keyed). :func:`_peek` reads ``seq``/``prev_hash``/``hash`` off a canonical line by
byte offsets (the fast path of verification); :func:`_inspect` parses a line the slow, definitional
way. Also here: every event type Kansli writes, the event to append (:class:`AuditEvent`) and who
appends it (:func:`current_actor`).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

ZERO_HASH = "0" * 64

#: Every event type Kansli writes (docs/audit.md lists them); ``kansli audit search --event`` accepts these.
EVENT_TYPES = (
    "config.loaded", "run.started", "item.outcome", "run.finished", "run.skipped", "run.status_changed",
    "run.missed", "run.triggered", "schedule.trigger.started", "schedule.paused", "schedule.resumed",
    "schedule.synced", "daemon.started", "daemon.stopped", "audit.retention", "audit.unanchored",
    "audit.anchor_mismatch", "run.scheduled", "run.shifted", "run.retry", "run.retry_planned",
    "run.resubmit", "item.enqueued", "queue.enqueued", "items.skipped", "queue.retry", "queue.forget",
    "mail.filed", "file.downloaded", "file.uploaded",
    "daemon.leading", "daemon.lost_lead",
)

_SEP = b',"hash":"'
_END = b'"}\n'
_TIME_KEY = b',"time":"'
_PREV_KEY = b'"prev_hash":"'
_SEQ_KEY = b',"seq":'
# Offsets from the end of a canonical line: ,"hash":"<64>"}\n is 76 bytes, the time value 32.
_SUFFIX = 76
_TIME_END = -109
_SEQ_END = -118
_HEX64 = re.compile(r"[0-9a-f]{64}")

Digest = Callable[[bytes], bytes]


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
