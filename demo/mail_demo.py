"""``make demo-mail``: the invoice_inbox robot against a local Dovecot and OpenSSH SFTP server.

Starts both on 127.0.0.1 in temporary folders (demo.servers), builds the 40 demo invoices
(demo.build_invoice_demo) and delivers them to the shared mailbox by IMAP APPEND, runs
``kansli run invoice_inbox`` with the servers in its environment, copies what arrived in the
finance system's import folder to ``var/demo-mail/ekonomi-import/``, shows the folders' counts and
stops both servers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from demo.build_invoice_demo import build
from demo.servers import MailServer, SftpServer

MAIL_USER = "leverantorsfakturor"
WORK = Path("var/demo-mail")


def robot_environment(mail: MailServer, sftp: SftpServer, password: str) -> dict[str, str]:
    """The settings that point the robot at the two servers."""
    return {
        "KANSLI_MAILBOX__HOST": "127.0.0.1", "KANSLI_MAILBOX__PORT": str(mail.imaps_port),
        "KANSLI_MAILBOX__SECURITY": "tls", "KANSLI_MAILBOX__CA_FILE": str(mail.ca_file),
        "KANSLI_MAILBOX__USERNAME": MAIL_USER, "KANSLI_MAILBOX__PASSWORD": password,
        "KANSLI_SFTP__HOST": "127.0.0.1", "KANSLI_SFTP__PORT": str(sftp.port),
        "KANSLI_SFTP__USERNAME": "root", "KANSLI_SFTP__KEY_FILE": str(sftp.client_key),
        "KANSLI_SFTP__KNOWN_HOSTS": str(sftp.known_hosts),
    }


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main() -> int:
    password = "demo-" + secrets.token_urlsafe(12)
    shutil.rmtree(WORK, ignore_errors=True)
    built = build(WORK / "fakturor")
    with MailServer({MAIL_USER: password}) as mail, SftpServer() as sftp:
        say(f"Dovecot IMAPS on 127.0.0.1:{mail.imaps_port}, OpenSSH SFTP on 127.0.0.1:{sftp.port}")
        mail.append(MAIL_USER, *(message for _, message in built))
        say(f"{len(built)} invoices delivered to {MAIL_USER}'s INBOX")
        import_dir = sftp.files / "ekonomi" / "import"
        import_dir.mkdir(parents=True)
        env = {**os.environ, **robot_environment(mail, sftp, password)}
        run = subprocess.run([sys.executable, "-m", "shared.cli", "run", "invoice_inbox", "--rerun-all",
                              "-p", f"upload_dir={import_dir}"], env=env)
        counts = {folder: mail.count(MAIL_USER, folder)
                  for folder in ("INBOX", "Behandlat", "Manuell hantering")}
        shutil.copytree(import_dir, WORK / "ekonomi-import")
    say("")
    say("Mailbox:  " + ", ".join(f"{folder} {count}" for folder, count in counts.items()))
    for path in sorted((WORK / "ekonomi-import").iterdir()):
        say(f"Register: sftp://127.0.0.1{import_dir}/{path.name}, copied to {path.resolve()}")
    for path in sorted(Path("var/out/invoice_inbox").glob("inkorg-*.xlsx"))[-1:]:
        say(f"Staff:    {path.resolve()} (every message, reasons for manual handling)")
    return 0 if run.returncode in (0, 3) else run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
