"""A shared IMAP mailbox as work (imap-tools): messages in as items, filed by outcome afterwards.

::

    with Mailbox.from_run(run) as mailbox:
        messages = mailbox.messages()                    # headers only, nothing marked as read
        def handle(item):
            for path in mailbox.save_attachments(item):  # checked: size, type, zip bombs
                ...
        results = run.process(mailbox.items(messages), handle, total=len(messages))
        mailbox.file(results)                            # done -> Behandlat, bad -> Manuell hantering

* Key: the message's ``Message-ID``; a message without one gets ``sha256:`` + the hash of its
  header block (stable: a server never rewrites stored headers).
* :meth:`Mailbox.save_attachments` fetches the whole message only then, and saves its attachments
  to the run's folder. Over the size limit, of a type not allowed, or a zip bomb (any ZIP-based file:
  .zip, .docx, .xlsx) is an :class:`~shared.errors.InputError` (a business error, filed for manual
  handling); a message too large is refused from its size before it is downloaded.
* :meth:`Mailbox.file` moves each message after its item's outcome: done (or done by an earlier
  run) to ``done_folder``, business error to ``manual_folder``; an application error stays where
  it is for the next run. A crash between an outcome and its move is reconciled by the next run:
  the key is done in the ledger, so the item is skipped and its message just moved.
* The connection is TLS (993), STARTTLS (143) or, on 127.0.0.1 only, plain; ``ca_file`` replaces
  the system's CAs. A dropped connection is a :class:`~shared.errors.TargetUnavailableError`
  (retried by the item machinery) and the next call connects again. The password is a ``SecretStr``
  and reaches no log: UTF-8 passwords go by ``AUTHENTICATE PLAIN``.
"""

from __future__ import annotations

import email.policy
import hashlib
import imaplib
import re
import socket
import ssl
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessage
from imap_tools.errors import ImapToolsError, MailboxLoginError
from loguru import logger

from shared.errors import ConfigError, InputError, LoginError, TargetError, TargetUnavailableError
from shared.files import atomic_path
from shared.items import ItemResult, WorkItem, crash_point
from shared.settings import MailboxSettings

if TYPE_CHECKING:
    from shared.audit import RunAudit
    from shared.runner import Run

T = TypeVar("T")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
#: A ZIP-based attachment may unpack to at most this many times its own size (a zip bomb beyond).
MAX_ZIP_RATIO = 100
MAX_ZIP_MEMBERS = 10_000
FETCH_BULK = 200
#: base64 makes an attachment about 4/3 bigger in the message; a message this much over the limit
#: cannot hold an attachment within it plus a little text.
TRANSFER_OVERHEAD = 1.4
DROPPED = (imaplib.IMAP4.abort, OSError, socket.timeout, ssl.SSLError, EOFError)


class AttachmentTooLargeError(InputError):
    """An attachment (or the whole message) is over the size limit."""


class AttachmentTypeError(InputError):
    """An attachment's type is not among the allowed ones."""


class ZipBombError(InputError):
    """A ZIP-based attachment unpacks to far more than it weighs, or is not a readable ZIP."""


class NoAttachmentError(InputError):
    """The message has no attachment of an allowed type."""


@dataclass
class MailItem:
    """What an item knows of its message before it is fetched: headers, size, uid."""

    uid: str
    key: str
    subject: str
    sender: str
    date: str
    size: int
    has_message_id: bool
    attachments: list[Path] = field(default_factory=list)


def message_key(headers: Message, header_block: bytes) -> tuple[str, bool]:
    """The Message-ID (with its angle brackets), or ``sha256:`` and the header block's hash."""
    message_id = " ".join(str(headers.get("Message-ID", "") or "").split())
    if message_id:
        return message_id, True
    return "sha256:" + hashlib.sha256(header_block).hexdigest()[:32], False


