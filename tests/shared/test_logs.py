"""The log sinks: a run's ``log.jsonl`` and ``log.txt``, the console, and redaction in every one."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from shared.clock import zone
from shared.logs import configure_console, run_sinks
from shared.redaction import SECRET_MASK, register_secret
from shared.settings import load_settings, reset_settings

SECRET = "kanariefågel-loggen-3391"
PNR_MASK = "******-****"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]{12} \S+ \| (\w+) +\| (\S+) \| (\S+) \| (\S+) \| (.*)$")
needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="simulates a full disk")


def with_check_digit(nine: str) -> str:  # computed here, not by the code under test
    total = sum(sum(divmod(int(d) * (2 - i % 2), 10)) for i, d in enumerate(nine))
    return nine + str(-total % 10)


DIGITS = with_check_digit("900307123")
PNR = f"19{DIGITS[:6]}-{DIGITS[6:]}"  # 19900307-1231


@pytest.fixture
def console(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """The CLI's console: stderr looked up at each write (pytest swaps it between setup and call)."""
    configure_console("DEBUG", write=lambda text: sys.stderr.write(text))
    yield capsys
    logger.remove()  # configure_console removed every other handler; leave none of ours behind


def read(run_dir: Path) -> tuple[str, str]:
    return tuple((run_dir / name).read_text(encoding="utf-8") for name in ("log.jsonl", "log.txt"))


def test_secrets_and_personnummer_are_masked_in_every_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KANSLI_ESERVICE__PASSWORD", SECRET)
    load_settings()  # registers the SecretStr values with the redaction
    with run_sinks(tmp_path, "R-1"), logger.contextualize(run_id="R-1", robot="intake", item=PNR):
        logger.bind(password=SECRET, applicant=PNR).warning("login {} for {}", SECRET, PNR)
    jsonl, text = read(tmp_path)
    err = console.readouterr().err
    for name, output in (("log.jsonl", jsonl), ("log.txt", text), ("console", err)):
        for needle in (SECRET, PNR, PNR[2:], DIGITS):
            assert needle not in output, f"{needle} readable in {name}"
        assert f"login {SECRET_MASK} for {PNR_MASK}" in output, name
    extra = json.loads(jsonl)["record"]["extra"]
    assert extra["password"] == SECRET_MASK and extra["applicant"] == extra["item"] == PNR_MASK
    assert f"| {PNR_MASK} | login" in text


def test_jsonl_and_text_lines_carry_the_promised_fields(tmp_path: Path) -> None:
    with run_sinks(tmp_path, "R-2"), logger.contextualize(run_id="R-2", robot="letters"):
        logger.debug("first")
        with logger.contextualize(item="row-7"):
            logger.error("second {}", 2)
    jsonl, text = read(tmp_path)
    records = [json.loads(line)["record"] for line in jsonl.splitlines()]
    assert [(r["level"]["name"], r["message"]) for r in records] == [("DEBUG", "first"),
                                                                     ("ERROR", "second 2")]
    assert [r["extra"] for r in records] == [{"run_id": "R-2", "robot": "letters", "item": "-"},
                                             {"run_id": "R-2", "robot": "letters", "item": "row-7"}]
    assert all(isinstance(r["time"]["timestamp"], float) and r["time"]["repr"] for r in records)
    assert [m.groups() if (m := TEXT_LINE.match(line)) else line for line in text.splitlines()] == [
        ("DEBUG", "letters", "R-2", "-", "first"), ("ERROR", "letters", "R-2", "row-7", "second 2")]


def at(moment: datetime) -> Any:
    """A loguru patch setting a record's time to ``moment`` (kept in the process's local zone)."""
    def patch(record: Any) -> None:
        record["time"] = moment.astimezone(record["time"].tzinfo)
    return patch


WINTER = datetime(2026, 1, 15, 12, 0, 0, 250_000, tzinfo=UTC)
SUMMER = datetime(2026, 7, 15, 23, 30, 5, tzinfo=UTC)


@pytest.mark.parametrize(("zone_name", "winter", "summer"), [
    ("Europe/Stockholm", "2026-01-15 13:00:00.250 CET", "2026-07-16 01:30:05.000 CEST"),
    ("America/New_York", "2026-01-15 07:00:00.250 EST", "2026-07-15 19:30:05.000 EDT"),
    ("UTC", "2026-01-15 12:00:00.250 UTC", "2026-07-15 23:30:05.000 UTC"),
])
def test_text_lines_show_local_time_with_the_zone(tmp_path: Path, zone_name: str, winter: str,
                                                  summer: str) -> None:
    with run_sinks(tmp_path, "R-9", zone_name=zone_name), logger.contextualize(run_id="R-9", robot="r"):
        logger.patch(at(WINTER)).info("in winter")
        logger.patch(at(SUMMER)).info("in summer")
    jsonl, text = read(tmp_path)
    assert [line.split(" | ")[0] for line in text.splitlines()] == [winter, summer]
    stamps = [json.loads(line)["record"]["time"]["timestamp"] for line in jsonl.splitlines()]
    assert stamps == [WINTER.timestamp(), SUMMER.timestamp()]  # the JSON keeps the instant


