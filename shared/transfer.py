"""File transfer over SFTP (asyncssh): remote folders in as work items, files out without half-files.

::

    with sftp_connection(run) as sftp:
        for item in sftp.items("/utbyte/in"):             # key: name:size:mtime
            sftp.download(item.data, run.artifacts_dir)
        sftp.upload(Path("fakturor.xlsx"), "/ekonomi/import")

* The server's host key must be in the ``known_hosts`` file of the settings
  (``KANSLI_SFTP__KNOWN_HOSTS``); an unknown or changed key is a :class:`ConfigError`, never learned.
* Key (``KANSLI_SFTP__KEY_FILE``) or password (``KANSLI_SFTP__PASSWORD``) login; no agent, no
  ``~/.ssh`` keys or config are used behind the settings' back.
* An upload is written under a temporary name (``.NAME.RANDOM.part``) in the target folder and then
  renamed over ``NAME`` (``posix-rename``: atomic, replaces): a reader never sees half a file.
  Leftover temp files of that name from a killed run are removed first.
* Every file transferred gets its SHA-256 in the result and, with a run, an audit event
  (``file.downloaded`` / ``file.uploaded``).
* :class:`Outbox` delivers files exactly once across crashes: registered locally first (atomically,
  with the item keys they carry), uploaded by any later run until confirmed.

asyncssh is asynchronous; this module runs one event loop in a background thread for the
connection, so robots call it like any blocking function.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import shutil
import stat
import threading
from collections.abc import Coroutine, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import asyncssh
from loguru import logger

from shared.errors import ConfigError, LoginError, TargetError, TargetUnavailableError
from shared.files import atomic_path
from shared.items import WorkItem, crash_point
from shared.settings import SftpSettings

if TYPE_CHECKING:
    from shared.audit import RunAudit
    from shared.runner import Run

T = TypeVar("T")
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A regular file in a remote folder."""

    path: str
    size: int
    mtime: int

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def key(self) -> str:
        """Names this version of the file across runs: a changed file is new work."""
        return f"{self.name}:{self.size}:{self.mtime}"


