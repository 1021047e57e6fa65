from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.clock import iso_with_offset, local_time, parse_time
from shared.errors import ConfigError
from shared.settings import load_settings


def test_local_time_names_the_zone_in_winter_and_summer() -> None:
    assert local_time("2026-12-02T05:30:00+00:00", zone_name="Europe/Stockholm") == "2026-12-02 06:30 CET"
    assert local_time("2027-06-01T04:30:00.123456+00:00", zone_name="Europe/Stockholm",
                      seconds=True) == "2027-06-01 06:30:00 CEST"


def test_utc_is_labelled_and_none_is_blank() -> None:
    assert local_time("2026-12-02T05:30:00+00:00", utc=True) == "2026-12-02 05:30 UTC"
    assert local_time(None) == ""


def test_naive_text_is_utc() -> None:
    assert parse_time("2026-12-02T05:30:00") == datetime(2026, 12, 2, 5, 30, tzinfo=UTC)
    assert iso_with_offset("2026-12-02T05:30:00") == "2026-12-02T05:30:00+00:00"
    assert iso_with_offset(None) is None


def test_settings_zone_is_used_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANSLI_TIMEZONE", "Nowhere/Atlantis")
    with pytest.raises(ConfigError, match="KANSLI_TIMEZONE"):
        load_settings()
    monkeypatch.setenv("KANSLI_TIMEZONE", "America/New_York")
    monkeypatch.setenv("KANSLI_LANGUAGE", "fi")
    with pytest.raises(ConfigError, match="KANSLI_LANGUAGE"):
        load_settings()
