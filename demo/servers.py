"""Real Dovecot (IMAP) and OpenSSH (SFTP) servers on 127.0.0.1, each in its own temporary folder.

Used by the tests of shared.mailbox and shared.transfer, the invoice_inbox robot's tests and
``make demo-mail``. Nothing system-wide is configured or started: each server gets a generated
configuration, throw-away keys and certificates, a high free port, and is stopped (its folder
removed) when the ``with`` block ends. Run as root (the servers drop privileges as they always do).

    with MailServer(users={"kansli": "lösen"}) as mail, SftpServer() as sftp:
        mail.append("kansli", message_bytes)
        ...
"""

from __future__ import annotations

import datetime as dt
import imaplib
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

DOVECOT = Path("/usr/sbin/dovecot")
SSHD = Path("/usr/sbin/sshd")
#: The system account Dovecot's mail processes run as (it refuses uid 0), and SFTP password logins use.
MAIL_USER = "mail"
SFTP_PASSWORD_USER = "kansli-sftp"


class ServerError(RuntimeError):
    """A test server did not start."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds, or raise :class:`ServerError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ServerError(f"{what} within {timeout:.0f} s")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _server_dir(prefix: str) -> Path:
    """A folder other users may traverse (the servers' unprivileged processes read their part)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


def write_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEMs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kansli test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


class _Server:
    """Start/stop plumbing shared by both servers."""

    process: subprocess.Popen[bytes] | None = None
    folder: Path

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def _spawn(self, command: list[str], log: Path) -> None:
        with log.open("ab") as sink:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                            start_new_session=True)

    def kill(self) -> None:
        """Stop the server at once (SIGKILL to its process group), keeping its folder."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, *, keep_folder: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None
        if not keep_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


class MailServer(_Server):
    """Dovecot with IMAP (STARTTLS, and plain login allowed on 127.0.0.1) and IMAPS, a passwd-file
    of ``users`` and their Maildirs in its folder."""

    def __init__(self, users: dict[str, str], folders: tuple[str, ...] = ("Behandlat", "Manuell hantering")
                 ) -> None:
        if not DOVECOT.exists():
            raise ServerError(f"{DOVECOT} not found: `make setup` installs dovecot-imapd")
        self.users, self.folders = users, folders
        self.folder = _server_dir("kansli-dovecot-")
        self.imap_port, self.imaps_port = free_port(), free_port()
        self.ca_file, self.cert_file, self.key_file = write_tls_files(self.folder)
        self.log = self.folder / "dovecot.log"

    def _config(self) -> str:
        mail = pwd.getpwnam(MAIL_USER)
        boxes = "\n".join(f'  mailbox "{name}" {{\n    auto = create\n  }}' for name in self.folders)
        return f"""
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert_file}
ssl_key = <{self.key_file}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{self.folder}/mail/%u
first_valid_uid = {mail.pw_uid}
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.folder}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={self.folder}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
{boxes}
}}
"""

    def start(self) -> None:
        mail = pwd.getpwnam(MAIL_USER)
        (self.folder / "mail").mkdir(exist_ok=True)
        os.chown(self.folder / "mail", mail.pw_uid, mail.pw_gid)
        passwd = self.folder / "passwd"
        lines = [f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items()]
        passwd.write_text("".join(lines), encoding="utf-8")
        config = self.folder / "dovecot.conf"
        config.write_text(self._config(), encoding="utf-8")
        self._spawn([str(DOVECOT), "-F", "-c", str(config)], self.folder / "dovecot.out")
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"dovecot ended: {self._tail()}")
            return port_open(self.imap_port) and port_open(self.imaps_port)

        wait_for(up, timeout, "Dovecot did not listen")

    def restart(self) -> None:
        """Start again after :meth:`kill`, same folder, ports and mail."""
        config = self.folder / "dovecot.conf"
        self._spawn([str(DOVECOT), "-F", "-c", str(config)], self.folder / "dovecot.out")
        self.wait_ready()

    def _tail(self) -> str:
        text = ""
        for path in (self.log, self.folder / "dovecot.out"):
            if path.exists():
                text += path.read_text(errors="replace")[-1500:]
        return text

    def client(self, user: str) -> imaplib.IMAP4_SSL:
        """An IMAPS connection logged in as ``user`` (trusting the server's throw-away CA)."""
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca_file))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=context)
        secret = self.users[user]
        client.authenticate("PLAIN", lambda _: f"\0{user}\0{secret}".encode())
        return client

    def append(self, user: str, *messages: bytes, folder: str = "INBOX") -> None:
        """Deliver ``messages`` to ``user``'s ``folder`` by IMAP APPEND, over one connection."""
        client = self.client(user)
        try:
            for message in messages:
                typ, detail = client.append(_quoted(folder), "", imaplib.Time2Internaldate(time.time()),
                                            message)
                if typ != "OK":
                    raise ServerError(f"APPEND refused: {detail!r}")
        finally:
            client.logout()

    def count(self, user: str, folder: str) -> int:
        """How many messages ``user``'s ``folder`` holds."""
        client = self.client(user)
        try:
            typ, data = client.select(_quoted(folder), readonly=True)
            if typ != "OK":
                raise ServerError(f"no folder {folder!r}")
            return int(data[0] or 0)
        finally:
            client.logout()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class SftpServer(_Server):
    """OpenSSH ``sshd`` serving SFTP only, with a throw-away ed25519 host key.

    ``root`` logs in with the client key this server generates (:attr:`client_key`); with
    ``password``, the system account ``kansli-sftp`` (created when missing) logs in with it.
    :attr:`files` is a folder both may write; :attr:`known_hosts` names the host key.
    """

    def __init__(self, password: str | None = None) -> None:
        if not SSHD.exists():
            raise ServerError(f"{SSHD} not found: `make setup` installs openssh-server")
        import asyncssh

        self.folder = _server_dir("kansli-sshd-")
        self.port = free_port()
        self.password = password
        self.files = self.folder / "files"
        self.host_key_file = self.folder / "ssh_host_ed25519_key"
        self.client_key = self.folder / "client_ed25519"
        self.known_hosts = self.folder / "known_hosts"
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        host_key.write_private_key(str(self.host_key_file))
        self.host_key_file.chmod(0o600)
        self.host_public_key = host_key.export_public_key().decode().strip()
        client = asyncssh.generate_private_key("ssh-ed25519")
        client.write_private_key(str(self.client_key))
        self.client_key.chmod(0o600)
        (self.folder / "authorized_keys").write_bytes(client.export_public_key())
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_public_key}\n", encoding="ascii")
        self.log = self.folder / "sshd.log"

    def _config(self) -> str:
        users = "root" + (f" {SFTP_PASSWORD_USER}" if self.password else "")
        return f"""
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key_file}
PidFile {self.folder}/sshd.pid
AuthorizedKeysFile {self.folder}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication {"yes" if self.password else "no"}
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
AllowUsers {users}
AllowTcpForwarding no
X11Forwarding no
PermitTTY no
MaxStartups 50:30:100
LogLevel VERBOSE
Subsystem sftp internal-sftp
ForceCommand internal-sftp
"""

    def kill(self) -> None:
        """Stop sshd at once, with the sessions it forked (they run in sessions of their own)."""
        import psutil

        sessions = [process for process in psutil.process_iter()
                    if _serves_port(process, self.port)]
        super().kill()
        for process in sessions:
            try:
                process.kill()
            except psutil.Error:
                pass

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.files.mkdir(exist_ok=True)
        if self.password:
            _ensure_password_user(self.password)
            account = pwd.getpwnam(SFTP_PASSWORD_USER)
            os.chown(self.files, account.pw_uid, account.pw_gid)
        config = self.folder / "sshd_config"
        config.write_text(self._config(), encoding="ascii")
        self._spawn([str(SSHD), "-D", "-e", "-f", str(config), "-E", str(self.log)], self.folder / "sshd.out")

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"sshd ended: {self.log.read_text(errors='replace')[-1500:]}")
            return port_open(self.port)

        wait_for(up, 30.0, "sshd did not listen")


def _serves_port(process: object, port: int) -> bool:
    import psutil

    assert isinstance(process, psutil.Process)
    try:
        return any(connection.laddr and connection.laddr.port == port
                   for connection in process.net_connections(kind="tcp"))
    except psutil.Error:
        return False


def _ensure_password_user(password: str) -> None:
    """The account SFTP password logins use: created when missing (no home, no shell), password set."""
    try:
        pwd.getpwnam(SFTP_PASSWORD_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SFTP_PASSWORD_USER], check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{SFTP_PASSWORD_USER}:{password}\n".encode(), check=True,
                   capture_output=True)
