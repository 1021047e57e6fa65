"""Schedule files: loading, validation, and one clear line per problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.job import Job
from apscheduler.schedulers.blocking import BlockingScheduler
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ConfigError
from shared.registry import discover
from shared.schedules import (
    Schedule,
    WallTime,
    format_duration,
    load_schedules,
    parse_duration,
    require_valid,
    resolve_wall_time,
)
from tests.conftest import REPO, kansli

ROBOTS = discover("tests.sample_robots")

GOOD = """
[[schedule]]
id = "tick"
robot = "ticker"
every = "15m"
params = { pause = 0.5 }
timeout = "30m"
misfire_grace = "1h"
retries = 2
notify = ["it-drift@example.se"]

[[schedule]]
id = "count-morning"
robot = "counting"
cron = "0 7 * * mon-fri"
params = { count = 3 }

[[schedule]]
id = "once"
robot = "ticker"
at = "2026-12-01T06:00"
enabled = false
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(folder: Path) -> list[str]:
    return [str(problem) for problem in load_schedules(folder, ROBOTS).problems]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5), (45, 45),
])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "15", "1x", "m15"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(0.25) == "250ms"


def test_a_good_file_loads(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD)
    loaded = load_schedules(tmp_path, ROBOTS)
    assert loaded.problems == []
    by_id = loaded.by_id()
    assert by_id["tick"].every == 900 and by_id["tick"].retries == 2
    assert by_id["tick"].timezone == "Europe/Stockholm"
    assert by_id["count-morning"].trigger_text() == "cron 0 7 * * mon-fri"
    assert by_id["once"].enabled is False and by_id["once"].trigger_text() == "at 2026-12-01T06:00"
    assert by_id["tick"].source == str(tmp_path / "a.toml")


def test_fingerprint_follows_the_timing_only(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD)
    before = load_schedules(tmp_path, ROBOTS).by_id()["tick"].fingerprint()
    write(tmp_path, "a.toml", GOOD.replace("pause = 0.5", "pause = 0.1"))
    assert load_schedules(tmp_path, ROBOTS).by_id()["tick"].fingerprint() == before
    write(tmp_path, "a.toml", GOOD.replace('every = "15m"', 'every = "10m"'))
    assert load_schedules(tmp_path, ROBOTS).by_id()["tick"].fingerprint() != before


