"""Settings, read from ``KANSLI_*`` environment variables, a ``.env`` file, a secrets directory and an
optional settings file ``kansli.toml`` (``KANSLI_CONFIG_FILE``; the variables override it).

Nested sections use ``__``: ``KANSLI_BROWSER__HEADLESS=false``. Every default works from the repository
root with no ``.env``. Secrets are ``SecretStr`` and are registered with :mod:`shared.redaction` as soon
as the settings are loaded, so they are masked in every log sink from then on.
"""

from __future__ import annotations

import os
import shutil
import socket
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from shared.errors import ConfigError
from shared.redaction import register_secrets

#: Chromium executables looked for on ``PATH``, in order. Headless runs prefer the headless shell
#: (Debian package ``chromium-headless-shell``, the same build as ``chromium`` without the desktop
#: browser around it; it is what Playwright itself runs headless): it spends about half the CPU per
#: page, which is what lets two workers beat one on two cores (docs/benchmarks.md).
HEADLESS_SHELL_CANDIDATES = ("chromium-headless-shell", "chrome-headless-shell")
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserSettings(BaseModel):
    """How Kansli starts and drives Chromium."""

    executable_path: Path | None = None
    headless: bool = True
    timeout_ms: int = Field(default=10_000, gt=0)
    navigation_timeout_ms: int = Field(default=20_000, gt=0)
    locale: str = "sv-SE"
    timezone: str = "Europe/Stockholm"
    block_assets: bool = False
    workers: int = Field(default=1, ge=1, le=16)
    #: A context opens a fresh page (tab) after this many items, keeping its cookies and login: a
    #: tab slows down as its history grows. 0: one page for ever (a site keeping its login in
    #: ``sessionStorage``, which is per tab, needs that).
    page_items: int = Field(default=50, ge=0)
    #: The page size in CSS pixels, ``WIDTHxHEIGHT``. Smaller pages cost Chromium less CPU to paint
    #: (640x400: ~15% less per form), but a target may switch to its mobile layout below ~1000 wide.
    viewport: str = Field(default="1280x720", pattern=r"^[1-9]\d{2,3}x[1-9]\d{2,3}$")

    @property
    def viewport_size(self) -> tuple[int, int]:
        width, height = self.viewport.split("x")
        return int(width), int(height)

    def chromium_path(self) -> Path | None:
        """The configured executable, else the first Chromium on ``PATH`` (headless: the shell first)."""
        if self.executable_path is not None:
            return self.executable_path
        candidates = (HEADLESS_SHELL_CANDIDATES if self.headless else ()) + CHROMIUM_CANDIDATES
        for name in candidates:
            found = shutil.which(name)
            if found:
                return Path(found)
        return None


class RetrySettings(BaseModel):
    """Backoff for application errors (the target misbehaved)."""

    attempts: int = Field(default=3, ge=1, le=100)
    backoff_initial: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=10.0, ge=0)


class QueueSettings(BaseModel):
    """Work queues: attempts across runs, the wait between them, and when a run stops early."""

    #: Attempts of one item across all runs; then it stays ``app_error`` until ``kansli queue retry``.
    max_attempts: int = Field(default=10, ge=1, le=1000)
    #: After an application error a consumer waits this long before taking the item again (doubling
    #: with each failed run, up to ``retry_after_max_s``).
    retry_after_s: float = Field(default=60.0, ge=0)
    retry_after_max_s: float = Field(default=3600.0, ge=0)
    #: This many items in a row failing with the same application error stop the run (0: never).
    stop_after_failures: int = Field(default=5, ge=0)


class EServiceSettings(BaseModel):
    """The e-service (case system) the web-form robots fill in."""

    url: str = "http://127.0.0.1:8765"
    username: str = "handlaggare"
    password: SecretStr = SecretStr("demo-lösenord-2026")


class SmtpSettings(BaseModel):
    """Outgoing mail for failure notifications."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, gt=0, lt=65536)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "kansli@localhost"
    timeout: float = Field(default=10.0, gt=0)
    notify_on: list[str] = ["failed", "timeout", "missed", "partial"]


class AuditSettings(BaseModel):
    """The audit trail's keying and pseudonyms."""

    key: SecretStr | None = None
    pseudonym_key: SecretStr | None = None


class RetentionSettings(BaseModel):
    """How long run folders and logs are kept, in days (0 keeps them forever)."""

    runs_days: int = Field(default=90, ge=0)
    logs_days: int = Field(default=90, ge=0)
    audit_days: int = Field(default=0, ge=0)


