"""Helpers of the audit trail's tests: a settable clock, trails written over days, the forger's tools
(re-hashing lines the documented way), and an anchored trail with its database (:class:`Trail`)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from shared.audit import CHECKPOINT_EVERY, ZERO_HASH, AuditAnchor, AuditLog, ProblemKind, VerifyReport
from shared.store import Store, audit_checkpoints, kv

DAY1 = date(2026, 11, 20)
PERSONNUMMER = "19850312-2395"  # valid check digit


class Clock:
    """A settable UTC clock that ticks one millisecond per call."""

    def __init__(self, day: date = DAY1) -> None:
        self.now = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def next_day(self) -> None:
        self.now = datetime.combine(self.now.date() + timedelta(days=1), self.now.time(), UTC)


def write_days(
    directory: Path, days: int = 1, per_day: int = 20, key: str | None = None
) -> tuple[AuditLog, Clock]:
    clock = Clock()
    log = AuditLog(directory, key=key, clock=clock)
    for day in range(days):
        if day:
            clock.next_day()
        for number in range(per_day):
            log.append(
                "item.outcome",
                run_id=f"run-{day}",
                robot="faktura" if number % 2 else "bygglov",
                actor="anna@ws1",
                data={"item_key": f"K-{day}-{number}", "status": "done" if number % 3 else "failed"},
            )
    return log, clock


def day_file(directory: Path, offset: int = 0) -> Path:
    return directory / f"{(DAY1 + timedelta(days=offset)).isoformat()}.jsonl"


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def recompute(line: bytes, prev_hash: str, key: bytes | None = None) -> bytes:
    """Re-hash a line the documented way (what a forger with write access would do)."""
    event = json.loads(line)
    event.pop("hash")
    event["prev_hash"] = prev_hash
    body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hmac.new(key, body, hashlib.sha256).hexdigest() if key else hashlib.sha256(body).hexdigest()
    return body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'


def rechain(path: Path, start: int, key: bytes | None = None) -> None:
    """Re-hash every line from ``start`` (1-based) on, linking each to the one before."""
    lines = read_lines(path)
    prev = json.loads(lines[start - 2])["hash"] if start > 1 else ZERO_HASH
    for index in range(start - 1, len(lines)):
        lines[index] = recompute(lines[index], prev, key)
        prev = json.loads(lines[index])["hash"]
    write_lines(path, lines)


# -- an anchored trail and its attacker ----------------------------------------------------------

DAY = date(2026, 11, 20)
EVENTS = 250  # checkpoints at 100 and 200, the head at 250


class Trail:
    """An anchored trail of one day in ``tmp_path``, with its database and the attacker's tools."""

    def __init__(self, tmp_path: Path, key: str | None = None, events: int = EVENTS) -> None:
        self.directory, self.key = tmp_path / "audit", key
        self.store = Store(f"sqlite:///{tmp_path / 'kansli.db'}")
        self.clock = Clock(DAY)
        self.log = self.open()
        for number in range(events):
            self.log.append("item.outcome", run_id="r1", robot="faktura", actor="anna@ws1",
                            data={"item_key": f"K-{number}", "outcome": "done"})

    def open(self, store: Store | None = None) -> AuditLog:
        return AuditLog(self.directory, key=self.key, clock=self.clock,
                        anchor=AuditAnchor(store or self.store))

    def verify(self) -> VerifyReport:
        return self.open().verify()

    @property
    def path(self) -> Path:
        return self.directory / f"{DAY.isoformat()}.jsonl"

    # -- the attacker, on the files ---------------------------------------------------------------

    def rehash_from(self, line: int, key: str | None = None) -> None:
        """Edit ``line`` (1-based) and re-compute every later hash, as a forger would, head.json too."""
        lines = read_lines(self.path)
        lines[line - 1] = lines[line - 1].replace(b'"outcome":"done"', b'"outcome":"app_error"')
        prev = json.loads(lines[line - 2])["hash"]
        for index in range(line - 1, len(lines)):
            lines[index] = recompute(lines[index], prev, key.encode() if key else None)
            prev = json.loads(lines[index])["hash"]
        write_lines(self.path, lines)
        self.fix_head_file()

    def cut(self, count: int) -> None:
        """Remove the last ``count`` events and make head.json match what is left."""
        write_lines(self.path, read_lines(self.path)[:-count])
        self.fix_head_file()

    def forge_appended(self, count: int, key: str | None = None) -> None:
        """Append ``count`` events with a valid unkeyed chain (or an HMAC with a guessed key)."""
        lines = read_lines(self.path)
        last = json.loads(lines[-1])
        for number in range(count):
            event = {**last, "seq": last["seq"] + 1, "data": {"item_key": f"FORGED-{number}"}}
            line = recompute(json.dumps(event).encode(), last["hash"], key.encode() if key else None)
            lines.append(line)
            last = json.loads(line)
        write_lines(self.path, lines)
        self.fix_head_file()

    def fix_head_file(self) -> None:
        last = json.loads(read_lines(self.path)[-1])
        head = {"seq": last["seq"], "hash": last["hash"], "file": self.path.name}
        (self.directory / "head.json").write_text(json.dumps(head))

    # -- the attacker, on the database ------------------------------------------------------------

    def set_database_head(self, seq: int, digest: str) -> None:
        with self.store.engine.begin() as connection:
            connection.execute(kv.update().where(kv.c.name == "audit_head")
                               .values(value=json.dumps({"seq": seq, "hash": digest})))

    def drop_database_anchor(self, above: int = 0) -> None:
        """Delete the checkpoints above seq ``above`` and, when 0, the head as well."""
        with self.store.engine.begin() as connection:
            connection.execute(audit_checkpoints.delete().where(audit_checkpoints.c.seq > above))
            if not above:
                connection.execute(kv.delete().where(kv.c.name == "audit_head"))

    def match_database_to_files(self) -> None:
        """Both: rewrite the head and every checkpoint from the (forged) files."""
        events = [json.loads(line) for line in read_lines(self.path)]
        with self.store.engine.begin() as connection:
            connection.execute(audit_checkpoints.delete())
            for event in events:
                if event["seq"] % CHECKPOINT_EVERY == 0:
                    connection.execute(audit_checkpoints.insert().values(
                        seq=event["seq"], hash=event["hash"], note=None, recorded_at="x"))
        self.set_database_head(events[-1]["seq"], events[-1]["hash"])

    def hash_at(self, seq: int) -> str:
        return str(json.loads(read_lines(self.path)[seq - 1])["hash"])


def problem_of(report: VerifyReport) -> tuple[ProblemKind, int | None, str]:
    assert report.problem is not None, report.summary()
    return report.problem.kind, report.problem.line, report.problem.message
