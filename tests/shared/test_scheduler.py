"""The scheduler daemon's tests live in tests/shared/scheduler/; the helpers other tests use stay
importable from here."""

from tests.shared.scheduler.test_daemon import Daemons, wait_until

__all__ = ["Daemons", "wait_until"]