class PdfSettings(BaseModel):
    """LibreOffice for Word to PDF/A (shared.pdf)."""

    #: ``soffice``; default: the first on ``PATH`` (Debian ``libreoffice-writer-nogui``).
    soffice: Path | None = None
    #: The Python that has LibreOffice's ``uno`` module (Debian ``python3-uno``: the system Python).
    uno_python: Path = Path("/usr/bin/python3")
    #: Seconds one document may take; past it LibreOffice is killed and started again.
    timeout: float = Field(default=120.0, gt=0)
    start_timeout: float = Field(default=90.0, gt=0)


class MailboxSettings(BaseModel):
    """The shared IMAP mailbox robots read (shared.mailbox)."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, gt=0, lt=65536)
    #: ``tls`` (port 993), ``starttls`` (143) or ``plain`` (127.0.0.1 only: tests and demos).
    security: Literal["tls", "starttls", "plain"] = "tls"
    #: CA certificates to trust (PEM) instead of the system's.
    ca_file: Path | None = None
    username: str = "kansli"
    password: SecretStr | None = None
    folder: str = "INBOX"
    #: Where a message goes after its item's outcome: done (or done before), and business error.
    done_folder: str = "Behandlat"
    manual_folder: str = "Manuell hantering"
    max_attachment_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    #: File name endings an attachment may have (lower case); others make the item a business error.
    allowed_types: list[str] = [".pdf"]
    timeout: float = Field(default=30.0, gt=0)


class SftpSettings(BaseModel):
    """The SFTP server files are fetched from and delivered to (shared.transfer)."""

    host: str = "127.0.0.1"
    port: int = Field(default=22, gt=0, lt=65536)
    username: str = "kansli"
    password: SecretStr | None = None
    #: A private key file (OpenSSH format); used before the password when both are set.
    key_file: Path | None = None
    key_passphrase: SecretStr | None = None
    #: The server's host key must be in this file; an unknown key is refused (never learned).
    known_hosts: Path = Path("known_hosts")
    timeout: float = Field(default=30.0, gt=0)


class ClusterSettings(BaseModel):
    """Several robot hosts (``KANSLI_EXECUTION=procrastinate``): heartbeats, leases, timeouts."""

    #: A worker writes its heartbeat this often (seconds).
    heartbeat_s: float = Field(default=5.0, gt=0)
    #: A worker whose heartbeat is older than this is dead: its jobs are retried and its in-flight
    #: items reconciled by another host.
    heartbeat_timeout_s: float = Field(default=30.0, gt=0)
    #: A standby scheduler tries to take the lead this often (seconds): the longest a takeover waits
    #: after the leader's database connection died.
    leader_poll_s: float = Field(default=2.0, gt=0)


class TargetSettings(BaseModel):
    """Limits on one target system, shared by every host (``[targets.eservice]``)."""

    #: Browser sessions all hosts together may have open on the target; 0: no limit.
    max_sessions: int = Field(default=0, ge=0)
    #: How long a run waits for a free session before it fails (seconds).
    wait_s: float = Field(default=600.0, gt=0)


class Settings(BaseSettings):
    """All of Kansli's settings."""

    model_config = SettingsConfigDict(
        env_prefix="KANSLI_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        secrets_dir=None,
        extra="ignore",
        validate_default=True,
        env_ignore_empty=True,
    )

    data_dir: Path = Path("var/data")
    log_dir: Path = Path("var/log")
    database_url: str | None = None
    schedules_dir: Path = Path("schedules")
    robots_package: str = "robots"
    log_level: str = "WARNING"
    #: The zone people read times in (CLI tables, reports, history); JSON stays ISO 8601 with offset.
    timezone: str = "Europe/Stockholm"
    #: The language of staff-facing outputs (results workbooks, reports, failure mails).
    language: Literal["sv", "en"] = "sv"
    browser: BrowserSettings = BrowserSettings()
    retry: RetrySettings = RetrySettings()
    queue: QueueSettings = QueueSettings()
    eservice: EServiceSettings = EServiceSettings()
    smtp: SmtpSettings = SmtpSettings()
    audit: AuditSettings = AuditSettings()
    retention: RetentionSettings = RetentionSettings()
    pdf: PdfSettings = PdfSettings()
    mailbox: MailboxSettings = MailboxSettings()
    sftp: SftpSettings = SftpSettings()
    #: Where runs execute: ``local`` (this host: the CLI's process, the scheduler's subprocesses) or
    #: ``procrastinate`` (run jobs in PostgreSQL, done by ``kansli worker`` on any host).
    execution: Literal["local", "procrastinate"] = "local"
    #: This host's name among several (worker rows, the scheduler leader, its audit chain);
    #: default: the machine's host name.
    host_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    cluster: ClusterSettings = ClusterSettings()
    #: Per target system limits, by the target's name (``eservice``, ...).
    targets: dict[str, TargetSettings] = {}

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The variables (and ``.env``, secrets) first, then the settings file under them."""
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return init_settings, env_settings, dotenv_settings, file_secret_settings, toml

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Stockholm)") from None
        return value

    @model_validator(mode="after")
    def cluster_needs_postgresql(self) -> Settings:
        if self.execution == "procrastinate" and not (self.database_url or "").startswith("postgresql"):
            raise ValueError("KANSLI_EXECUTION=procrastinate needs KANSLI_DATABASE_URL on PostgreSQL "
                             "(postgresql+psycopg://...); the embedded SQLite serves one host only")
        return self

    @property
    def host(self) -> str:
        """This host's id: ``KANSLI_HOST_ID``, else the machine's host name."""
        return self.host_id or socket.gethostname()

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def locks_dir(self) -> Path:
        return self.data_dir / "locks"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'kansli.db').resolve()}"

    def secret_names(self) -> list[str]:
        """The names (never the values) of the secret settings that are set."""
        return [f"KANSLI_{name.upper()}" for name in _secret_names(self) if name]

    def secret_values(self) -> list[str]:
        """Every secret value in the settings, in clear text (for masking only)."""
        return [value.get_secret_value() for value in _secrets_in(self)]

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets masked, for display."""
        data = self.model_dump(mode="json")
        data["database_url"] = _mask_url(self.effective_database_url)
        return data


