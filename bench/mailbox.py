"""Messages per second from an IMAP folder into work items: Kansli's mailbox against a naive loop.

A real Dovecot on 127.0.0.1 (demo.servers, IMAPS) holds 1,000 invoice messages (a PDF each).
Baseline (the naive script): imap-tools ``fetch()`` message by message, whole messages, then the
items. Kansli: ``Mailbox.messages()`` (headers only, in bulks of 200, nothing marked read) into
items, the attachments fetched only when an item is handled; and that listing plus each message's
attachment fetched and saved (``save_attachments``: size, type and zip checks, atomic writes), the
whole intake.

    .venv/bin/python bench/mailbox.py [--messages 1000]
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from imap_tools import MailBox  # noqa: E402

from demo.build_invoice_demo import plan, render_message, render_pdf  # noqa: E402
from demo.servers import MailServer  # noqa: E402
from shared.items import WorkItem  # noqa: E402
from shared.mailbox import Mailbox  # noqa: E402
from shared.settings import MailboxSettings  # noqa: E402

USER, PASSWORD = "fakturor", "bench-lösen-2026"


def messages(count: int) -> list[bytes]:
    invoices = [invoice for invoice in plan() if invoice.bad is None]
    rendered = [render_message(invoice, render_pdf(invoice)) for invoice in invoices]
    out = []
    for n in range(count):
        text = rendered[n % len(rendered)]
        out.append(text.replace(b"Message-ID: <faktura-", f"Message-ID: <b{n:05d}-faktura-".encode(), 1))
    return out


def naive(server: MailServer) -> tuple[float, int]:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    started = time.perf_counter()
    with MailBox("127.0.0.1", server.imaps_port, ssl_context=context).login_utf8(USER, PASSWORD) as box:
        items = [WorkItem(key=message.headers.get("message-id", ("",))[0], data=message)
                 for message in box.fetch(mark_seen=False)]
    return time.perf_counter() - started, len(items)


def kansli(server: MailServer, work: Path, *, attachments: bool) -> tuple[float, int]:
    settings = MailboxSettings(host="127.0.0.1", port=server.imaps_port, ca_file=server.ca_file,
                               username=USER, password=PASSWORD)
    started = time.perf_counter()
    with Mailbox(settings, work) as mailbox:
        items = list(mailbox.items(mailbox.messages()))
        if attachments:
            for item in items:
                mailbox.save_attachments(item)
    return time.perf_counter() - started, len(items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    with MailServer({USER: PASSWORD}) as server, tempfile.TemporaryDirectory() as folder:
        server.append(USER, *messages(args.messages))
        rows = [("naive: imap-tools fetch() one by one, whole messages", *naive(server)),
                ("kansli: Mailbox.messages() -> items (headers, bulk)", *kansli(server, Path(folder) / "a",
                                                                                 attachments=False)),
                ("kansli: items + save_attachments for each", *kansli(server, Path(folder) / "b",
                                                                      attachments=True))]
    print(f"{args.messages} messages (one small PDF invoice each) on Dovecot over IMAPS, 127.0.0.1")
    print(f"{'path':<56} {'seconds':>8} {'messages/s':>11} {'x naive':>8}")
    for name, seconds, count in rows:
        assert count == args.messages, (name, count)
        print(f"{name:<56} {seconds:>8.2f} {count / seconds:>11.0f} {rows[0][1] / seconds:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
