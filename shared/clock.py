"""Times as people read them: local wall-clock time with the zone's abbreviation.

Every timestamp is stored as UTC ISO 8601 (:func:`shared.store.utcnow`); tables, reports and history
show it in the settings' time zone (``KANSLI_TIMEZONE``, default Europe/Stockholm) with the zone
named, ``2026-12-02 06:30 CET``. JSON output keeps ISO 8601 with its offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "Europe/Stockholm"


@lru_cache(maxsize=16)
def zone(name: str | None = None) -> ZoneInfo:
    """The zone ``name``, or the settings' zone."""
    if name is None:
        from shared.settings import get_settings

        name = get_settings().timezone
    return ZoneInfo(name)


def parse_time(value: str | datetime) -> datetime:
    """A stored timestamp as an aware datetime (naive text is taken as UTC)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def local_time(
    value: str | datetime | None, *, zone_name: str | None = None, seconds: bool = False,
    utc: bool = False,
) -> str:
    """``2026-12-02 06:30 CET`` (``seconds``: ``06:30:15``; ``utc``: in UTC, labelled so); ``""`` for None."""
    if value is None or value == "":
        return ""
    moment = parse_time(value).astimezone(UTC if utc else zone(zone_name))
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} {'UTC' if utc else moment.tzname()}"


def iso_with_offset(value: str | datetime | None) -> str | None:
    """A timestamp for JSON: ISO 8601 with its UTC offset (``None`` stays ``None``)."""
    if value is None or value == "":
        return None
    return parse_time(value).isoformat()
