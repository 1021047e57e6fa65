"""Schedule files: loading, validation, and one clear line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.registry import discover
from shared.schedules import format_duration, load_schedules, parse_duration, require_valid
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
                     "exactly one of cron, every or at"),
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


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD)
    second = write(tmp_path, "b.toml", '[[schedule]]\nid = "tick"\nrobot = "ticker"\nevery = "1h"\n')
    problems = problems_of(tmp_path)
    assert problems == [f"{second}: schedule 'tick': field 'id': duplicate id (first defined in "
                        f"{tmp_path / 'a.toml'})"]


def test_unreadable_toml_and_unknown_top_level_keys(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.toml", "[[schedule]\nid = 1")
    stray = write(tmp_path, "stray.toml", 'title = "x"\n')
    problems = problems_of(tmp_path)
    assert any(p.startswith(f"{broken}: schedule '-': field '-': cannot read the file") for p in problems)
    assert f"{stray}: schedule '-': field 'title': unknown key (expected [[schedule]])" in problems


def test_require_valid_lists_every_problem(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD.replace('robot = "ticker"', 'robot = "nosuch"'))
    with pytest.raises(ConfigError) as caught:
        require_valid(load_schedules(tmp_path, ROBOTS))
    assert caught.value.exit_code == 4
    assert "field 'robot'" in str(caught.value)


def test_a_missing_folder_has_no_schedules(tmp_path: Path) -> None:
    loaded = load_schedules(tmp_path / "none", ROBOTS)
    assert loaded.schedules == [] and loaded.problems == []


def test_the_demo_schedules_validate_from_the_repo_root() -> None:
    result = kansli("schedules", "validate", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "ok: " in result.stdout


def test_validate_cli_reports_lines_and_exits_4(tmp_path: Path) -> None:
    folder = tmp_path / "sched"
    write(folder, "a.toml", GOOD.replace('cron = "0 7 * * mon-fri"', 'cron = "bad"'))
    env = {"KANSLI_SCHEDULES_DIR": str(folder), "KANSLI_ROBOTS_PACKAGE": "tests.sample_robots"}
    result = kansli("schedules", "validate", env=env)
    assert result.returncode == 4
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "a.toml: schedule 'count-morning': field 'cron': invalid cron expression 'bad'" in lines[0]