def safe_file_name(name: str, fallback: str) -> str:
    """An attachment's name without folders, control characters or a leading dot."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f<>:\"|?*]+", "_", base).strip(" .")
    return base[:150] or fallback


class Mailbox:
    """One IMAP account and folder; connects on first use and again after a dropped connection."""

    def __init__(self, settings: MailboxSettings, attachments_dir: Path,
                 audit: RunAudit | None = None) -> None:
        if settings.security == "plain" and settings.host not in LOOPBACK:
            raise ConfigError(f"KANSLI_MAILBOX__SECURITY=plain is only allowed on 127.0.0.1, not "
                              f"{settings.host}: use tls or starttls")
        if settings.password is None:
            raise ConfigError("KANSLI_MAILBOX__PASSWORD is not set")
        if settings.ca_file is not None and not settings.ca_file.is_file():
            raise ConfigError(f"KANSLI_MAILBOX__CA_FILE {settings.ca_file} not found")
        self.settings = settings
        self.attachments_dir = attachments_dir
        self.audit = audit
        self._box: BaseMailBox | None = None

    @classmethod
    def from_run(cls, run: Run) -> Mailbox:
        return cls(run.settings.mailbox, run.artifacts_dir / "mail", run.audit)

    @property
    def where(self) -> str:
        return f"{self.settings.username}@{self.settings.host}:{self.port}/{self.settings.folder}"

    @property
    def port(self) -> int:
        return self.settings.port or (993 if self.settings.security == "tls" else 143)

    def __enter__(self) -> Mailbox:
        self._call(lambda box: None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the connection ---------------------------------------------------------------------------

    def _connect(self) -> BaseMailBox:
        settings = self.settings
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        try:
            box: BaseMailBox
            if settings.security == "tls":
                box = MailBox(settings.host, self.port, timeout=settings.timeout, ssl_context=context)
            elif settings.security == "starttls":
                box = MailBoxStartTls(settings.host, self.port, timeout=settings.timeout, ssl_context=context)
            else:
                box = MailBoxUnencrypted(settings.host, self.port, timeout=settings.timeout)
            self._login(box)
        except ssl.SSLCertVerificationError as error:
            raise ConfigError(f"IMAP {self.where}: the server's certificate is not trusted "
                              f"({error.verify_message}); set KANSLI_MAILBOX__CA_FILE") from None
        except MailboxLoginError:
            raise LoginError(f"IMAP {self.where}: login refused") from None
        except (LoginError, ConfigError):
            raise
        except (*DROPPED, ImapToolsError, imaplib.IMAP4.error) as error:
            reason = type(error).__name__
            raise TargetUnavailableError(f"IMAP {self.where}: cannot connect ({reason})") from None
        self._ensure_folders(box)
        logger.info("IMAP connected to {} ({})", self.where, settings.security)
        return box

    def _login(self, box: BaseMailBox) -> None:
        assert self.settings.password is not None
        password = self.settings.password.get_secret_value()
        user = self.settings.username
        try:
            if password.isascii() and user.isascii():
                box.login(user, password, initial_folder=None)
            else:
                box.login_utf8(user, password, initial_folder=None)
        except imaplib.IMAP4.error:  # AUTHENTICATE's refusal (LOGIN's is MailboxLoginError)
            raise LoginError(f"IMAP {self.where}: login refused") from None
        box.folder.set(self.settings.folder)

    def _ensure_folders(self, box: BaseMailBox) -> None:
        for folder in (self.settings.done_folder, self.settings.manual_folder):
            if not box.folder.exists(folder):
                box.folder.create(folder)

    def _call(self, action: Callable[[BaseMailBox], T]) -> T:
        """Run ``action`` on the connection (opened if needed); a dropped one is a target error."""
        if self._box is None:
            self._box = self._connect()
        try:
            return action(self._box)
        except DROPPED as error:
            self._drop()
            raise TargetUnavailableError(f"IMAP {self.where}: the connection was lost "
                                         f"({type(error).__name__})") from None
        except ImapToolsError as error:
            raise TargetError(f"IMAP {self.where}: {type(error).__name__}") from None

    def _drop(self) -> None:
        box, self._box = self._box, None
        if box is not None:
            try:
                box.client.shutdown()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass

    def close(self) -> None:
        box, self._box = self._box, None
        if box is not None:
            try:
                box.logout()
            except Exception:  # noqa: BLE001 - closing a connection the server dropped
                pass

    # -- messages in ------------------------------------------------------------------------------

    def messages(self) -> list[MailItem]:
        """The messages of the folder, oldest first, from their headers (nothing marked as read)."""
        return self._call(lambda box: [self._mail_item(message) for message in box.fetch(
            "ALL", mark_seen=False, headers_only=True, bulk=FETCH_BULK)])

    def _mail_item(self, message: MailMessage) -> MailItem:
        headers = message.obj
        block = headers.as_bytes(policy=email.policy.compat32)
        key, has_id = message_key(headers, block)
        return MailItem(uid=str(message.uid), key=key, subject=message.subject, sender=message.from_,
                        date=message.date_str, size=message.size_rfc822, has_message_id=has_id)

    def items(self, messages: Iterable[MailItem]) -> Iterator[WorkItem]:
        """Work items for ``messages``: key the message's key, data the :class:`MailItem`."""
        for position, message in enumerate(messages, start=1):
            yield WorkItem(key=message.key, data=message, position=position)

    def save_attachments(self, item: WorkItem) -> list[Path]:
        """Fetch the item's message and save its attachments of the allowed types; returns their paths.

        Raises :class:`AttachmentTooLargeError`, :class:`AttachmentTypeError`, :class:`ZipBombError`
        or :class:`NoAttachmentError` (business errors) and target errors from the server.
        """
        mail: MailItem = item.data
        limit = self.settings.max_attachment_bytes
        if mail.size > limit * TRANSFER_OVERHEAD + 1024 * 1024:
            raise AttachmentTooLargeError(f"message {mail.key}: {mail.size} bytes, more than an attachment "
                                          f"limit of {limit} bytes allows")
        raw = self._call(lambda box: self._fetch_raw(box, mail.uid))
        if raw is None:
            raise TargetError(f"IMAP {self.where}: message {mail.key} is no longer in the folder")
        folder = self.attachments_dir / safe_file_name(mail.key.strip("<>"), "message").replace(" ", "_")
        saved = [self._save(part, index, folder, mail)
                 for index, part in enumerate(_attachment_parts(message_from_bytes(raw)), start=1)]
        if not saved:
            raise NoAttachmentError(f"message {mail.key}: no attachment "
                                    f"({', '.join(self.settings.allowed_types)})")
        mail.attachments = saved
        item.artifacts.extend(str(path) for path in saved)
        return saved

    @staticmethod
    def _fetch_raw(box: BaseMailBox, uid: str) -> bytes | None:
        typ, data = box.client.uid("FETCH", uid, "(BODY.PEEK[])")
        for part in data or []:
            if isinstance(part, tuple):
                return bytes(part[1])
        return None

    def _save(self, part: Message, index: int, folder: Path, mail: MailItem) -> Path:
        name = safe_file_name(part.get_filename() or "", f"bilaga-{index}")
        suffix = Path(name).suffix.lower()
        if suffix not in self.settings.allowed_types:
            raise AttachmentTypeError(f"message {mail.key}: attachment {name!r} is of a type not allowed "
                                      f"({', '.join(self.settings.allowed_types)})")
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        if len(content) > self.settings.max_attachment_bytes:
            raise AttachmentTooLargeError(f"message {mail.key}: attachment {name!r} is {len(content)} bytes, "
                                          f"over the limit of {self.settings.max_attachment_bytes}")
        if content[:4] == b"PK\x03\x04":
            check_zip(content, f"message {mail.key}: attachment {name!r}", self.settings.max_attachment_bytes)
        destination = folder / name
        if destination.exists():
            destination = folder / f"{Path(name).stem}-{index}{suffix}"
        with atomic_path(destination) as temporary:
            temporary.write_bytes(content)
        return destination

    # -- messages out -----------------------------------------------------------------------------

    def folder_for(self, result: ItemResult) -> str | None:
        """Where an item's message goes after ``result``; None: it stays for the next run."""
        if result.outcome in ("done", "skipped"):
            return self.settings.done_folder
        if result.outcome == "business_error":
            return self.settings.manual_folder
        return None

    def file(self, results: Iterable[ItemResult]) -> dict[str, list[ItemResult]]:
        """Move each result's message to its folder (results carry their :class:`MailItem`)."""
        filed: dict[str, list[ItemResult]] = {}
        for result in results:
            folder = self.folder_for(result)
            if folder is None or not isinstance(result.data, MailItem):
                continue
            crash_point("mailbox.before_move")  # the outcome is in the ledger; the message not moved
            self.move(result.data, folder)
            filed.setdefault(folder, []).append(result)
        for folder, moved in filed.items():
            logger.info("{} message(s) filed in {!r}", len(moved), folder)
        return filed

    def move(self, mail: MailItem, folder: str) -> None:
        self._call(lambda box: box.move(mail.uid, folder))
        if self.audit is not None:
            self.audit.event("mail.filed", {"item_key": mail.key, "folder": folder})


def _attachment_parts(message: Message) -> Iterator[Message]:
    for part in message.walk():
        if part.get_content_maintype() == "multipart":
            continue
        disposition = (part.get_content_disposition() or "").lower()
        if disposition == "inline" and part.get_content_maintype() == "image" and part.get("Content-ID"):
            continue  # a logo in the signature, not an attachment
        if part.get_filename() or disposition == "attachment":
            yield part


def check_zip(content: bytes, what: str, limit: int) -> None:
    """Raise :class:`ZipBombError` unless ``content`` is a ZIP that unpacks to a sane size."""
    try:
        with zipfile.ZipFile(BytesIO(content)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise ZipBombError(f"{what}: not a readable ZIP file") from None
    unpacked = sum(member.file_size for member in members)
    if len(members) > MAX_ZIP_MEMBERS or unpacked > limit * 10 or unpacked > len(content) * MAX_ZIP_RATIO:
        raise ZipBombError(f"{what}: a ZIP of {len(content)} bytes unpacking to {unpacked} bytes in "
                           f"{len(members)} file(s): refused as a zip bomb")
    if any(member.filename.lower().endswith(".zip") for member in members):
        raise ZipBombError(f"{what}: a ZIP holding ZIPs: refused as a possible zip bomb")


