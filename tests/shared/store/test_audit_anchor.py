"""The audit anchor's queries (shared.store.audit_anchor) are tested with the audit trail they anchor:
head and checkpoints, their tampering and retention in tests/shared/test_audit_anchor.py, one chain
per host and the version-2 checkpoints' migration in tests/shared/test_audit_trails.py."""
