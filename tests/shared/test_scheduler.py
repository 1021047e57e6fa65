"""The scheduler daemon's tests live in tests/shared/scheduler/ (one module per module of
shared/scheduler/); the helpers other tests import from here are re-exported from its conftest."""

from tests.shared.scheduler.conftest import Daemons, wait_until

__all__ = ["Daemons", "wait_until"]
