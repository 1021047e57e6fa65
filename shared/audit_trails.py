"""Every audit chain of an installation, verified and searched together (several hosts).

An installation whose hosts set ``KANSLI_HOST_ID`` keeps one hash chain per host, in
``<log_dir>/audit/hosts/<host>/`` on the shared log directory, each with its own files, lock and
numbering, and its head and checkpoints anchored in the shared run history database under its host
(:class:`shared.audit.AuditAnchor`). A host only ever locks and appends to its own chain, so no file
lock crosses hosts; reading another host's chain takes no lock either. The chain of an installation
without host ids (``<log_dir>/audit`` itself) is one more chain, named None here.

:class:`AuditTrails` finds the chains (the folders there are, and every chain the database holds an
anchor of: a chain whose folder was deleted is still found, and reported), verifies each
(:meth:`shared.audit.AuditLog.verify`) and merges their events by time for a search.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.audit import HOSTS_DIR, AuditLog, VerifyReport, _database_errors, _shared_store
from shared.errors import UsageError

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.store import Store

_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # as Settings.host_id
_TRAIL_FILE = re.compile(r"\d{4}-\d{2}-\d{2}\.(?:jsonl|digest\.json)|head\.json")


class AuditTrails:
    """The audit chains of the installation of ``settings``, anchored in ``store`` (or the settings'
    database). This host's chain (``settings.host_id``) is opened for writing as usual; every other
    chain read-only, without its lock."""

    def __init__(self, settings: Settings, *, store: Store | None = None) -> None:
        self.settings = settings
        self.root = settings.log_dir / "audit"
        self.own = settings.host_id
        self._store = store

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = _shared_store(self.settings.effective_database_url)
        return self._store

    def chains(self) -> list[str | None]:
        """Every chain: the chain without a host when it has files, every folder under ``hosts/``,
        every chain anchored in the database, and this host's (when it has a host id, or there is no
        other chain); the chain without a host first."""
        found: set[str | None] = {*self._folders(), *self._anchored()}
        if _holds_trail(self.root):
            found.add(None)
        if self.own is not None or not found:
            found.add(self.own)
        return sorted(found, key=lambda chain: (chain is not None, chain or ""))

    def _folders(self) -> list[str]:
        try:
            entries = list(os.scandir(self.root / HOSTS_DIR))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [entry.name for entry in entries if entry.is_dir() and _HOST.fullmatch(entry.name)]

    def _anchored(self) -> list[str | None]:
        from shared.store import anchored_audit_chains

        try:
            return anchored_audit_chains(self.store)
        except _database_errors():
            return []  # each chain's verification notes that the database could not be read

    def log(self, chain: str | None) -> AuditLog:
        """The trail of ``chain``: writable for this host's own chain, read-only for any other."""
        return AuditLog.for_chain(self.settings, chain, store=self._store, read_only=chain != self.own)

    def select(self, host: str | None = None) -> list[str | None]:
        """The chains to look at: all, or only ``host``'s (a :class:`UsageError` if it has none)."""
        chains = self.chains()
        if host is None:
            return chains
        if host not in chains:
            known = ", ".join(chain for chain in chains if chain is not None) or "none"
            raise UsageError(f"--host {host!r}: no audit chain of that host (hosts with one: {known})")
        return [host]

    def verify(
        self, *, host: str | None = None, since: date | None = None, until: date | None = None
    ) -> list[VerifyReport]:
        """One report per chain (each names its host), the chain without a host first."""
        return [self.log(chain).verify(since=since, until=until) for chain in self.select(host)]

    def search(self, *, host: str | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        """The events of every chain (or ``host``'s) matching :meth:`AuditLog.search`'s filters,
        merged oldest first by their ``time``; an event of a host's chain carries its ``host``."""
        found = [self.log(chain).search(**filters) for chain in self.select(host)]
        if len(found) == 1:
            return found[0]
        return heapq.merge(*found, key=lambda event: str(event.get("time") or ""))


def _holds_trail(directory: Path) -> bool:
    try:
        return any(_TRAIL_FILE.fullmatch(name) for name in os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return False


def report_as_dict(report: VerifyReport) -> dict[str, Any]:
    """A chain's verification as JSON values (``kansli audit verify --json``)."""

    def problem(found: Any) -> dict[str, Any] | None:
        if found is None:
            return None
        return {"kind": str(found.kind), "file": str(found.file) if found.file else None,
                "line": found.line, "message": found.message}

    return {
        "host": report.chain, "ok": report.ok, "status": report.status, "events": report.events,
        "files": report.files, "first_seq": report.first_seq, "last_seq": report.last_seq,
        "last_hash": report.last_hash, "problem": problem(report.problem), "torn": problem(report.torn),
        "notes": list(report.notes), "summary": report.summary(),
    }