@dataclass(frozen=True)
class Transferred:
    """One file moved: where from, where to, how big, and its SHA-256."""

    source: str
    destination: str
    size: int
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SftpConnection:
    """One SSH connection and SFTP session, opened by ``with`` (or :meth:`open`)."""

    def __init__(self, settings: SftpSettings, audit: RunAudit | None = None) -> None:
        self.settings = settings
        self.audit = audit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connection: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    @property
    def where(self) -> str:
        return f"{self.settings.username}@{self.settings.host}:{self.settings.port}"

    def __enter__(self) -> SftpConnection:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the connection ---------------------------------------------------------------------------

    def open(self) -> None:
        known_hosts = self.settings.known_hosts
        if not known_hosts.is_file():
            raise ConfigError(f"SFTP {self.where}: known_hosts file {known_hosts} not found "
                              "(KANSLI_SFTP__KNOWN_HOSTS); the server's host key must be listed there")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp", daemon=True)
        self._thread.start()
        try:
            self._call(self._connect(), self.settings.timeout + 5)
        except BaseException:
            self.close()
            raise
        logger.info("SFTP connected to {}", self.where)

    async def _connect(self) -> None:
        options = self._options()
        try:
            self._connection = await asyncio.wait_for(asyncssh.connect(**options), self.settings.timeout)
            self._sftp = await self._connection.start_sftp_client()
        except asyncssh.HostKeyNotVerifiable:
            raise ConfigError(f"SFTP {self.where}: the server's host key is not in "
                              f"{self.settings.known_hosts}; refused (check the key with the server's "
                              "owner, then add it)") from None
        except asyncssh.PermissionDenied:
            raise LoginError(f"SFTP {self.where}: login refused") from None
        except asyncssh.KeyImportError as error:
            raise ConfigError(f"SFTP key file {self.settings.key_file}: {error}") from None
        except (TimeoutError, OSError, asyncssh.Error) as error:
            raise TargetUnavailableError(f"SFTP {self.where}: cannot connect ({_reason(error)})") from None

    def _options(self) -> dict[str, Any]:
        settings = self.settings
        keys: list[Any] = []
        if settings.key_file is not None:
            if not settings.key_file.is_file():
                raise ConfigError(f"SFTP key file {settings.key_file} not found (KANSLI_SFTP__KEY_FILE)")
            keys = [str(settings.key_file)]
        if not keys and settings.password is None:
            raise ConfigError("SFTP: set KANSLI_SFTP__KEY_FILE or KANSLI_SFTP__PASSWORD")
        return {
            "host": settings.host, "port": settings.port, "username": settings.username,
            "known_hosts": str(settings.known_hosts), "client_keys": keys, "agent_path": None,
            "config": [], "passphrase": _secret(settings.key_passphrase),
            "password": _secret(settings.password), "preferred_auth": "publickey,password",
            "login_timeout": settings.timeout,
        }

    def close(self) -> None:
        if self._loop is None:
            return
        if self._connection is not None:
            try:
                self._call(self._disconnect(), 10)
            except TargetError:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None

    async def _disconnect(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
        if self._connection is not None:
            self._connection.close()
            await self._connection.wait_closed()
        self._sftp = self._connection = None

    def _call(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._loop is None:
            work.close()
            raise RuntimeError("the SFTP connection is not open")
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(timeout or self.settings.timeout * 10)
        except FutureTimeout:
            future.cancel()
            raise TargetUnavailableError(f"SFTP {self.where}: no answer in time") from None
        except (OSError, asyncssh.Error) as error:
            raise TargetError(f"SFTP {self.where}: {_reason(error)}") from None

    @property
    def sftp(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            raise RuntimeError("the SFTP connection is not open")
        return self._sftp

    # -- folders ----------------------------------------------------------------------------------

    def list_files(self, remote_dir: str, pattern: str = "*") -> list[RemoteFile]:
        """The regular files of ``remote_dir`` matching ``pattern``, by name (temp files left out)."""
        return self._call(self._list(remote_dir, pattern))

    async def _list(self, remote_dir: str, pattern: str) -> list[RemoteFile]:
        entries = await self.sftp.readdir(remote_dir)
        files = [
            RemoteFile(str(PurePosixPath(remote_dir) / str(entry.filename)), int(entry.attrs.size or 0),
                       int(entry.attrs.mtime or 0))
            for entry in entries
            if entry.attrs.permissions is not None and stat.S_ISREG(entry.attrs.permissions)
            and fnmatch(str(entry.filename), pattern) and not str(entry.filename).endswith(".part")
        ]
        return sorted(files, key=lambda remote: remote.name)

    def items(self, remote_dir: str, pattern: str = "*") -> list[WorkItem]:
        """The files of ``remote_dir`` as work items (key ``name:size:mtime``, data the RemoteFile)."""
        return [WorkItem(key=remote.key, data=remote, position=n)
                for n, remote in enumerate(self.list_files(remote_dir, pattern), start=1)]

    def stat(self, remote_path: str) -> RemoteFile | None:
        """The remote file at ``remote_path``, or None when there is none."""
        return self._call(self._stat(remote_path))

    async def _stat(self, remote_path: str) -> RemoteFile | None:
        try:
            attrs = await self.sftp.stat(remote_path)
        except asyncssh.SFTPNoSuchFile:
            return None
        return RemoteFile(remote_path, int(attrs.size or 0), int(attrs.mtime or 0))

    # -- transfers --------------------------------------------------------------------------------

    def download(self, remote: RemoteFile | str, local_dir: Path, name: str | None = None) -> Transferred:
        """Fetch ``remote`` into ``local_dir`` (temp file, then rename); its SHA-256 is recorded."""
        remote_path = remote.path if isinstance(remote, RemoteFile) else remote
        destination = local_dir / (name or PurePosixPath(remote_path).name)
        with atomic_path(destination) as temporary:
            self._call(self.sftp.get(remote_path, str(temporary)))
            done = Transferred(remote_path, str(destination), temporary.stat().st_size, sha256_of(temporary))
        self._record("file.downloaded", done)
        return done

    def upload(self, local: Path, remote_dir: str, name: str | None = None) -> Transferred:
        """Put ``local`` into ``remote_dir`` as ``name``: written as a temp file, then renamed."""
        final = str(PurePosixPath(remote_dir) / (name or local.name))
        digest, size = sha256_of(local), local.stat().st_size
        self.remove_stale_parts(remote_dir, name or local.name)
        temporary = str(PurePosixPath(remote_dir) / f".{name or local.name}.{secrets.token_hex(4)}.part")
        self._call(self.sftp.put(str(local), temporary))
        written = self.stat(temporary)
        if written is None or written.size != size:
            raise TargetError(f"SFTP {self.where}: {final} arrived with {written.size if written else 0} "
                              f"of {size} bytes")
        crash_point("transfer.uploaded")  # the whole file is there under its temp name
        self._call(self.sftp.posix_rename(temporary, final))
        done = Transferred(str(local), final, size, digest)
        self._record("file.uploaded", done)
        return done

    def remove_stale_parts(self, remote_dir: str, name: str) -> int:
        """Delete the temp files an earlier, killed upload of ``name`` left in ``remote_dir``."""
        return self._call(self._remove_parts(remote_dir, name))

    async def _remove_parts(self, remote_dir: str, name: str) -> int:
        removed = 0
        for entry in await self.sftp.readdir(remote_dir):
            filename = str(entry.filename)
            if filename.startswith(f".{name}.") and filename.endswith(".part"):
                await self.sftp.remove(str(PurePosixPath(remote_dir) / filename))
                removed += 1
        if removed:
            logger.info("removed {} temp file(s) of {} left in {} by a killed upload", removed, name,
                        remote_dir)
        return removed

    def _record(self, event: str, done: Transferred) -> None:
        logger.info("{} {} -> {} ({} bytes, sha256 {})", event, done.source, done.destination, done.size,
                    done.sha256)
        if self.audit is not None:
            self.audit.event(event, {"host": self.where, "source": done.source,
                                     "destination": done.destination, "bytes": done.size,
                                     "sha256": done.sha256})


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


@contextmanager
def sftp_connection(run: Run | None = None, settings: SftpSettings | None = None) -> Iterator[SftpConnection]:
    """An open :class:`SftpConnection` from ``run.settings.sftp`` (or ``settings``), audited to the run."""
    if settings is None:
        if run is None:
            from shared.settings import get_settings

            settings = get_settings().sftp
        else:
            settings = run.settings.sftp
    with SftpConnection(settings, run.audit if run is not None else None) as connection:
        yield connection


class Outbox:
    """Local files waiting to be delivered, each with the item keys it carries.

    Each entry is a folder ``NAME/`` holding the file and ``keys.json``, made under a temp name and
    renamed into place, so the file and its keys appear together or not at all. :meth:`add` is called
    before anything else happens to the items (their messages moved, say); :meth:`deliver` uploads
    every entry not yet confirmed and moves it to ``sent/``. A crash anywhere leaves either a pending
    entry (uploaded by the next run) or a sent one; :meth:`keys` lets the next run leave out items
    already in an entry: no item is delivered twice and none is lost.
    """

    KEYS = "keys.json"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sent = folder / "sent"
        self.sent.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(".*.adding"):
            shutil.rmtree(leftover, ignore_errors=True)  # a run killed while adding: its items are not in

    def keys(self) -> set[str]:
        """Every item key in a pending or sent entry."""
        found: set[str] = set()
        for manifest in [*self.folder.glob(f"*/{self.KEYS}"), *self.sent.glob(f"*/{self.KEYS}")]:
            found.update(json.loads(manifest.read_text(encoding="utf-8")))
        return found

    def add(self, source: Path, keys: Iterable[str]) -> Path:
        """Take ``source`` into the outbox (moved), recording ``keys``; returns the file's new path."""
        entry = self.folder / source.name
        if entry.exists() or (self.sent / source.name).exists():
            raise ConfigError(f"outbox {self.folder}: an entry named {source.name} exists already")
        building = self.folder / f".{source.name}.{secrets.token_hex(4)}.adding"
        building.mkdir()
        (building / self.KEYS).write_text(json.dumps(sorted(keys), ensure_ascii=False), encoding="utf-8")
        shutil.move(source, building / source.name)
        building.rename(entry)
        return entry / source.name

    def pending(self) -> list[Path]:
        """The files not yet delivered, oldest name first."""
        return sorted(entry / entry.name for entry in self.folder.iterdir()
                      if entry.is_dir() and entry != self.sent and not entry.name.startswith("."))

    def deliver(self, sftp: SftpConnection, remote_dir: str) -> list[Transferred]:
        """Upload each pending file (one already there with the same size counts as delivered)."""
        delivered = []
        for path in self.pending():
            there = sftp.stat(str(PurePosixPath(remote_dir) / path.name))
            if there is not None and there.size == path.stat().st_size:
                logger.info("{} is already in {} (an earlier run uploaded it)", path.name, remote_dir)
                delivered.append(Transferred(str(path), there.path, there.size, sha256_of(path)))
            else:
                delivered.append(sftp.upload(path, remote_dir))
            path.parent.rename(self.sent / path.parent.name)
        return delivered
