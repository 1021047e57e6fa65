"""Failure notification by e-mail (SMTP, settings ``KANSLI_SMTP__*``).

A mail goes out when a run ends with a status in ``smtp.notify_on`` (default failed, timeout, missed,
partial) and the schedule names recipients. Subject and body pass through
:func:`shared.redaction.redact`, so no secret or personal identity number leaves in clear text. A mail
that cannot be sent is logged and never breaks the run or the daemon.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from loguru import logger

from shared.redaction import redact
from shared.settings import Settings, SmtpSettings
from shared.store import ItemRecord, RunRecord

MAX_ITEMS_IN_MAIL = 10
FAILED_OUTCOMES = ("business_error", "app_error")


def should_notify(status: str, smtp: SmtpSettings) -> bool:
    """True when a run ending with ``status`` is to be mailed about."""
    return status in smtp.notify_on


def build_message(
    record: RunRecord,
    items: Sequence[ItemRecord],
    recipients: Sequence[str],
    smtp: SmtpSettings,
    schedule_id: str | None = None,
) -> EmailMessage:
    """The notification for ``record``: subject with robot and status, a plain UTF-8 body."""
    message = EmailMessage()
    message["Subject"] = redact(f"[kansli] {record.robot}: {record.status} (run {record.run_id})")
    message["From"] = smtp.sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="kansli.local")
    message.set_content(redact(_body(record, items, schedule_id)), charset="utf-8")
    return message


def _body(record: RunRecord, items: Sequence[ItemRecord], schedule_id: str | None) -> str:
    lines = [
        f"The robot {record.robot} ended with status {record.status.upper()}.",
        "",
        f"Run id:    {record.run_id}",
        f"Schedule:  {schedule_id or '-'}",
        f"Trigger:   {record.trigger}",
        f"Started:   {record.started_at}",
        f"Finished:  {record.finished_at or '-'}",
        f"Items:     {record.items_total} total, {record.items_done} done, "
        f"{record.items_skipped} done before, {record.items_business_error} business errors, "
        f"{record.items_app_error} application errors",
    ]
    if record.error:
        lines += ["", f"Error: {record.error}"]
    lines += _failed_items(items)
    lines += ["", "See the log with:", f"    kansli logs {record.run_id}",
              "and the run with:", f"    kansli show {record.run_id}", "",
              "-- ", "Kansli scheduler (automatic message)"]
    return "\n".join(lines) + "\n"


def _failed_items(items: Sequence[ItemRecord]) -> list[str]:
    failed = [item for item in items if item.outcome in FAILED_OUTCOMES]
    if not failed:
        return []
    lines = ["", f"First failed items ({min(len(failed), MAX_ITEMS_IN_MAIL)} of {len(failed)}):"]
    for item in failed[:MAX_ITEMS_IN_MAIL]:
        lines.append(f"  - {item.key} ({item.outcome}, {item.attempts} attempt(s)): {item.error or '-'}")
    return lines


def send_message(message: EmailMessage, smtp: SmtpSettings) -> None:
    """Deliver ``message`` over SMTP (STARTTLS and login when configured); raises on failure."""
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
        client.ehlo()
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if smtp.username:
            password = smtp.password.get_secret_value() if smtp.password else ""
            client.login(smtp.username, password)
        client.send_message(message)


def notify_run(
    record: RunRecord,
    items: Sequence[ItemRecord],
    recipients: Sequence[str],
    settings: Settings,
    schedule_id: str | None = None,
) -> bool:
    """Mail about ``record`` when its status calls for it; True when a mail was sent.

    Never raises: a mail failure is logged (redacted) and the caller goes on.
    """
    if not recipients or not should_notify(record.status, settings.smtp):
        return False
    try:
        message = build_message(record, items, recipients, settings.smtp, schedule_id)
        send_message(message, settings.smtp)
    except Exception as error:  # noqa: BLE001 - a mail failure must not break the run or daemon
        logger.error("could not send the notification for run {} to {}: {}: {}", record.run_id,
                     ", ".join(recipients), type(error).__name__, redact(str(error)))
        return False
    logger.info("notification for run {} ({}) sent to {}", record.run_id, record.status,
                ", ".join(recipients))
    return True
