"""The mailbox against a real Dovecot on 127.0.0.1: messages as items keyed by Message-ID (or a hash),
attachments checked and saved, messages filed by outcome, TLS and STARTTLS with a CA file, the
server stopped mid-run, and the password in no file written."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo.servers import MailServer, write_tls_files
from shared.errors import ConfigError, LoginError, TargetUnavailableError
from shared.items import ItemResult
from shared.mailbox import (
    AttachmentTooLargeError,
    AttachmentTypeError,
    Mailbox,
    NoAttachmentError,
    ZipBombError,
    check_zip,
    safe_file_name,
)
from shared.runner import Runner
from shared.settings import MailboxSettings, load_settings

USER = "fakturor"
PASSWORD = "kanariefågel-imap-3391"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def dovecot() -> Iterator[MailServer]:
    with MailServer({USER: PASSWORD}) as server:
        yield server


def box_settings(server: MailServer, **overrides: object) -> MailboxSettings:
    values: dict[str, object] = {"host": "127.0.0.1", "port": server.imaps_port, "security": "tls",
                                 "ca_file": server.ca_file, "username": USER, "password": PASSWORD,
                                 "timeout": 5.0}
    return MailboxSettings.model_validate({**values, **overrides})


def use_server(monkeypatch: pytest.MonkeyPatch, server: MailServer) -> None:
    for name, value in {"HOST": "127.0.0.1", "PORT": str(server.imaps_port), "SECURITY": "tls",
                        "CA_FILE": str(server.ca_file), "USERNAME": USER, "PASSWORD": PASSWORD,
                        "TIMEOUT": "3"}.items():
        monkeypatch.setenv(f"KANSLI_MAILBOX__{name}", value)


def message(subject: str, *, attachments: list[tuple[str, bytes]] | None = None,
            message_id: str | None = "auto", sender: str = "faktura@leverantor.se") -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, "fakturor@exempelby.se", subject
    mail["Date"] = "Tue, 01 Dec 2026 09:00:00 +0100"
    if message_id == "auto":
        mail["Message-ID"] = make_msgid(domain="leverantor.se")
    elif message_id is not None:
        mail["Message-ID"] = message_id
    mail.set_content("Hej,\nbifogat finns fakturan.\n/Leverantören")
    for name, content in [("faktura.pdf", PDF)] if attachments is None else attachments:
        maintype, _, subtype = ("application/pdf" if name.endswith(".pdf") else "application/octet-stream"
                                ).partition("/")
        mail.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return mail.as_bytes()


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("noll.bin", b"\0" * 30_000_000)
    return buffer.getvalue()


def test_messages_become_items_keyed_by_message_id_or_hash(dovecot: MailServer, tmp_path: Path) -> None:
    dovecot.append(USER, message("Faktura 1", message_id="<faktura-1@leverantor.se>"))
    dovecot.append(USER, message("Faktura utan id", message_id=None))
    with Mailbox(box_settings(dovecot), tmp_path) as mailbox:
        first = list(mailbox.items(mailbox.messages()))
        again = list(mailbox.items(mailbox.messages()))
    assert first[0].key == "<faktura-1@leverantor.se>" and first[0].data.subject == "Faktura 1"
    assert first[1].key.startswith("sha256:") and first[1].key == again[1].key
    assert [item.position for item in first] == [1, 2]
    client = dovecot.client(USER)
    client.select("INBOX", readonly=True)
    assert b"\\Seen" not in client.fetch("1:*", "(FLAGS)")[1][0], "listing marked a message as read"
    client.logout()


def test_attachments_are_saved_with_safe_names(dovecot: MailServer, tmp_path: Path) -> None:
    dovecot.append(USER, message("Två fakturor", message_id="<tva@leverantor.se>", attachments=[
        ("../../etc/fäktura nr 1.pdf", PDF), ("faktura nr 1.pdf", PDF + b"%2"), ("Bilaga.PDF", PDF)]))
    with Mailbox(box_settings(dovecot), tmp_path) as mailbox:
        item = next(mailbox.items(mailbox.messages()))
        saved = mailbox.save_attachments(item)
    assert [path.name for path in saved] == ["fäktura nr 1.pdf", "faktura nr 1.pdf", "Bilaga.PDF"]
    assert all(path.parent == tmp_path / "tva@leverantor.se" for path in saved)
    assert saved[1].read_bytes() == PDF + b"%2" and item.artifacts == [str(path) for path in saved]


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=300))
def test_any_attachment_name_stays_inside_the_folder(name: str, tmp_path: Path) -> None:
    safe = safe_file_name(name, "bilaga-1")
    assert safe and "/" not in safe and "\\" not in safe and not safe.startswith(".") and len(safe) <= 150
    assert (tmp_path / safe).resolve().parent == tmp_path.resolve()


def test_over_size_wrong_type_and_zip_bombs_are_business_errors(dovecot: MailServer, tmp_path: Path) -> None:
    dovecot.append(USER, message("Stor", attachments=[("stor.pdf", PDF + b"x" * 60_000)]))
    dovecot.append(USER, message("Program", attachments=[("faktura.pdf.exe", b"MZ" + b"\0" * 100)]))
    dovecot.append(USER, message("Bomb", attachments=[("fakturor.zip", zip_bomb())]))
    dovecot.append(USER, message("Docx-bomb", attachments=[("faktura.docx", zip_bomb())]))
    dovecot.append(USER, message("Ingen bilaga", attachments=[]))
    dovecot.append(USER, message("Jättestor", attachments=[("jätte.pdf", PDF + b"y" * 1_200_000)]))
    settings = box_settings(dovecot, max_attachment_bytes=50_000, allowed_types=[".pdf", ".zip", ".docx"])
    with Mailbox(settings, tmp_path) as mailbox:
        items = list(mailbox.items(mailbox.messages()))
        expected = [(AttachmentTooLargeError, "stor.pdf' is 60"), (AttachmentTypeError, "faktura.pdf.exe"),
                    (ZipBombError, "fakturor.zip"), (ZipBombError, "faktura.docx"),
                    (NoAttachmentError, "no attachment"),
                    (AttachmentTooLargeError, "more than an attachment")]
        for item, (error, text) in zip(items, expected, strict=True):
            with pytest.raises(error, match=text):
                mailbox.save_attachments(item)
    assert not any(path.is_file() for path in tmp_path.rglob("*")), "a refused attachment was saved"


def test_zip_checks() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", "<w:document>" + "text " * 2000 + "</w:document>")
    check_zip(buffer.getvalue(), "ok.docx", 20_000_000)
    inner = buffer.getvalue()
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as archive:
        archive.writestr("inre.zip", inner)
    with pytest.raises(ZipBombError, match="holding ZIPs"):
        check_zip(nested.getvalue(), "yttre.zip", 20_000_000)
    with pytest.raises(ZipBombError, match="not a readable ZIP"):
        check_zip(b"PK\x03\x04broken", "trasig.zip", 20_000_000)


def test_filing_moves_each_message_by_outcome(dovecot: MailServer, tmp_path: Path) -> None:
    for n in range(4):
        dovecot.append(USER, message(f"Faktura {n}", message_id=f"<f{n}@leverantor.se>"))
    with Mailbox(box_settings(dovecot), tmp_path) as mailbox:
        mails = mailbox.messages()
        outcomes = ["done", "skipped", "business_error", "app_error"]
        filed = mailbox.file(ItemResult(mail.key, outcome, data=mail)
                             for mail, outcome in zip(mails, outcomes, strict=True))
    counts = {folder: len(results) for folder, results in filed.items()}
    assert counts == {"Behandlat": 2, "Manuell hantering": 1}
    assert (dovecot.count(USER, "INBOX"), dovecot.count(USER, "Behandlat"),
            dovecot.count(USER, "Manuell hantering")) == (1, 2, 1)


def test_starttls_plain_and_certificate_checks(dovecot: MailServer, tmp_path: Path) -> None:
    dovecot.append(USER, message("Hej"))
    starttls = box_settings(dovecot, port=dovecot.imap_port, security="starttls")
    with Mailbox(starttls, tmp_path) as mailbox:
        assert len(mailbox.messages()) == 1
    with Mailbox(box_settings(dovecot, port=dovecot.imap_port, security="plain"), tmp_path) as mailbox:
        assert len(mailbox.messages()) == 1
    with pytest.raises(ConfigError, match="only allowed on 127.0.0.1"):
        Mailbox(box_settings(dovecot, host="imap.exempelby.se", security="plain"), tmp_path)
    other_ca = write_tls_files(tmp_path)[0]
    with pytest.raises(ConfigError, match="certificate is not trusted"):
        Mailbox(box_settings(dovecot, ca_file=other_ca), tmp_path).__enter__()
    with pytest.raises(ConfigError, match="certificate is not trusted"):
        Mailbox(starttls.model_copy(update={"ca_file": other_ca}), tmp_path).__enter__()
    with pytest.raises(LoginError, match="login refused") as refused:
        Mailbox(box_settings(dovecot, password="fel-lösen-åäö"), tmp_path).__enter__()
    assert PASSWORD not in str(refused.value)


def test_a_stopped_server_is_a_target_error_and_the_next_call_reconnects(dovecot: MailServer,
                                                                         tmp_path: Path) -> None:
    dovecot.append(USER, message("Faktura", message_id="<a@leverantor.se>"))
    with Mailbox(box_settings(dovecot), tmp_path) as mailbox:
        item = next(mailbox.items(mailbox.messages()))
        dovecot.kill()
        with pytest.raises(TargetUnavailableError):
            mailbox.save_attachments(item)
        with pytest.raises(TargetUnavailableError, match="cannot connect"):
            mailbox.save_attachments(item)
        dovecot.restart()
        assert mailbox.save_attachments(item)[0].read_bytes() == PDF


def test_server_stopped_mid_run_items_retried_then_every_message_filed_once(
    dovecot: MailServer, kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(monkeypatch, dovecot)
    for n in range(9):
        dovecot.append(USER, message(f"Faktura {n}", message_id=f"<m{n}@leverantor.se>"))
    runner = Runner(load_settings(), robots_package="tests.sample_robots")
    pause = kansli_env / "paus"
    pause.mkdir()

    def stop_server_while_paused() -> None:
        while not (pause / "paused").exists():
            threading.Event().wait(0.02)
        dovecot.kill()  # items 3..7 fail on every attempt: 5 in a row stop the run (8, 9 not tried)
        (pause / "resume").write_text("go")

    stopper = threading.Thread(target=stop_server_while_paused)
    stopper.start()
    params = {"pause_after": 2, "pause_dir": str(pause)}
    first = runner.run("mail_intake", params)
    stopper.join()
    assert first.status == "failed" and (first.items_done, first.items_app_error) == (2, 5)
    assert "stopped early: 5 items in a row failed with TargetUnavailableError" in (first.error or "")
    failed = [item for item in runner.store.list_items(first.run_id) if item.outcome == "app_error"]
    assert {item.attempts for item in failed} == {3}, "application errors were not retried"
    assert {item.error_class for item in failed} == {"TargetUnavailableError"}

    dovecot.restart()
    second = runner.run("mail_intake", params)  # "resume" is there: no pause
    assert second.status == "succeeded"
    assert (second.items_skipped, second.items_done) == (2, 7), "an item was processed twice"
    assert (dovecot.count(USER, "INBOX"), dovecot.count(USER, "Behandlat")) == (0, 9)
    written = [path for root in (kansli_env / "data", kansli_env / "log") for path in root.rglob("*")
               if path.is_file()]
    assert written and not [path for path in written if PASSWORD.encode() in path.read_bytes()]
