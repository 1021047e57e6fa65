"""Running the demo e-service: blocking (:func:`serve`, the CLI) or in a background thread
(:class:`RunningSite`, for tests and demos).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import LOGGING_CONFIG

from demo.site.app import SiteConfig, create_app
from demo.site.faults import FaultConfig
from demo.site.store import CaseStore

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_DB = Path("var/demo-site/eservice.db")
DEFAULT_USERNAME = "handlaggare"
DEFAULT_PASSWORD = "demo-lösenord-2026"
USERNAME_ENV = "KANSLI_ESERVICE__USERNAME"
PASSWORD_ENV = "KANSLI_ESERVICE__PASSWORD"


def _uvicorn_server(
    config: SiteConfig, host: str, port: int, access_log: bool = False, own_logging: bool = True
) -> uvicorn.Server:
    uv_config = uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        access_log=access_log,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
        log_config=LOGGING_CONFIG if own_logging else None,
    )
    return uvicorn.Server(uv_config)


def bound_url(server: uvicorn.Server, host: str) -> str:
    """The base URL of a started server (the real port, also when asked for port 0)."""
    port = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def _serve_and_announce(
    server: uvicorn.Server, host: str, ready: Callable[[str], None] | None
) -> None:
    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        if ready is not None:
            ready(bound_url(server, host))

    watcher = asyncio.create_task(announce())
    try:
        await server.serve()
    finally:
        watcher.cancel()


def serve(
    config: SiteConfig,
    host: str = DEFAULT_HOST,
    port: int = 0,
    ready: Callable[[str], None] | None = None,
    access_log: bool = False,
) -> None:
    """Run the site until SIGINT/SIGTERM; ``ready(url)`` is called once it is listening."""
    server = _uvicorn_server(config, host, port, access_log=access_log)
    asyncio.run(_serve_and_announce(server, host, ready))


def _health_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class RunningSite:
    """The site in a background thread: ``with RunningSite(config) as site: site.url``."""

    def __init__(
        self,
        config: SiteConfig,
        host: str = DEFAULT_HOST,
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        if self._url is None:
            raise RuntimeError("the demo e-service is not running")
        return self._url

    def start(self) -> RunningSite:
        """Start the server and wait until ``/health`` answers."""
        self._server = _uvicorn_server(self.config, self.host, self.port, own_logging=False)
        self._thread = threading.Thread(
            target=self._server.run, name="demo-eservice", daemon=True
        )
        self._thread.start()
        self._url = self._wait_until_up(self._server, self._thread)
        return self

    def _wait_until_up(self, server: uvicorn.Server, thread: threading.Thread) -> str:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and thread.is_alive():
            if server.started:
                url = bound_url(server, self.host)
                if _health_ok(url):
                    return url
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the demo e-service did not start on {self.host}:{self.port}")

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server, self._thread, self._url = None, None, None

    @property
    def app(self) -> Starlette:
        """The running ASGI app."""
        if self._server is None:
            raise RuntimeError("the demo e-service is not running")
        app = self._server.config.app
        assert isinstance(app, Starlette)
        return app

    def set_faults(self, faults: FaultConfig) -> None:
        """Change the faults of the running site (e.g. fail only the next submit)."""
        service = self.app.state.service
        service.faults.reconfigure(faults)

    def cases(self) -> list[dict[str, Any]]:
        """Every stored case, read straight from the site's SQLite file."""
        return CaseStore(self.config.db_path).all()

    def __enter__(self) -> RunningSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# -- command line --------------------------------------------------------------------------------


class _Stopped(Exception):
    """SIGTERM arrived (re-raised by uvicorn after its graceful shutdown)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stopped()


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m demo.site``."""
    parser = argparse.ArgumentParser(
        prog="python -m demo.site",
        description="Run the demo e-service "
        "(E-tjänst: Ansökan om kommunalt stöd, Exempelby kommun).",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="SQLite file of the cases")
    parser.add_argument("--faults", default="", metavar="SPEC", help="e.g. error_rate=0.1,...")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault dice")
    parser.add_argument("--session-ttl", type=int, default=1800, help="session lifetime (s)")
    parser.add_argument(
        "--username",
        default=os.environ.get(USERNAME_ENV, DEFAULT_USERNAME),
        help=f"default: ${USERNAME_ENV}, else {DEFAULT_USERNAME!r}",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get(PASSWORD_ENV, DEFAULT_PASSWORD),
        help=f"default: ${PASSWORD_ENV}, else the demo password",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser


def _announce(url: str) -> None:
    sys.stdout.write(f"Demo e-service ready at {url}\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m demo.site``: serve until Ctrl-C or SIGTERM."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        faults = FaultConfig.parse(args.faults)
    except ValueError as error:
        sys.stderr.write(f"python -m demo.site: error: --faults: {error}\n")
        return 2
    config = SiteConfig(
        db_path=args.db,
        username=args.username,
        password=args.password,
        faults=faults,
        seed=args.seed,
        session_ttl_seconds=args.session_ttl,
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        serve(config, args.host, args.port, ready=_announce, access_log=args.access_log)
    except (KeyboardInterrupt, _Stopped):
        pass
    return 0