CASES = {
    "unknown robot": ('robot = "ticker"', 'robot = "nosuch"', "tick", "robot", "unknown robot 'nosuch'"),
    "bad cron": ('cron = "0 7 * * mon-fri"', 'cron = "0 25 * * *"', "count-morning", "cron",
                 "invalid cron expression"),
    "unknown param": ("params = { count = 3 }", "params = { count = 3, colour = 1 }",
                      "count-morning", "params", "unknown parameter 'colour'"),
    "bad param type": ("params = { count = 3 }", 'params = { count = "many" }', "count-morning",
                       "params", "parameter 'count'"),
    "unknown key": ('timeout = "30m"', 'timeout = "30m"\ncolour = "blue"', "tick", "colour",
                    "unknown key"),
    "bad duration": ('timeout = "30m"', 'timeout = "soon"', "tick", "timeout", "not a duration"),
    "two triggers": ('every = "15m"', 'every = "15m"\ncron = "* * * * *"', "tick", "-",
                     "exactly one of cron, every, at or queue"),
    "queue and a time": ('every = "15m"', 'every = "15m"\nqueue = "inbox"', "tick", "-",
                         "exactly one of cron, every, at or queue"),
    "queue checked too often": ('every = "15m"', 'queue = "inbox"\ncheck_every = "10ms"', "tick", "-",
                                "check_every must be at least 1s"),
    "bad time zone": ('every = "15m"', 'every = "15m"\ntimezone = "Mars/Olympus"', "tick", "timezone",
                      "unknown time zone"),
    "bad address": ('notify = ["it-drift@example.se"]', 'notify = ["it-drift"]', "tick", "notify",
                    "not an e-mail address"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_is_one_line_naming_file_id_and_field(tmp_path: Path, case: str) -> None:
    old, new, schedule_id, field, message = CASES[case]
    assert old in GOOD
    path = write(tmp_path, "bad.toml", GOOD.replace(old, new, 1))
    problems = problems_of(tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: schedule '{schedule_id}': field '{field}': ")
    assert message in problems[0]
    assert "\n" not in problems[0]
    valid = {schedule.id for schedule in load_schedules(tmp_path, ROBOTS).schedules}
    assert schedule_id not in valid and len(valid) == 2


def test_a_queue_schedule_is_checked_at_its_interval_and_says_so(tmp_path: Path) -> None:
    write(tmp_path, "q.toml", '[[schedule]]\nid = "q"\nrobot = "ticker"\nqueue = "inbox"\nmin_items = 4\n'
                              'check_every = "30s"\n')
    schedule = load_schedules(tmp_path, ROBOTS).by_id()["q"]
    assert schedule.trigger_text() == "queue inbox (>= 4 ready, checked every 30s)"
    trigger = schedule.trigger()
    fires = [trigger.get_next_fire_time(None, datetime(2027, 3, 28, 0, 59, 45, tzinfo=UTC))]
    for _ in range(2):  # across the spring change at 01:00 UTC: still every 30 s of real time
        fires.append(trigger.get_next_fire_time(fires[-1], fires[-1]))
    assert [b - a for a, b in pairwise(fires)] == [timedelta(seconds=30)] * 2


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD)
    second = write(tmp_path, "b.toml", '[[schedule]]\nid = "tick"\nrobot = "ticker"\nevery = "1h"\n')
    problems = problems_of(tmp_path)
    assert problems == [f"{second}: schedule 'tick': field 'id': duplicate id (first defined in "
                        f"{tmp_path / 'a.toml'})"]


def test_a_toml_syntax_error_names_the_file_and_line_and_unknown_top_level_keys(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.toml", '[[schedule]]\nid = "a"\nrobot = "ticker"\nevery = 15m\n')
    stray = write(tmp_path, "stray.toml", 'title = "x"\n')
    problems = problems_of(tmp_path)
    assert problems[0] == (f"{broken}, line 4, column 11: not valid TOML: Expected newline or end of "
                           "document after a statement")
    assert f"{stray}: schedule '-': field 'title': unknown key (expected [[schedule]])" in problems
    write(tmp_path, "broken.toml", "[[schedule]\nid = 1")
    assert problems_of(tmp_path)[0].startswith(f"{broken}, line 1, column ")
    (tmp_path / "broken.toml").write_bytes(b'id = "\xff"')
    assert problems_of(tmp_path)[0].startswith(f"{broken}: cannot read the file: ")


def test_a_cron_error_names_every_problem_with_its_whole_token(tmp_path: Path) -> None:
    path = write(tmp_path, "a.toml",
                 '[[schedule]]\nid = "x"\nrobot = "ticker"\ncron = "61 25 * 13 mon-fry"\n')
    prefix = f"{path}: schedule 'x': field 'cron': invalid cron expression '61 25 * 13 mon-fry': "
    assert problems_of(tmp_path) == [
        prefix + "minute '61': the last value (61) is higher than the maximum value (59)",
        prefix + "hour '25': the last value (25) is higher than the maximum value (23)",
        prefix + "month '13': the last value (13) is higher than the maximum value (12)",
        prefix + "day of week 'mon-fry': invalid weekday name \"fry\""]
    write(tmp_path, "a.toml", '[[schedule]]\nid = "x"\nrobot = "ticker"\ncron = "0 7 * *"\n')
    assert problems_of(tmp_path) == [f"{path}: schedule 'x': field 'cron': invalid cron expression "
                                     "'0 7 * *': expected 5 fields (minute hour day-of-month month "
                                     "day-of-week), got 4"]


@pytest.mark.parametrize(("weekdays", "days"), [
    ("1-5", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}), ("0", {"Sunday"}),
    ("7", {"Sunday"}), ("mon-fri", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
    ("5-7", {"Friday", "Saturday", "Sunday"}), ("fri-sun", {"Friday", "Saturday", "Sunday"}),
    ("*/2", {"Sunday", "Tuesday", "Thursday", "Saturday"}), ("1,sat", {"Monday", "Saturday"}),
])
def test_cron_weekday_numbers_are_crons_not_apschedulers(weekdays: str, days: set[str]) -> None:
    """APScheduler's from_crontab reads 1 as tuesday; a crontab means monday."""
    trigger = schedule_of(cron=f"0 7 * * {weekdays}").trigger()
    moment, seen = trigger.get_next_fire_time(None, utc(2026, 12, 1)), set()
    for _ in range(14):
        assert moment is not None
        seen.add(moment.astimezone(STOCKHOLM).strftime("%A"))
        moment = trigger.get_next_fire_time(moment, moment)
    assert seen == days


def test_require_valid_lists_every_problem(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD.replace('robot = "ticker"', 'robot = "nosuch"'))
    with pytest.raises(ConfigError) as caught:
        require_valid(load_schedules(tmp_path, ROBOTS))
    assert caught.value.exit_code == 4
    assert "field 'robot'" in str(caught.value)


def test_a_missing_folder_has_no_schedules(tmp_path: Path) -> None:
    loaded = load_schedules(tmp_path / "none", ROBOTS)
    assert loaded.schedules == [] and loaded.problems == []


def test_the_demo_schedules_validate_and_the_live_folder_ships_empty() -> None:
    demo = kansli("schedules", "validate", cwd=REPO, env={"KANSLI_SCHEDULES_DIR": "demo/schedules"})
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.startswith("ok: 3 schedule(s) in 1 file(s) in demo/schedules")
    live = kansli("schedules", "validate", cwd=REPO)
    assert live.returncode == 0, live.stderr
    assert live.stdout.startswith("ok: 0 schedule(s) in 0 file(s) in schedules")
    assert (REPO / "schedules" / "README.md").is_file()


def test_validate_cli_reports_lines_and_exits_4(tmp_path: Path) -> None:
    folder = tmp_path / "sched"
    write(folder, "a.toml", GOOD.replace('cron = "0 7 * * mon-fri"', 'cron = "bad"'))
    env = {"KANSLI_SCHEDULES_DIR": str(folder), "KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}
    result = kansli("schedules", "validate", env=env)
    assert result.returncode == 4
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert ("a.toml: schedule 'count-morning': field 'cron': invalid cron expression 'bad': "
            "expected 5 fields") in lines[0]


# -- daylight saving (Europe/Stockholm, 2027: forward 03-28 02:00 -> 03:00, back 10-31 03:00 -> 02:00) --

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def schedule_of(**fields: object) -> Schedule:
    return Schedule.model_validate({"id": "s", "robot": "ticker", **fields})


def fires(schedule: Schedule, start: datetime, end: datetime, late: timedelta = timedelta(0)) -> list[str]:
    """The fires of ``schedule`` from ``start`` to ``end``, asked the way APScheduler 3.11's loop asks.

    A real :class:`Job`: its first run time from ``get_next_fire_time(None, now)`` (as ``add_job``
    does), then ``Job._get_run_times(now)`` and ``get_next_fire_time(last, now)`` after every wake-up
    (as ``BaseScheduler._process_jobs`` does), waking ``late`` after each planned time.
    """
    trigger = schedule.trigger()
    job = Job(BlockingScheduler(timezone=UTC), id="s", func=print, args=(), kwargs={}, trigger=trigger,
              executor="default", name="s", misfire_grace_time=3600, coalesce=True, max_instances=1,
              next_run_time=trigger.get_next_fire_time(None, start))
    found: list[str] = []
    while job.next_run_time is not None and job.next_run_time <= end:
        now = job.next_run_time + late
        run_times = job._get_run_times(now)
        found.append(run_times[-1].astimezone(STOCKHOLM).strftime("%m-%d %H:%M %Z"))
        job._modify(next_run_time=job.trigger.get_next_fire_time(run_times[-1], now))
    return found


def test_a_fixed_cron_fires_once_a_day_over_both_2027_transitions() -> None:
    daily = schedule_of(cron="30 2 * * *")
    assert fires(daily, utc(2027, 3, 26), utc(2027, 3, 30)) == [
        "03-26 02:30 CET", "03-27 02:30 CET", "03-28 03:00 CEST", "03-29 02:30 CEST"]
    assert fires(daily, utc(2027, 10, 29), utc(2027, 11, 2)) == [
        "10-29 02:30 CEST", "10-30 02:30 CEST", "10-31 02:30 CEST", "11-01 02:30 CET"]
    # woken late, the loop still asks from the planned time: nothing is added or lost
    assert fires(daily, utc(2027, 10, 30), utc(2027, 11, 1), late=timedelta(minutes=50)) == [
        "10-30 02:30 CEST", "10-31 02:30 CEST"]
    assert fires(schedule_of(cron="0,30 2 * * *"), utc(2027, 3, 27, 12), utc(2027, 3, 29, 12)) == [
        "03-28 03:00 CEST", "03-29 02:00 CEST", "03-29 02:30 CEST"]  # two skipped times, one run
    assert fires(schedule_of(cron="30 2,3 * * *"), utc(2027, 3, 27, 12), utc(2027, 3, 28, 12)) == [
        "03-28 03:00 CEST", "03-28 03:30 CEST"]


def test_a_wildcard_cron_and_an_interval_run_in_real_time() -> None:
    assert fires(schedule_of(cron="0 * * * *"), utc(2027, 10, 30, 22, 30), utc(2027, 10, 31, 3)) == [
        "10-31 01:00 CEST", "10-31 02:00 CEST", "10-31 02:00 CET", "10-31 03:00 CET", "10-31 04:00 CET"]
    assert fires(schedule_of(cron="*/30 * * * *"), utc(2027, 3, 28, 0), utc(2027, 3, 28, 1, 30)) == [
        "03-28 01:00 CET", "03-28 01:30 CET", "03-28 03:00 CEST", "03-28 03:30 CEST"]
    for start in (utc(2027, 3, 27, 22), utc(2027, 10, 30, 22)):
        every = schedule_of(every="15m", start="2027-01-01T00:00")
        trigger = every.trigger()
        moments = [trigger.get_next_fire_time(None, start)]
        for _ in range(24):
            moments.append(trigger.get_next_fire_time(moments[-1], moments[-1]))
        assert {later - earlier for earlier, later in pairwise(moments)} == {timedelta(minutes=15)}


@pytest.mark.parametrize(("started", "first"), [
    (utc(2027, 3, 28, 0, 59, 59), "03-28 03:00 CEST"),  # just before the gap
    (utc(2027, 3, 28, 1, 0), "03-28 03:00 CEST"),  # at its end
    (utc(2027, 3, 28, 1, 10), "03-28 03:00 CEST"),  # 03:10 CEST: the day's 02:30 has not had its time
    (utc(2027, 3, 28, 1, 29, 59), "03-28 03:00 CEST"),
    (utc(2027, 3, 28, 1, 30), "03-29 02:30 CEST"),  # 03:30 CEST: as late as 02:30 CET would be
    (utc(2027, 10, 31, 0, 20), "10-31 02:30 CEST"),  # in the repeated hour, first time round
    (utc(2027, 10, 31, 1, 10), "11-01 02:30 CET"),  # second time round: 02:30 has fired already
])
def test_the_first_fire_of_a_new_or_changed_cron_schedule(started: datetime, first: str) -> None:
    trigger = schedule_of(cron="30 2 * * *").trigger()
    assert trigger.get_next_fire_time(None, started).astimezone(STOCKHOLM).strftime("%m-%d %H:%M %Z") == first


def test_a_shifted_fire_says_why_and_a_repeated_one_is_not_shifted() -> None:
    daily = schedule_of(cron="30 2 * * *")
    assert daily.shift_of(utc(2027, 3, 28, 1)) == (
        "2027-03-28 02:30 does not exist in Europe/Stockholm (the clocks were put forward); run at the "
        "first valid time after it, 2027-03-28 03:00 CEST")
    assert daily.shift_of(utc(2027, 3, 29, 0, 30)) is None
    assert daily.shift_of(utc(2027, 10, 31, 0, 30)) is None
    assert schedule_of(cron="0 * * * *").shift_of(utc(2027, 3, 28, 1)) is None


def test_one_off_schedules_over_both_transitions() -> None:
    skipped = schedule_of(at="2027-03-28T02:30")
    assert skipped.run_date() == utc(2027, 3, 28, 1)
    assert fires(skipped, utc(2027, 3, 27), utc(2027, 3, 29)) == ["03-28 03:00 CEST"]
    assert skipped.shift_of(utc(2027, 3, 28, 1)) is not None
    assert "02:30 does not exist" in (skipped.shift_of(utc(2027, 3, 28, 1)) or "")
    repeated = schedule_of(at="2027-10-31T02:30")
    assert fires(repeated, utc(2027, 10, 30), utc(2027, 11, 1)) == ["10-31 02:30 CEST"]
    assert repeated.shift_of(utc(2027, 10, 31, 0, 30)) is None
    explicit = schedule_of(at="2027-10-31T02:30+01:00")  # an offset given: that instant, as written
    assert explicit.run_date() == utc(2027, 10, 31, 1, 30)


def test_resolve_wall_time() -> None:
    assert resolve_wall_time(datetime(2027, 3, 28, 2, 30), STOCKHOLM) == WallTime(
        datetime(2027, 3, 28, 2, 30), utc(2027, 3, 28, 1), "skipped", utc(2027, 3, 28, 1, 30))
    assert resolve_wall_time(datetime(2027, 10, 31, 2, 30), STOCKHOLM) == WallTime(
        datetime(2027, 10, 31, 2, 30), utc(2027, 10, 31, 0, 30), "repeated")
    assert resolve_wall_time(datetime(2027, 6, 1, 12), STOCKHOLM).instant == utc(2027, 6, 1, 10)


@given(moment=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2029, 1, 1)),
       zone_name=st.sampled_from(["Europe/Stockholm", "America/New_York", "Australia/Lord_Howe", "UTC"]))
def test_a_fixed_cron_fires_each_wall_clock_time_once(moment: datetime, zone_name: str) -> None:
    """Over any two days: one fire per day, increasing, each at 02:30 local or at the end of a gap."""
    schedule = schedule_of(cron="30 2 * * *", timezone=zone_name)
    trigger, zone = schedule.trigger(), ZoneInfo(zone_name)
    start = moment.replace(tzinfo=UTC)
    first = trigger.get_next_fire_time(None, start)
    assert first is not None
    moments = [first]
    for _ in range(2):
        moments.append(trigger.get_next_fire_time(moments[-1], moments[-1]))
    assert all(earlier < later for earlier, later in pairwise(moments))
    days = [m.astimezone(zone).date() for m in moments]
    assert len(set(days)) == 3
    for fired in moments:
        local = fired.astimezone(zone)
        assert (local.hour, local.minute) == (2, 30) or schedule.shift_of(fired) is not None
