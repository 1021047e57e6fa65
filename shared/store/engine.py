"""The database engines: one per URL and process, SQLite in WAL mode, PostgreSQL with pre-ping.

A bad ``KANSLI_DATABASE_URL`` (a dialect or driver not installed, a SQLite folder that cannot be
made) is a :class:`shared.errors.ConfigError`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from shared.errors import ConfigError

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _engine_for(url: str) -> Engine:
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
        return engine


def _create_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as error:
        raise ConfigError(f"invalid setting KANSLI_DATABASE_URL: {error}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ConfigError(f"cannot create the database folder {folder}: {error.strerror}; "
                                  "check KANSLI_DATA_DIR / KANSLI_DATABASE_URL") from None
        engine = _new_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    return _new_engine(url, pool_pre_ping=True)


def _new_engine(url: str, **options: Any) -> Engine:
    try:
        return sa.create_engine(url, **options)
    except (sa.exc.ArgumentError, ImportError) as error:  # an unknown dialect, a driver not installed
        where = make_url(url).render_as_string(hide_password=True)
        raise ConfigError(f"invalid setting KANSLI_DATABASE_URL {where}: {error}") from None
