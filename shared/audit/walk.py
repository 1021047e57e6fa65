"""The streaming pass of a verification: the chain recomputed file by file, line by line.

:class:`_Walk` checks every line over its raw bytes (the hot loop) and, at the first line that does
not continue the chain, names what happened: an edit, a deletion, an insertion, lines moved, a day
missing, or a line torn by a crash. The checks against heads recorded elsewhere (``head.json``, an
anchor, the database) are :class:`shared.audit.verify._Verifier`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from filelock import Timeout

from shared.audit.days import _last_event, _read_json
from shared.audit.format import (
    _END,
    _PREV_KEY,
    _SEP,
    _SUFFIX,
    _TIME_END,
    ZERO_HASH,
    _Entry,
    _inspect,
    _make_digest,
    _peek,
)
from shared.audit.report import Problem, ProblemKind, VerifyReport, _Broken

if TYPE_CHECKING:
    from shared.audit.log import AuditLog

_T = TypeVar("_T")

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


class _Walk:
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
