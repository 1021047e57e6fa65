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

The package: :mod:`~shared.audit.format` (the line format and its hash), :mod:`~shared.audit.days`
(a chain's folder: daily files, digests, retention), :mod:`~shared.audit.log` (:class:`AuditLog`:
appending, search), :mod:`~shared.audit.walk` and :mod:`~shared.audit.verify` (verification),
:mod:`~shared.audit.report` (its findings), :mod:`~shared.audit.anchor` (the anchor in the run
history database) and :mod:`~shared.audit.run` (the events of one run).
"""

from __future__ import annotations

from shared.audit.anchor import (
    ANCHOR_NAME,
    CHECKPOINT_EVERY,
    MISMATCH_EVENT,
    UNANCHORED_EVENT,
    AuditAnchor,
    _database_errors,
    _shared_store,
    anchor_head,
    read_anchor,
)
from shared.audit.days import HOSTS_DIR, chain_directory
from shared.audit.format import EVENT_TYPES, ZERO_HASH, AuditEvent, Digest, current_actor
from shared.audit.log import LOCK_TIMEOUT, AuditLog
from shared.audit.report import Problem, ProblemKind, VerifyReport
from shared.audit.run import RunAudit
from shared.audit.walk import FOREIGN_WAIT

__all__ = [
    "ANCHOR_NAME",
    "CHECKPOINT_EVERY",
    "EVENT_TYPES",
    "FOREIGN_WAIT",
    "HOSTS_DIR",
    "LOCK_TIMEOUT",
    "MISMATCH_EVENT",
    "UNANCHORED_EVENT",
    "ZERO_HASH",
    "AuditAnchor",
    "AuditEvent",
    "AuditLog",
    "Digest",
    "Problem",
    "ProblemKind",
    "RunAudit",
    "VerifyReport",
    "_database_errors",
    "_shared_store",
    "anchor_head",
    "chain_directory",
    "current_actor",
    "read_anchor",
]
