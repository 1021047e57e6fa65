"""A small mailbox robot for the mailbox tests: save each message's attachments, file it."""

from __future__ import annotations

import time
from pathlib import Path

from shared.items import WorkItem
from shared.mailbox import Mailbox
from shared.registry import robot
from shared.runner import Run


@robot()
def mail_intake(run: Run, pause_after: int = 0, pause_dir: Path | None = None) -> None:
    """Save the attachments of every message of the mailbox and file it by outcome.

    With ``pause_after`` and ``pause_dir``: after that many items, write ``paused`` there and wait for
    ``resume`` (the test stops the server in between).
    """
    handled = 0
    with Mailbox.from_run(run) as mailbox:
        messages = mailbox.messages()

        def handle(item: WorkItem) -> dict[str, object]:
            nonlocal handled
            saved = mailbox.save_attachments(item)
            handled += 1
            if pause_dir is not None and handled == pause_after:
                (pause_dir / "paused").write_text("paused")
                deadline = time.monotonic() + 60
                while not (pause_dir / "resume").exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
            return {"files": [path.name for path in saved], "subject": item.data.subject}

        results = run.process(mailbox.items(messages), handle, total=len(messages))
        mailbox.file(results)
