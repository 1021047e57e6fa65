"""SFTP against a real OpenSSH sshd on 127.0.0.1: folders as items, downloads and uploads with their
SHA-256 audited, temp name then rename (also across a SIGKILL in between), host keys refused when
unknown, key and password logins, the server gone, and the outbox delivering exactly once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from loguru import logger

from demo.servers import SFTP_PASSWORD_USER, SftpServer
from shared.audit import AuditLog, RunAudit
from shared.errors import ConfigError, LoginError, TargetError, TargetUnavailableError
from shared.settings import SftpSettings, load_settings
from shared.transfer import Outbox, SftpConnection, sha256_of
from tests.conftest import REPO

SFTP_PASSWORD = "kanariefågel-sftp-8820"


@pytest.fixture
def sshd() -> Iterator[SftpServer]:
    with SftpServer() as server:
        yield server


def key_settings(server: SftpServer, **overrides: object) -> SftpSettings:
    values: dict[str, object] = {"host": "127.0.0.1", "port": server.port, "username": "root",
                                 "key_file": server.client_key, "known_hosts": server.known_hosts,
                                 "timeout": 10.0}
    return SftpSettings.model_validate({**values, **overrides})


def audit_for(kansli_env: Path) -> tuple[AuditLog, RunAudit]:
    log = AuditLog.from_settings(load_settings())
    return log, RunAudit(log, "run-sftp-1", "sftp_test", "tester@host")


def test_a_folder_becomes_items_keyed_by_name_size_and_mtime(sshd: SftpServer) -> None:
    inbox = sshd.files / "in"
    inbox.mkdir()
    (inbox / "b-lista.csv").write_text("a;b\n1;2\n", encoding="utf-8")
    (inbox / "a-fil med mellanslag å.txt").write_bytes(b"x" * 10)
    (inbox / ".halv.txt.1234.part").write_bytes(b"half")
    (inbox / "underkatalog").mkdir()
    os.utime(inbox / "b-lista.csv", (1_700_000_000, 1_700_000_000))
    with SftpConnection(key_settings(sshd)) as sftp:
        items = sftp.items(str(inbox))
        assert [item.data.name for item in items] == ["a-fil med mellanslag å.txt", "b-lista.csv"]
        assert items[1].key == "b-lista.csv:8:1700000000"
        assert [item.data.name for item in sftp.items(str(inbox), "*.csv")] == ["b-lista.csv"]
        (inbox / "b-lista.csv").write_text("a;b\n1;2\n3;4\n", encoding="utf-8")
        assert sftp.items(str(inbox), "*.csv")[0].key != items[1].key, "a changed file is new work"


def test_download_and_upload_record_sha256_in_the_audit_trail(sshd: SftpServer, kansli_env: Path) -> None:
    payload = os.urandom(300_000)
    (sshd.files / "leverans.bin").write_bytes(payload)
    local = kansli_env / "hämtat"
    log, audit = audit_for(kansli_env)
    with SftpConnection(key_settings(sshd), audit) as sftp:
        got = sftp.download(str(sshd.files / "leverans.bin"), local)
        assert (local / "leverans.bin").read_bytes() == payload
        assert got.sha256 == hashlib.sha256(payload).hexdigest() and got.size == len(payload)
        outgoing = kansli_env / "register.xlsx"
        outgoing.write_bytes(b"register " * 1000)
        sent = sftp.upload(outgoing, str(sshd.files), "fakturor-2026-12-01.xlsx")
    assert (sshd.files / "fakturor-2026-12-01.xlsx").read_bytes() == outgoing.read_bytes()
    assert sent.sha256 == sha256_of(outgoing)
    events = {event["event"]: event["data"] for event in log.search(run_id="run-sftp-1")}
    assert events["file.downloaded"]["sha256"] == got.sha256
    assert events["file.uploaded"]["sha256"] == sent.sha256
    assert events["file.uploaded"]["destination"].endswith("/fakturor-2026-12-01.xlsx")
    assert not list(sshd.files.glob(".*.part")) and not list(local.glob(".*.part"))


def test_an_upload_replaces_the_old_file_whole(sshd: SftpServer, kansli_env: Path) -> None:
    (sshd.files / "import.xlsx").write_bytes(b"old")
    new = kansli_env / "import.xlsx"
    new.write_bytes(b"new content")
    with SftpConnection(key_settings(sshd)) as sftp:
        sftp.upload(new, str(sshd.files))
    assert (sshd.files / "import.xlsx").read_bytes() == b"new content"


CRASHING_UPLOAD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from shared.settings import SftpSettings
    from shared.transfer import SftpConnection
    settings = SftpSettings.model_validate_json(sys.argv[1])
    with SftpConnection(settings) as sftp:
        sftp.upload(Path(sys.argv[2]), sys.argv[3])
    print("not killed")
""")


