"""A verification of the audit trail: the streaming pass, checked against the heads recorded elsewhere.

``head.json``, an anchor given by the caller, and the head and checkpoints of the run history
database (:class:`shared.audit.anchor.AuditAnchor`) are read before any line; after the pass, a
recorded hash the files no longer have, a recorded seq beyond their end, and events past the
database's head are named (docs/audit.md has the table of what each attacker can hide).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from filelock import Timeout

from shared.audit.anchor import _database_errors
from shared.audit.days import _read_json
from shared.audit.report import Problem, ProblemKind, VerifyReport, _Broken
from shared.audit.walk import FOREIGN_WAIT, _settled, _Walk

if TYPE_CHECKING:
    from shared.audit.anchor import AuditAnchor


class _Verifier(_Walk):
    """One verification: :class:`_Walk`'s pass over the files between the reading of the recorded
    heads and the checks against them."""

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
