"""The tests of shared.browser are in tests/shared/browser/, one module per submodule; this keeps the
import path of the helper other tests take from here (tests/robots/test_intake_forms.py)."""

from __future__ import annotations

from tests.shared.browser.test_pool import seeded_site

__all__ = ["seeded_site"]