def test_a_sigkill_between_upload_and_rename_leaves_no_visible_file(sshd: SftpServer,
                                                                    kansli_env: Path) -> None:
    outgoing = kansli_env / "fakturor.xlsx"
    outgoing.write_bytes(os.urandom(50_000))
    settings = key_settings(sshd)
    env = {**os.environ, "PYTHONPATH": str(REPO), "KANSLI_TEST_CRASH_AT": "transfer.uploaded:1"}
    killed = subprocess.run([sys.executable, "-c", CRASHING_UPLOAD, settings.model_dump_json(), str(outgoing),
                             str(sshd.files)], env=env, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    assert not (sshd.files / "fakturor.xlsx").exists(), "a half-delivered file became visible"
    assert len(list(sshd.files.glob(".fakturor.xlsx.*.part"))) == 1
    with SftpConnection(settings) as sftp:
        sftp.upload(outgoing, str(sshd.files))
    assert (sshd.files / "fakturor.xlsx").read_bytes() == outgoing.read_bytes()
    assert not list(sshd.files.glob(".*.part")), "the killed upload's temp file was not removed"


def test_an_unknown_host_key_is_refused(sshd: SftpServer, kansli_env: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong = kansli_env / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other}\n", encoding="ascii")
    with pytest.raises(ConfigError, match="host key is not in"):
        SftpConnection(key_settings(sshd, known_hosts=wrong)).open()
    empty = kansli_env / "empty_known_hosts"
    empty.write_text("", encoding="ascii")
    with pytest.raises(ConfigError, match="host key is not in"):
        SftpConnection(key_settings(sshd, known_hosts=empty)).open()
    with pytest.raises(ConfigError, match="known_hosts file .* not found"):
        SftpConnection(key_settings(sshd, known_hosts=kansli_env / "saknas")).open()
    assert wrong.read_text(encoding="ascii").count("\n") == 1, "the server's key was learned"


def test_a_missing_key_file_and_no_credentials_are_config_errors(sshd: SftpServer, kansli_env: Path) -> None:
    with pytest.raises(ConfigError, match="key file .* not found"):
        SftpConnection(key_settings(sshd, key_file=kansli_env / "saknas")).open()
    with pytest.raises(ConfigError, match="KEY_FILE or KANSLI_SFTP__PASSWORD"):
        SftpConnection(key_settings(sshd, key_file=None)).open()


def test_password_login_and_the_password_never_logged(kansli_env: Path) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    try:
        with SftpServer(password=SFTP_PASSWORD) as server:
            settings = key_settings(server, username=SFTP_PASSWORD_USER, key_file=None,
                                    password=SFTP_PASSWORD)
            outgoing = kansli_env / "lösen-test.txt"
            outgoing.write_text("hej från robot", encoding="utf-8")
            with SftpConnection(settings) as sftp:
                sftp.upload(outgoing, str(server.files))
            assert (server.files / "lösen-test.txt").read_text(encoding="utf-8") == "hej från robot"
            with pytest.raises(LoginError, match="login refused") as refused:
                SftpConnection(key_settings(server, username=SFTP_PASSWORD_USER, key_file=None,
                                            password="fel-lösen-1234")).open()
            assert SFTP_PASSWORD not in str(refused.value)
    finally:
        logger.remove(sink)
    assert lines and not any(SFTP_PASSWORD in line for line in lines)


def test_a_server_that_is_gone_is_a_target_error(sshd: SftpServer, kansli_env: Path) -> None:
    settings = key_settings(sshd)
    with SftpConnection(settings) as sftp:
        sftp.list_files(str(sshd.files))
        sshd.kill()
        with pytest.raises(TargetError):
            sftp.list_files(str(sshd.files))
    with pytest.raises(TargetUnavailableError, match="cannot connect"):
        SftpConnection(settings).open()


def test_the_outbox_delivers_each_file_once_across_a_crash_before_rename(sshd: SftpServer,
                                                                         kansli_env: Path) -> None:
    outbox = Outbox(kansli_env / "utkorg")
    register = kansli_env / "fakturor-1.xlsx"
    register.write_bytes(b"a register")
    outbox.add(register, ["<a@leverantor.se>", "<b@leverantor.se>"])
    assert outbox.keys() == {"<a@leverantor.se>", "<b@leverantor.se>"}
    assert [path.name for path in outbox.pending()] == ["fakturor-1.xlsx"]
    settings = key_settings(sshd)
    env = {**os.environ, "PYTHONPATH": str(REPO), "KANSLI_TEST_CRASH_AT": "transfer.uploaded:1"}
    script = CRASHING_UPLOAD.replace("sftp.upload(Path(sys.argv[2]), sys.argv[3])",
                                     "Outbox(Path(sys.argv[2])).deliver(sftp, sys.argv[3])")
    script = script.replace("import SftpConnection", "import Outbox, SftpConnection")
    killed = subprocess.run([sys.executable, "-c", script, settings.model_dump_json(), str(outbox.folder),
                             str(sshd.files)], env=env, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    with SftpConnection(settings) as sftp:
        assert len(Outbox(outbox.folder).deliver(sftp, str(sshd.files))) == 1
        assert Outbox(outbox.folder).deliver(sftp, str(sshd.files)) == []
    assert (sshd.files / "fakturor-1.xlsx").read_bytes() == b"a register"
    assert [path.name for path in sshd.files.iterdir()] == ["fakturor-1.xlsx"]
    assert outbox.pending() == [] and outbox.keys() == {"<a@leverantor.se>", "<b@leverantor.se>"}
