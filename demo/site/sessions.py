"""Server-side sessions: a random token in an HttpOnly cookie, everything else in memory."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

COOKIE_NAME = "eservice_session"
ANON_TTL = 3600


@dataclass
class Attachment:
    """An uploaded "Bilaga" (only its name and size are kept)."""

    name: str
    size: int


@dataclass
class Session:
    """One browser's session; anonymous until login."""

    token: str
    csrf_token: str
    created_at: float
    authenticated: bool = False
    applicant: dict[str, str] = field(default_factory=dict)
    errand: dict[str, str] = field(default_factory=dict)
    attachment: Attachment | None = None
    expire_pending: bool = False

    def csrf_ok(self, candidate: Any) -> bool:
        """True when ``candidate`` is this session's CSRF token."""
        if not isinstance(candidate, str) or not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self.csrf_token.encode())

    def clear_form(self) -> None:
        """Forget the application being filled in."""
        self.applicant = {}
        self.errand = {}
        self.attachment = None


class SessionStore:
    """Every live session of one site, safe from any thread."""

    def __init__(self, ttl_seconds: int) -> None:
        self.ttl_seconds = ttl_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, authenticated: bool = False) -> Session:
        """A new session with fresh tokens."""
        session = Session(
            token=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            created_at=time.time(),
            authenticated=authenticated,
        )
        with self._lock:
            self._prune()
            self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token``; expired sessions are dropped and give None."""
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is not None and self._expired(session):
                del self._sessions[token]
                return None
        return session

    def drop(self, session: Session) -> None:
        """End a session."""
        with self._lock:
            self._sessions.pop(session.token, None)

    def _expired(self, session: Session) -> bool:
        # A login page's anonymous session lives at least an hour, whatever the TTL.
        limit = self.ttl_seconds if session.authenticated else max(self.ttl_seconds, ANON_TTL)
        return time.time() - session.created_at >= limit

    def _prune(self) -> None:
        stale = [token for token, item in self._sessions.items() if self._expired(item)]
        for token in stale:
            del self._sessions[token]
