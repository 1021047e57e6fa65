"""What a verification of the audit trail found: the kind of problem, where it is, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


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
