"""Schedule files: ``schedules/*.toml`` (folder ``KANSLI_SCHEDULES_DIR``), validated with pydantic.

A file holds ``[[schedule]]`` tables::

    [[schedule]]
    id = "letters-weekday-morning"
    robot = "decision_letters"
    cron = "0 7 * * mon-fri"          # or: every = "15m" / at = "2026-12-01T06:00"
    # start = "2026-12-01T06:05"      # every only: the first run, anchoring the interval
    timezone = "Europe/Stockholm"     # default
    params = { input = "inbox/applications.xlsx" }
    timeout = "30m"
    misfire_grace = "1h"
    retries = 2
    retry_backoff = "30s"
    notify = ["it-drift@example.se"]
    enabled = true

Every problem is one line naming the file, the schedule id and the field:
``schedules/a.toml: schedule 'x': field 'cron': ...``.

Daylight saving is read the way cron reads it (:class:`WallClockCronTrigger`, :func:`resolve_wall_time`):
a wall-clock time in the repeated hour fires once, at its first occurrence; a time that does not exist
fires once, at the first valid instant after it (the end of the gap), and :meth:`Schedule.shift_of`
says so. A cron whose minute or hour field starts with ``*`` runs in real time instead (every
occurrence, nothing made up for the gap), as cron's "wildcard" jobs do; ``every`` is always real time.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import islice
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ConfigError, KansliError
from shared.registry import RobotSpec

SCHEDULE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"`` or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '15m' or '1h'")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().replace(" ", "")
    parts = _DURATION_PART.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{value!r} is not a duration such as '30s', '15m', '1h30m' or '2d'")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """Seconds as the shortest ``1h30m`` style text."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    remaining, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts)


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


# -- daylight saving: wall-clock times read the way cron reads them ---------------------------------

_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
_WEEK = timedelta(days=7)
_LOOKBACK = timedelta(hours=3)  # longer than any daylight-saving gap
_MATCH_LIMIT = 100_000


@dataclass(frozen=True)
class WallTime:
    """A local wall-clock time placed on the real time line.

    ``kind``: ``None`` (it exists once), ``"repeated"`` (clocks went back: ``instant`` is its first
    occurrence) or ``"skipped"`` (clocks went forward over it: ``instant`` is the first valid instant
    after it, ``nominal`` where it would have been with the offset before the change).
    """

    wall: datetime
    instant: datetime
    kind: str | None = None
    nominal: datetime | None = None


