"""The scheduler's queries (shared.store.scheduler) are tested where they are used, on the real daemon
and CLI: schedule states, requests, operator actions and the daemon's meta lease (a second daemon
refused) in tests/shared/test_scheduler.py and tests/shared/test_cli_schedules.py."""
