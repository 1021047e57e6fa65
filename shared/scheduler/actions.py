"""Operator actions and daemon events: the one place they are recorded, and their audit events.

Every operator action (``kansli schedules pause``, ``resume``, ``trigger``) and daemon event (start,
stop, sync, lead, a fire shifted out of a daylight-saving gap, a retry) goes through
:func:`record_action`: a row in ``kansli_operator_actions`` and the same event in the audit trail,
details redacted. The daemon's other audit events (a run scheduled, skipped or missed, a lost lead)
are appended through :func:`_append_audit`, which logs a failure to write the trail and never lets it
stop the daemon.
"""

from __future__ import annotations

from typing import Any

from loguru import logger

from shared.errors import KansliError
from shared.redaction import redact_value
from shared.runner import current_actor
from shared.settings import Settings
from shared.store import RunRecord, Store, add_operator_action


def record_action(
    store: Store,
    action: str,
    schedule_id: str | None = None,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """Record an operator action or daemon event (who, when, what) in ``kansli_operator_actions``.

    Actions: ``schedule.pause``, ``schedule.resume``, ``schedule.trigger``, ``daemon.start``,
    ``daemon.stop``, ``daemon.sync``, ``schedule.shifted`` (a fire moved out of a daylight-saving
    gap), ``schedule.retry`` (a retry run, with the run it retries and its attempt number),
    ``schedule.retry.planned`` (a retry planned after a backoff: the run, the attempt, when). The
    details are redacted before they are stored.
    """
    who = actor or current_actor()
    safe = redact_value(details or {})
    add_operator_action(store, who, action, schedule_id, safe)
    logger.debug("action {} on {} by {}: {}", action, schedule_id or "-", who, safe)
    _audit_action(action, schedule_id, safe, who)


def _audit_run_without_process(settings: Settings, event: str, record: RunRecord, reason: str | None) -> None:
    """A scheduled run that never got a process of its own (skipped, missed, failed to start)."""
    _append_audit(settings, event, run_id=record.run_id, robot=record.robot, actor=record.trigger,
                  data={"trigger": record.trigger, "status": record.status, "reason": reason})


#: Operator actions and daemon events as the audit trail names them.
AUDIT_EVENTS = {
    "schedule.pause": "schedule.paused", "schedule.resume": "schedule.resumed",
    "schedule.trigger": "run.triggered", "daemon.start": "daemon.started",
    "daemon.stop": "daemon.stopped", "daemon.sync": "schedule.synced",
    "schedule.shifted": "run.shifted", "schedule.retry": "run.retry",
    "schedule.retry.planned": "run.retry_planned", "daemon.lead": "daemon.leading",
}


def _audit_action(action: str, schedule_id: str | None, details: Any, actor: str) -> None:
    """The same action in the audit trail."""
    from shared.settings import get_settings

    _append_audit(get_settings(), AUDIT_EVENTS.get(action, action), actor=actor,
                  data={"schedule": schedule_id, **(details if isinstance(details, dict) else {})})


def _append_audit(settings: Settings, event: str, **fields: Any) -> None:
    """Append one event to the audit trail; a failure to write it is logged, never fatal here."""
    from shared.audit import AuditLog

    try:
        AuditLog.from_settings(settings).append(event, **fields)
    except KansliError as error:
        logger.error("could not write {} to the audit trail: {}", event, error)