def test_text_lines_default_to_the_settings_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANSLI_TIMEZONE", "Asia/Tokyo")
    reset_settings()
    zone.cache_clear()
    try:
        with run_sinks(tmp_path, "R-10"), logger.contextualize(run_id="R-10"):
            logger.patch(at(WINTER)).warning("in Tokyo")
    finally:
        reset_settings()
        zone.cache_clear()
    assert read(tmp_path)[1].startswith("2026-01-15 21:00:00.250 JST | WARNING  | - | R-10 | - | in Tokyo")


def test_a_runs_files_get_only_that_runs_records(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    with run_sinks(one, "R-one"), run_sinks(two, "R-two"):
        logger.bind(run_id="R-one").info("for one")
        logger.bind(run_id="R-two").info("for two")
        logger.info("for nobody")  # run_id "-": outside any run
    assert ["for one"] == [json.loads(line)["record"]["message"] for line in read(one)[0].splitlines()]
    assert "for two" in read(two)[1] and "for one" not in read(two)[1] and "nobody" not in read(two)[1]


def test_console_false_records_reach_the_files_but_not_the_console(
    tmp_path: Path, console: pytest.CaptureFixture[str]
) -> None:
    with run_sinks(tmp_path, "R-3"), logger.contextualize(run_id="R-3", robot="r"):
        logger.bind(console=False).error("run failed: files only")
        logger.info("for everyone")
    err = console.readouterr().err
    assert "for everyone" in err and "files only" not in err
    assert all("run failed: files only" in output for output in read(tmp_path))


def test_configure_console_replaces_the_console_sink_and_honours_the_level(
    console: pytest.CaptureFixture[str],
) -> None:
    first: list[str] = []
    second: list[str] = []
    configure_console("INFO", write=first.append)
    configure_console("WARNING", write=second.append)
    logger.info("too chatty")
    logger.warning("worth saying")
    assert first == [] and console.readouterr().err == "" and len(second) == 1 and "worth" in second[0]


def test_nothing_reaches_the_files_after_the_run_sinks_close(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with run_sinks(tmp_path, "R-4"), logger.contextualize(run_id="R-4"):
            logger.info("inside")
            raise RuntimeError("robot crashed")
    before = read(tmp_path)
    with logger.contextualize(run_id="R-4"):
        logger.error("after the run")
    assert read(tmp_path) == before and "inside" in before[0]
    with run_sinks(tmp_path, "R-4"), logger.contextualize(run_id="R-4"):  # reopening appends
        logger.info("again")
    assert read(tmp_path)[1].count("\n") == 2 and "after the run" not in read(tmp_path)[1]


def test_a_secret_with_quote_or_backslash_is_masked_in_the_jsonl(tmp_path: Path) -> None:
    secret = 'Vinter"2026\\kansli'
    register_secret(secret)
    with run_sinks(tmp_path, "R-5"), logger.contextualize(run_id="R-5"):
        logger.bind(password=secret).info("login with {}", secret)
    jsonl, text = read(tmp_path)
    assert secret not in text and secret not in json.loads(jsonl)["record"]["message"]


def test_every_jsonl_line_is_json_whatever_the_time(tmp_path: Path) -> None:
    epoch = int(with_check_digit("180115123"))  # YYMMDD 180115, Luhn-valid: about 6 % of 2027's seconds

    def at_that_second(record: Any) -> None:
        record["time"] = record["time"].fromtimestamp(epoch + 0.25, record["time"].tzinfo)

    with run_sinks(tmp_path, "R-6"), logger.contextualize(run_id="R-6"):
        logger.patch(at_that_second).info("a line like any other")
    record = json.loads(read(tmp_path)[0])["record"]
    assert record["time"]["timestamp"] == epoch + 0.25


@needs_dev_full
def test_a_failing_log_file_does_not_spill_the_clear_record_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_secret(SECRET)
    (tmp_path / "log.txt").symlink_to("/dev/full")  # every write: ENOSPC
    with run_sinks(tmp_path, "R-7"), logger.contextualize(run_id="R-7"):
        logger.warning("login {} for {}", SECRET, PNR)
        logger.warning("and once more")
    err = capsys.readouterr().err
    assert SECRET not in err and PNR not in err
    assert err.count("cannot write") == 1  # said once, masked, without the record


@needs_dev_full
def test_a_full_disk_neither_breaks_the_sinks_teardown_nor_leaks_the_other_file(tmp_path: Path) -> None:
    (tmp_path / "log.jsonl").symlink_to("/dev/full")
    with run_sinks(tmp_path, "R-8"), logger.contextualize(run_id="R-8"):
        logger.info("the disk is full")
    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert str(tmp_path / "log.txt") not in open_files
