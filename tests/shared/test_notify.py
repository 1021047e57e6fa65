"""Failure mail against a real SMTP server (aiosmtpd on 127.0.0.1), with no secret in it."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from shared.notify import build_message, notify_run
from shared.settings import Settings, load_settings
from shared.store import ItemRecord, RunRecord

CANARY_PASSWORD = "canary-smtp-Pw-7781"
PERSONNUMMER = "19121212-1212"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Inbox:
    """Messages the local SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.raw.append(envelope.content)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    inbox = Inbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password.decode() == CANARY_PASSWORD
        if ok:
            inbox.logins.append(data.login.decode())
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        yield SmtpServer(port, inbox)
    finally:
        controller.stop()


def smtp_settings(monkeypatch: pytest.MonkeyPatch, port: int, **extra: str) -> Settings:
    monkeypatch.setenv("KANSLI_SMTP__HOST", "127.0.0.1")
    monkeypatch.setenv("KANSLI_SMTP__PORT", str(port))
    monkeypatch.setenv("KANSLI_SMTP__USERNAME", "kansli")
    monkeypatch.setenv("KANSLI_SMTP__PASSWORD", CANARY_PASSWORD)
    monkeypatch.setenv("KANSLI_SMTP__SENDER", "kansli@kommun.example.se")
    monkeypatch.setenv("KANSLI_SMTP__TIMEOUT", "5")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def failed_run() -> tuple[RunRecord, list[ItemRecord]]:
    record = RunRecord(
        run_id="20261125-070000-001-abcd", robot="decision_letters", params={}, trigger="schedule:x",
        actor="kansli@server", status="failed", started_at="2026-11-25T06:00:00+00:00",
        finished_at="2026-11-25T06:01:00+00:00", items_total=3, items_done=1,
        items_business_error=1, items_app_error=1,
        error=f"Ärendet kunde inte skapas: login with {CANARY_PASSWORD} for {PERSONNUMMER} failed",
    )
    items = [
        ItemRecord(run_id=record.run_id, key="row-2", robot=record.robot, outcome="done", attempts=1),
        ItemRecord(run_id=record.run_id, key="row-3", robot=record.robot, outcome="business_error",
                   attempts=1, error=f"row 3: Personnummer {PERSONNUMMER} has a bad check digit"),
        ItemRecord(run_id=record.run_id, key="row-4", robot=record.robot, outcome="app_error",
                   attempts=3, error="the e-service answered HTTP 503"),
    ]
    return record, items


def test_a_failed_run_mails_the_recipients_without_secrets(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = smtp_settings(monkeypatch, smtp_server.port)
    record, items = failed_run()
    assert notify_run(record, items, ["it-drift@example.se"], settings, schedule_id="letters") is True
    assert smtp_server.inbox.logins == ["kansli"]  # the password was used, and accepted
    [mail] = smtp_server.inbox.messages
    assert mail["Subject"] == f"[kansli] decision_letters: misslyckad (körning {record.run_id})"
    assert mail["To"] == "it-drift@example.se"
    body = mail.get_content().replace("\r\n", "\n")
    for expected in (record.run_id, "status MISSLYCKAD", "3 totalt, 1 klara", "1 fel i data",
                     "row-3 (fel i data, 1 försök)", "row-4 (tekniskt fel, 3 försök)",
                     f"kansli logs {record.run_id}", "Ärendet kunde inte skapas"):
        assert expected in body, expected
    for laid_out in (r"\nSchema: +letters\n", r"\nStart: +2026-11-25 07:00:00 CET\n",
                     r"\nSlut: +2026-11-25 07:01:00 CET\n"):
        assert re.search(laid_out, body), laid_out
    raw = smtp_server.inbox.raw[0]
    for secret in (CANARY_PASSWORD, PERSONNUMMER, "191212-1212", "121212-1212"):
        assert secret not in body and secret.encode() not in raw
    assert "**********" in body and "******-****" in body


def test_statuses_not_configured_send_nothing(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = smtp_settings(monkeypatch, smtp_server.port, KANSLI_SMTP__NOTIFY_ON='["timeout"]')
    record, items = failed_run()
    assert notify_run(record, items, ["it-drift@example.se"], settings) is False
    record.status = "timeout"
    assert notify_run(record, items, [], settings) is False  # nobody to tell
    assert notify_run(record, items, ["it-drift@example.se"], settings) is True
    assert len(smtp_server.inbox.messages) == 1


def test_a_mail_failure_is_logged_and_never_raised(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from shared.logs import configure_console

    settings = smtp_settings(monkeypatch, free_port())  # nothing listens there
    configure_console("INFO")
    record, items = failed_run()
    assert notify_run(record, items, ["it-drift@example.se"], settings) is False
    err = capfd.readouterr().err
    assert "could not send the notification" in err and CANARY_PASSWORD not in err


def test_a_refused_login_is_a_logged_failure(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = smtp_settings(monkeypatch, smtp_server.port, KANSLI_SMTP__PASSWORD="wrong-password")
    record, items = failed_run()
    assert notify_run(record, items, ["it-drift@example.se"], settings) is False
    assert smtp_server.inbox.messages == []


def test_the_body_is_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = smtp_settings(monkeypatch, 25)
    record, items = failed_run()
    message = build_message(record, items, ["a@example.se"], settings)
    assert message.get_content_charset() == "utf-8"


def test_english_staff_get_the_mail_in_english_with_their_zone(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = smtp_settings(monkeypatch, smtp_server.port, KANSLI_LANGUAGE="en",
                             KANSLI_TIMEZONE="America/New_York")
    record, items = failed_run()
    record.status, record.error = "partial", "2 item(s) failed; first: row-3: row 3: bad"
    assert notify_run(record, items, ["it-drift@example.se"], settings, schedule_id="letters") is True
    [mail] = smtp_server.inbox.messages
    assert mail["Subject"] == f"[kansli] decision_letters: partly done (run {record.run_id})"
    body = mail.get_content().replace("\r\n", "\n")
    assert body.startswith("The robot decision_letters ended with status PARTLY DONE.\n")
    for laid_out in (r"\nSchedule: +letters\n", r"\nStarted: +2026-11-25 01:00:00 EST\n",
                     r"\nItems: +3 total, 1 done, 0 already done, 1 errors in data, 1 technical errors\n",
                     r"\n  - row-4 \(technical error, 3 attempt\(s\)\): the e-service answered HTTP 503\n"):
        assert re.search(laid_out, body), laid_out
    assert "Error:" not in body, "the item summary repeats the failed items below it"
    assert "klar" not in body and "Ärenden" not in body