def _secrets_in(model: BaseModel) -> list[SecretStr]:
    found: list[SecretStr] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            found.append(value)
        elif isinstance(value, BaseModel):
            found.extend(_secrets_in(value))
    return found


def _secret_names(model: BaseModel, prefix: str = "") -> list[str]:
    names: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            names.append(prefix + name)
        elif isinstance(value, BaseModel):
            names.extend(_secret_names(value, f"{prefix}{name}__"))
    return names


def _mask_url(url: str) -> str:
    """Hide the password of a database URL."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


CONFIG_FILE = Path("kansli.toml")


def config_file() -> Path | None:
    """The settings file: ``KANSLI_CONFIG_FILE``, else ``./kansli.toml`` when there is one."""
    named = os.environ.get("KANSLI_CONFIG_FILE")
    if named:
        return Path(named)
    return CONFIG_FILE if CONFIG_FILE.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value raises :class:`ConfigError` naming the variable (or the
    settings file and key it came from)."""
    secrets_dir = os.environ.get("KANSLI_SECRETS_DIR")
    file = config_file()
    if file is not None and not file.is_file():
        raise ConfigError(f"settings file {file} not found (KANSLI_CONFIG_FILE)")
    try:
        settings = Settings(_secrets_dir=secrets_dir, **overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error, file)) from None
    except tomllib.TOMLDecodeError as error:  # the message ends "(at line N, column M)"
        raise ConfigError(f"settings file {file} is not valid TOML: {error}") from None
    register_secrets(settings.secret_values())
    return settings


def _describe(error: ValidationError, file: Path | None = None) -> str:
    first = error.errors()[0]
    if not first["loc"]:  # a check over several settings: its message names them
        return f"invalid settings: {str(first['msg']).removeprefix('Value error, ')}"
    variable = "KANSLI_" + "__".join(str(part) for part in first["loc"]).upper()
    count = error.error_count()
    more = f" (and {count - 1} more)" if count > 1 else ""
    if variable not in os.environ and _in_file(file, first["loc"]):
        key = ".".join(str(part) for part in first["loc"])
        return f"invalid setting {key} in {file}: {first['msg']}{more}"
    return f"invalid setting {variable}: {first['msg']}{more}"


def _in_file(file: Path | None, loc: tuple[int | str, ...]) -> bool:
    """Whether the settings file sets the key at ``loc`` (then the bad value came from it)."""
    if file is None:
        return False
    try:
        data: Any = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    for part in loc:
        if not isinstance(data, dict) or str(part) not in data:
            return False
        data = data[str(part)]
    return True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests, and the CLI after changing the environment)."""
    get_settings.cache_clear()