def _offset(instant: datetime, zone: tzinfo) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _wall_of(instant: datetime, zone: tzinfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _bisect_change(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """The first whole second in ``(low, high]`` whose offset differs from ``low``'s (one is there)."""
    before = _offset(low, zone)
    while high - low > _SECOND:
        middle = low + (high - low) / 2
        if _offset(middle, zone) == before:
            low = middle
        else:
            high = middle
    candidate = low.replace(microsecond=0) + _SECOND
    return candidate if candidate <= high and _offset(candidate, zone) != before else high


def _first_change(low: datetime, high: datetime, zone: tzinfo) -> datetime | None:
    """The first offset change of ``zone`` in ``(low, high]``, probed a week at a time."""
    before = _offset(low, zone)
    step_start = low
    while step_start < high:
        step_end = min(step_start + _WEEK, high)
        if _offset(step_end, zone) != before:
            return _bisect_change(step_start, step_end, zone)
        step_start = step_end
    return None


def resolve_wall_time(wall: datetime, zone: tzinfo) -> WallTime:
    """Place the naive local time ``wall`` of ``zone`` on the time line, as cron would run it."""
    wall = wall.replace(tzinfo=None, fold=0)
    first, second = (wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    exists = [moment for moment in (first, second) if _wall_of(moment, zone) == wall]
    if len(set(exists)) == 2:
        return WallTime(wall, min(exists), "repeated")
    if exists:
        return WallTime(wall, exists[0])
    low, high = sorted((first, second))
    return WallTime(wall, _bisect_change(low, high, zone), "skipped", high)


class WallClockCronTrigger(BaseTrigger):
    """A crontab in a time zone, across daylight-saving changes as cron runs it.

    A fixed-time crontab (minute and hour fields not starting with ``*``) fires at wall-clock times:
    a time in the repeated hour once (its first occurrence); a time that does not exist once, at the
    first valid instant after it. A daemon (or a new or changed schedule) that starts after that
    instant but before the time would have come without the change still gets that run: the first
    fire is then the shifted instant, in the past, and the misfire grace decides (run late or
    ``missed``). A crontab whose minute or hour starts with ``*`` fires in real time: at every instant
    whose local time matches, so twice in the repeated hour and not at all in the gap.

    APScheduler's loop asks :meth:`get_next_fire_time` with ``previous_fire_time=None`` when a job is
    added, rescheduled or resumed, and with the last run time after each fire.
    """

    def __init__(self, expression: str, timezone: tzinfo) -> None:
        self.expression = expression
        self.timezone = timezone
        values = expression.split()
        if len(values) == 5:
            values[4] = crontab_weekdays(values[4])
        # local time as if it never changed
        self.wall = CronTrigger.from_crontab(" ".join(values), timezone=UTC)
        minute, hour = expression.split()[:2]
        self.real_time = minute.startswith("*") or hour.startswith("*")

    def _matches(self, start: datetime) -> Iterator[datetime]:
        """The naive wall-clock times the crontab names, from ``start`` on (to the second)."""
        moment = start.replace(tzinfo=UTC)
        while True:
            found = self.wall.get_next_fire_time(None, moment)
            if found is None:
                return
            yield found.replace(tzinfo=None)
            moment = found + _MICROSECOND

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if self.real_time:
            return self._next_real_time(previous_fire_time + _MICROSECOND if previous_fire_time else now)
        if previous_fire_time is not None:
            return self._next_after(previous_fire_time)
        return self._first_from(now)

    def _next_after(self, previous: datetime) -> datetime | None:
        start = _wall_of(previous, self.timezone) + _MICROSECOND
        for match in islice(self._matches(start), _MATCH_LIMIT):
            instant = resolve_wall_time(match, self.timezone).instant
            if instant > previous:
                return instant
        return None

    def _first_from(self, now: datetime) -> datetime | None:
        start = _wall_of(now, self.timezone) - _LOOKBACK
        for match in islice(self._matches(start), _MATCH_LIMIT):
            placed = resolve_wall_time(match, self.timezone)
            if placed.instant >= now:
                return placed.instant
            if placed.nominal is not None and now < placed.nominal:
                return placed.instant  # shifted out of the gap, and its day's run has not had its time
        return None

    def _next_real_time(self, start: datetime) -> datetime | None:
        moment = start.astimezone(UTC)
        for _ in range(1000):
            offset = _offset(moment, self.timezone)
            match = next(self._matches((moment + offset).replace(tzinfo=None)), None)
            if match is None:
                return None
            candidate = (match - offset).replace(tzinfo=UTC)
            change = _first_change(moment, candidate, self.timezone)
            if change is None:
                return candidate
            moment = change  # the offset changes before the match: go on from the change
        return None

    def shifted_from(self, instant: datetime) -> datetime | None:
        """The wall-clock time (naive) that does not exist and fires at ``instant`` instead, if any."""
        if self.real_time:
            return None
        end = _wall_of(instant, self.timezone)
        for match in islice(self._matches(end - _LOOKBACK), _MATCH_LIMIT):
            if match > end:
                return None
            placed = resolve_wall_time(match, self.timezone)
            if placed.kind == "skipped" and placed.instant == instant:
                return match
        return None

    def __str__(self) -> str:
        return f"cron[{self.expression}, {self.timezone}]"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({self.expression!r}, timezone={str(self.timezone)!r})>"


class Schedule(BaseModel):
    """One ``[[schedule]]`` table of a schedule file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SCHEDULE_ID)
    robot: str = Field(min_length=1)
    cron: str | None = None
    every: Duration | None = None
    at: datetime | None = None
    start: datetime | None = None
    timezone: str = "Europe/Stockholm"
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration | None = 3600.0
    misfire_grace: Duration = 3600.0
    retries: int = Field(default=0, ge=0, le=10)
    retry_backoff: Duration = 30.0
    notify: list[str] = Field(default_factory=list)
    enabled: bool = True
    #: Fire on a work queue instead of a time: when it has ``min_items`` ready items, checked every
    #: ``check_every`` (shared.queue).
    queue: str | None = Field(default=None, min_length=1, max_length=128)
    min_items: int = Field(default=1, ge=1)
    check_every: Duration = 60.0
    source: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def one_trigger(self) -> Schedule:
        given = [name for name in ("cron", "every", "at", "queue") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of cron, every, at or queue")
        if self.check_every < 1:
            raise ValueError("check_every must be at least 1s")
        if self.every is not None and self.every < 1:
            raise ValueError("every must be at least 1s")
        if self.start is not None and self.every is None:
            raise ValueError("start (the first time of an every schedule) needs every")
        return self

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    def retry_delay(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (1, 2, ...): ``retry_backoff``, doubling each further one."""
        return self.retry_backoff * 2 ** (attempt - 1)

    def trigger(self) -> BaseTrigger:
        """The APScheduler trigger of this schedule."""
        if self.cron is not None:
            return WallClockCronTrigger(self.cron, self.tz)
        if self.queue is not None:  # looked at every check_every; fires a run when there is work
            return IntervalTrigger(seconds=self.check_every, timezone=UTC)
        if self.every is not None:
            # in UTC: APScheduler adds the interval to the local wall-clock time, so over a
            # daylight-saving change a 15m interval would last 75m (spring) or 0m (autumn)
            start = self._local(self.start)
            return IntervalTrigger(seconds=self.every, start_date=start.astimezone(UTC) if start else None,
                                   timezone=UTC)
        return DateTrigger(run_date=self.run_date(), timezone=self.tz)

    def run_date(self) -> datetime | None:
        """The ``at`` time on the time line (a local time that does not exist: the first valid after it)."""
        return self._local(self.at)

    def _local(self, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        if moment.tzinfo is not None:
            return moment
        return resolve_wall_time(moment, self.tz).instant.astimezone(self.tz)

    def shift_of(self, planned: datetime) -> str | None:
        """Why a fire planned for ``planned`` is not at the schedule's own wall-clock time, if it is not."""
        wall: datetime | None = None
        if self.cron is not None:
            trigger = self.trigger()
            assert isinstance(trigger, WallClockCronTrigger)
            wall = trigger.shifted_from(planned)
        elif self.at is not None and self.at.tzinfo is None:
            placed = resolve_wall_time(self.at, self.tz)
            wall = self.at if placed.kind == "skipped" and placed.instant == planned else None
        if wall is None:
            return None
        actual = planned.astimezone(self.tz)
        return (f"{wall:%Y-%m-%d %H:%M} does not exist in {self.timezone} (the clocks were put forward); "
                f"run at the first valid time after it, {actual:%Y-%m-%d %H:%M} {actual.tzname()}")

    def is_past(self, now: datetime | None = None) -> bool:
        """True for an ``at`` schedule whose time has passed."""
        run_date = self.run_date()
        return run_date is not None and run_date <= (now or datetime.now(UTC))

    def trigger_text(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron}"
        if self.every is not None:
            return f"every {format_duration(self.every)}"
        if self.queue is not None:
            return (f"queue {self.queue} (>= {self.min_items} ready, checked every "
                    f"{format_duration(self.check_every)})")
        assert self.at is not None
        return f"at {self.at.isoformat(timespec='minutes')}"

    def fingerprint(self) -> str:
        """Changes when the timing of the schedule changes (the job must be rescheduled)."""
        timing = {"cron": self.cron, "every": self.every, "timezone": self.timezone,
                  "at": self.at.isoformat() if self.at else None,
                  "start": self.start.isoformat() if self.start else None, "grace": self.misfire_grace,
                  "enabled": self.enabled, "queue": self.queue, "check_every": self.check_every}
        return hashlib.sha256(json.dumps(timing, sort_keys=True).encode()).hexdigest()[:32]

    def summary(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["trigger"] = self.trigger_text()
        data["source"] = self.source
        return data


@dataclass(frozen=True)
class ScheduleProblem:
    """One thing wrong in a schedule file (``line``, ``column``: for a file that is not valid TOML)."""

    file: str
    schedule_id: str
    field: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.schedule_id == "-" and self.field == "-":  # the file itself
            where = self.file if self.line is None else f"{self.file}, line {self.line}, column {self.column}"
            return f"{where}: {self.message}"
        return f"{self.file}: schedule '{self.schedule_id}': field '{self.field}': {self.message}"


_TOML_PLACE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_CRON_FIELD_NAMES = {"minute": "minute", "hour": "hour", "day": "day of month", "month": "month",
                     "day_of_week": "day of week"}


def _toml_problem(path: Path, error: tomllib.TOMLDecodeError) -> ScheduleProblem:
    """A TOML syntax error naming the file, line and column."""
    text = str(error)
    place = _TOML_PLACE.search(text)
    if place is None:
        return ScheduleProblem(str(path), "-", "-", f"not valid TOML: {text}")
    message = _TOML_PLACE.sub("", text)
    return ScheduleProblem(str(path), "-", "-", f"not valid TOML: {message}", line=int(place.group(1)),
                           column=int(place.group(2)))


_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's numbers: 0 (and 7) = sunday
_WEEKDAY_TOKEN = re.compile(r"^(\*|\w+)(?:-(\w+))?(?:/(\d+))?$")


def _weekday_number(text: str) -> int | None:
    if text.isdigit() and int(text) <= 7:
        return int(text) % 7
    return _WEEKDAY_NAMES.index(text.lower()) if text.lower() in _WEEKDAY_NAMES else None


def crontab_weekdays(value: str) -> str:
    """A crontab day-of-week field in APScheduler's terms, which number the days from monday (0).

    ``1-5`` in a crontab is monday to friday; to APScheduler's ``from_crontab`` it is tuesday to
    saturday. Every token is spelled out as day names (``sun``, ``mon``, ...); a token that is not
    a day, a range or a step is left as it is, for APScheduler to reject.
    """
    if value in ("*", "?"):
        return value
    return ",".join(dict.fromkeys(name for token in value.split(",") for name in _weekday_names(token)))


def _weekday_names(token: str) -> list[str]:
    """One token of a crontab day-of-week field as day names (the token itself if it is not one)."""
    match = _WEEKDAY_TOKEN.match(token)
    if match is None:
        return [token]
    start, end, step = match.group(1), match.group(2), int(match.group(3) or 1)
    if start == "*":
        first, last = (0, 6) if end is None else (None, None)
    else:
        first = _weekday_number(start)
        last = 7 if end == "7" else _weekday_number(end) if end else (6 if match.group(3) else first)
    if first is None or last is None or last < first or step == 0:
        return [token]  # APScheduler names the problem
    return [_WEEKDAY_NAMES[day % 7] for day in range(first, last + 1, step)]


def cron_problems(expression: str) -> list[str]:
    """Every problem of a crontab, each naming its field and quoting the whole bad token."""
    values = expression.split()
    if len(values) != len(_CRON_FIELDS):
        return [f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(values)}"]
    found = []
    for name, value in zip(_CRON_FIELDS, values, strict=True):
        for token in value.split(","):
            try:
                CronTrigger(**{name: crontab_weekdays(token) if name == "day_of_week" else token},
                            timezone=UTC)
            except ValueError as error:
                detail = re.sub(r"^Error validating expression '[^']*': ", "", str(error))
                found.append(f"{_CRON_FIELD_NAMES[name]} {token!r}: {detail[:1].lower()}{detail[1:]}")
    return found


@dataclass
class LoadedSchedules:
    """The valid schedules of a folder and the problems of the rest."""

    schedules: list[Schedule] = field(default_factory=list)
    problems: list[ScheduleProblem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def by_id(self) -> dict[str, Schedule]:
        return {schedule.id: schedule for schedule in self.schedules}


def load_schedules(directory: Path, robots: Mapping[str, RobotSpec]) -> LoadedSchedules:
    """Read and validate every ``*.toml`` of ``directory`` (a missing folder has none)."""
    loaded = LoadedSchedules()
    files = sorted(directory.glob("*.toml")) if directory.is_dir() else []
    seen: dict[str, str] = {}
    for path in files:
        loaded.files.append(path)
        for schedule in _load_file(path, robots, loaded.problems):
            if schedule.id in seen:
                loaded.problems.append(ScheduleProblem(
                    str(path), schedule.id, "id", f"duplicate id (first defined in {seen[schedule.id]})"
                ))
                continue
            seen[schedule.id] = str(path)
            loaded.schedules.append(schedule)
    return loaded


def require_valid(loaded: LoadedSchedules) -> None:
    """Raise :class:`ConfigError` listing every problem, one per line."""
    if loaded.problems:
        count = len(loaded.problems)
        lines = "\n".join(str(problem) for problem in loaded.problems)
        raise ConfigError(f"{count} problem(s) in the schedule files:\n{lines}")


def _load_file(
    path: Path, robots: Mapping[str, RobotSpec], problems: list[ScheduleProblem]
) -> list[Schedule]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        problems.append(_toml_problem(path, error))
        return []
    except (OSError, UnicodeDecodeError) as error:
        problems.append(ScheduleProblem(str(path), "-", "-", f"cannot read the file: {error}"))
        return []
    for key in document:
        if key != "schedule":
            problems.append(ScheduleProblem(str(path), "-", key, "unknown key (expected [[schedule]])"))
    tables = document.get("schedule", [])
    if not isinstance(tables, list):
        problems.append(ScheduleProblem(str(path), "-", "schedule", "expected [[schedule]] tables"))
        return []
    found = []
    for index, table in enumerate(tables, start=1):
        schedule = _load_table(path, index, table, robots, problems)
        if schedule is not None:
            found.append(schedule)
    return found


def _load_table(
    path: Path, index: int, table: dict[str, Any], robots: Mapping[str, RobotSpec],
    problems: list[ScheduleProblem],
) -> Schedule | None:
    schedule_id = str(table.get("id") or f"#{index}")
    before = len(problems)
    try:
        schedule = Schedule.model_validate({**table, "source": str(path)})
    except ValidationError as error:
        problems.extend(_problems_of(path, schedule_id, error))
        return None
    _check_timing(path, schedule, problems)
    _check_robot(path, schedule, robots, problems)
    return schedule if len(problems) == before else None


def _problems_of(path: Path, schedule_id: str, error: ValidationError) -> list[ScheduleProblem]:
    found = []
    for detail in error.errors():
        location = ".".join(str(part) for part in detail["loc"]) or "-"
        message = "unknown key" if detail["type"] == "extra_forbidden" else detail["msg"]
        found.append(ScheduleProblem(str(path), schedule_id, location, message))
    return found


def _check_timing(path: Path, schedule: Schedule, problems: list[ScheduleProblem]) -> None:
    try:
        schedule.tz  # noqa: B018 - validates the zone name
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(ScheduleProblem(str(path), schedule.id, "timezone",
                                        f"unknown time zone {schedule.timezone!r}"))
        return
    if schedule.cron is not None:
        found = cron_problems(schedule.cron)
        if not found:
            try:
                schedule.trigger()
            except ValueError as error:
                found = [str(error)]
        for problem in found:
            problems.append(ScheduleProblem(str(path), schedule.id, "cron",
                                            f"invalid cron expression {schedule.cron!r}: {problem}"))


def _check_robot(
    path: Path, schedule: Schedule, robots: Mapping[str, RobotSpec], problems: list[ScheduleProblem]
) -> None:
    spec = robots.get(schedule.robot)
    if spec is None:
        known = ", ".join(robots) or "none"
        problems.append(ScheduleProblem(str(path), schedule.id, "robot",
                                        f"unknown robot {schedule.robot!r} (known robots: {known})"))
        return
    try:
        spec.validate(schedule.params)
    except KansliError as error:
        problems.append(ScheduleProblem(str(path), schedule.id, "params", str(error)))
    for address in schedule.notify:
        if "@" not in address or address.startswith("@") or address.endswith("@"):
            problems.append(ScheduleProblem(str(path), schedule.id, "notify",
                                            f"{address!r} is not an e-mail address"))
