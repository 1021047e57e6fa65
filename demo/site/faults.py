"""Fault injection for the demo e-service: errors, latency, slow answers and a forced logout.

A :class:`FaultConfig` says *how often* things go wrong; a :class:`FaultInjector` makes the
decisions, one request at a time, from a seeded ``random.Random`` behind a lock, so a run with the
same seed and the same request order misbehaves the same way.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

_RATE_KEYS = ("error_rate", "slow_rate", "fail_after_store_rate")


@dataclass(frozen=True)
class FaultConfig:
    """How the site misbehaves. The default misbehaves not at all.

    * ``error_rate``: share of requests to the e-service pages answered with HTTP 500
      ("Tekniskt fel") before the request is handled, so a failed submit never stores a case;
    * ``latency_ms``: delay added to every request (except ``/health``, ``/admin`` and ``/static``);
    * ``slow_rate`` / ``slow_seconds``: share of requests whose answer is held back
      ``slow_seconds`` *after* they were handled (a slow submit has already stored its case);
    * ``fail_after_store_rate``: share of final submits that store the case and then answer 500;
    * ``expire_after``: after this many successful submits, the submitting session is expired once
      (its receipt is still shown; the next page asks for a new login), then never again;
    * ``seed``: seed of the fault dice; ``None`` uses :attr:`SiteConfig.seed`.
    """

    error_rate: float = 0.0
    latency_ms: int = 0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    expire_after: int | None = None
    fail_after_store_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for key in _RATE_KEYS:
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {key} must be between 0 and 1, got {value}")
        if self.latency_ms < 0:
            raise ValueError(f"fault latency_ms must not be negative, got {self.latency_ms}")
        if self.slow_seconds < 0:
            raise ValueError(f"fault slow_seconds must not be negative, got {self.slow_seconds}")
        if self.expire_after is not None and self.expire_after < 1:
            raise ValueError(f"fault expire_after must be at least 1, got {self.expire_after}")

    @property
    def active(self) -> bool:
        """True when any fault can happen."""
        return self != FaultConfig(seed=self.seed)

    @classmethod
    def parse(cls, spec: str | None) -> FaultConfig:
        """Read ``"error_rate=0.1,slow_rate=0.05,slow_seconds=3,expire_after=20"``.

        An empty spec (or ``"none"``) gives no faults. Raises ``ValueError`` naming the bad key.
        """
        values: dict[str, Any] = {}
        text = (spec or "").strip()
        if text.lower() in ("", "none", "off"):
            return cls()
        for item in text.split(","):
            if not item.strip():
                continue
            key, value = _split_item(item)
            values[key] = _convert(key, value)
        return cls(**values)


_KINDS: dict[str, type] = {
    "error_rate": float,
    "latency_ms": int,
    "slow_rate": float,
    "slow_seconds": float,
    "expire_after": int,
    "fail_after_store_rate": float,
    "seed": int,
}


def _split_item(item: str) -> tuple[str, str]:
    key, separator, value = item.partition("=")
    key = key.strip()
    if not separator:
        raise ValueError(f"fault spec item {item.strip()!r} is not key=value")
    if key not in _KINDS:
        known = ", ".join(sorted(_KINDS))
        raise ValueError(f"unknown fault key {key!r} (known keys: {known})")
    return key, value.strip()


def _convert(key: str, value: str) -> Any:
    kind = _KINDS[key]
    if key == "expire_after" and value.lower() in ("", "none", "off"):
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(
            f"fault key {key!r} needs {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None


@dataclass(frozen=True)
class RequestFaults:
    """What happens to one request."""

    error: bool
    slow: bool


class FaultInjector:
    """Makes the fault decisions of one site, safely from any thread or task."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self._random = random.Random(config.seed if config.seed is not None else seed)
        self._lock = threading.Lock()
        self._submits = 0
        self._expired_once = False

    def reconfigure(self, config: FaultConfig) -> None:
        """Switch to other faults while the site runs (the dice and counters carry on)."""
        with self._lock:
            self.config = config

    def _roll(self, rate: float) -> bool:
        with self._lock:
            value = self._random.random()
        return value < rate

    def for_request(self) -> RequestFaults:
        """Roll the dice for one request (always two rolls, so the sequence stays stable)."""
        error = self._roll(self.config.error_rate)
        slow = self._roll(self.config.slow_rate)
        return RequestFaults(error=error, slow=slow)

    def fail_after_store(self) -> bool:
        """Whether a submit that has just been stored answers 500 anyway."""
        return self._roll(self.config.fail_after_store_rate)

    def count_submit(self) -> bool:
        """Count one stored submit; True when this one must expire its session (once only)."""
        limit = self.config.expire_after
        with self._lock:
            self._submits += 1
            if limit is None or self._expired_once or self._submits < limit:
                return False
            self._expired_once = True
            return True
