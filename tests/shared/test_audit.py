"""The tests of shared.audit are in tests/shared/audit/, one module per submodule. This module keeps
the old import path of their helpers (tests/shared/test_audit_trails.py uses it)."""

from tests.shared.audit.conftest import Clock, read_lines, recompute, write_lines

__all__ = ["Clock", "read_lines", "recompute", "write_lines"]
