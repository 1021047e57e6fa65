"""The ASGI middleware that applies the configured faults to the e-service pages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from demo.site.faults import FaultInjector

# Never faulty: the liveness probe, the admin listing and the stylesheet.
EXEMPT_PREFIXES = ("/health", "/admin/", "/static/", "/favicon.ico")


def is_exempt(path: str) -> bool:
    """True for the paths that never see faults."""
    return path.startswith(EXEMPT_PREFIXES)


def delayed(send: Send, seconds: float) -> Send:
    """``send`` holding the response back ``seconds`` (the request has been handled by then)."""

    async def send_later(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(seconds)
        await send(message)

    return send_later


class FaultMiddleware:
    """Adds latency, answers 500 ("Tekniskt fel") or holds answers back, as configured.

    An injected 500 is decided *before* the request reaches its handler, so a failed submit never
    stores a case. (Failing *after* the store is the submit handler's ``fail_after_store_rate``.)
    """

    def __init__(
        self, app: ASGIApp, injector: FaultInjector, on_error: Callable[[Request], Response]
    ) -> None:
        self.app = app
        self.injector = injector
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        config = self.injector.config
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        decision = self.injector.for_request()
        if decision.slow and config.slow_seconds:
            send = delayed(send, config.slow_seconds)
        if decision.error:
            response = self.on_error(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
