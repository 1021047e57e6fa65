"""Failure notification by e-mail (SMTP, settings ``KANSLI_SMTP__*``).

A mail goes out when a run ends with a status in ``smtp.notify_on`` (default failed, timeout, missed,
partial) and the schedule names recipients. Subject and body pass through
:func:`shared.redaction.redact`, so no secret or personal identity number leaves in clear text. A mail
that cannot be sent is logged and never breaks the run or the daemon.

The mail is written in the staff language (:mod:`shared.wording`, ``KANSLI_LANGUAGE``, Swedish by
default) with times in the settings' zone, named (``2026-11-25 07:00:00 CET``); the commands it
quotes (``kansli logs ...``) stay as typed.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from loguru import logger

from shared.clock import local_time
from shared.redaction import redact
from shared.settings import Settings, SmtpSettings
from shared.store import ItemRecord, RunRecord
from shared.wording import Wording, wording

MAX_ITEMS_IN_MAIL = 10
FAILED_OUTCOMES = ("business_error", "app_error")


def should_notify(status: str, smtp: SmtpSettings) -> bool:
    """True when a run ending with ``status`` is to be mailed about."""
    return status in smtp.notify_on


def build_message(
    record: RunRecord,
    items: Sequence[ItemRecord],
    recipients: Sequence[str],
    settings: Settings,
    schedule_id: str | None = None,
) -> EmailMessage:
    """The notification for ``record``: subject with robot and status, a plain UTF-8 body."""
    words = wording(settings)
    message = EmailMessage()
    message["Subject"] = redact(words("mail.subject", robot=record.robot,
                                      status=words.run_status(record.status), run_id=record.run_id))
    message["From"] = settings.smtp.sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="kansli.local")
    message.set_content(redact(_body(record, items, schedule_id, words, settings.timezone)), charset="utf-8")
    return message


def _body(
    record: RunRecord, items: Sequence[ItemRecord], schedule_id: str | None, words: Wording, zone_name: str
) -> str:
    facts = [
        (words("mail.run_id"), record.run_id),
        (words("mail.schedule"), schedule_id or "-"),
        (words("mail.trigger"), record.trigger),
        (words("mail.started"), local_time(record.started_at, zone_name=zone_name, seconds=True)),
        (words("mail.finished"), local_time(record.finished_at, zone_name=zone_name, seconds=True) or "-"),
        (words("mail.items"), words.counts(record)),
    ]
    width = max(len(label) for label, _ in facts) + 2
    status = words.run_status(record.status).upper()
    lines = [words("mail.intro", robot=record.robot, status=status), ""]
    lines += [f"{label + ':':<{width}}{value}" for label, value in facts]
    error = words.run_error(record.error)
    if error:
        lines += ["", f"{words('mail.error')}: {error}"]
    lines += _failed_items(items, words)
    lines += ["", words("mail.see_log"), f"    kansli logs {record.run_id}",
              words("mail.see_run"), f"    kansli show {record.run_id}", "",
              "-- ", words("mail.signature")]
    return "\n".join(lines) + "\n"


def _failed_items(items: Sequence[ItemRecord], words: Wording) -> list[str]:
    failed = [item for item in items if item.outcome in FAILED_OUTCOMES]
    if not failed:
        return []
    lines = ["", words("mail.failed_items", shown=min(len(failed), MAX_ITEMS_IN_MAIL), total=len(failed))]
    for item in failed[:MAX_ITEMS_IN_MAIL]:
        lines.append(words("mail.failed_item", key=item.key, outcome=words.outcome(item.outcome),
                           attempts=item.attempts, error=item.error or "-"))
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
        message = build_message(record, items, recipients, settings, schedule_id)
        send_message(message, settings.smtp)
    except Exception as error:  # noqa: BLE001 - a mail failure must not break the run or daemon
        logger.error("could not send the notification for run {} to {}: {}: {}", record.run_id,
                     ", ".join(recipients), type(error).__name__, redact(str(error)))
        return False
    logger.info("notification for run {} ({}) sent to {}", record.run_id, record.status,
                ", ".join(recipients))
    return True
