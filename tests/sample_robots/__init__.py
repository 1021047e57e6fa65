"""Robots used by the framework's own tests (not shipped)."""
