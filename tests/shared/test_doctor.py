"""`kansli doctor`: every check passes in a fresh environment and fails with a fix when its part breaks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from shared.doctor import check_chromium, check_database, check_directory, check_robots, run_checks
from shared.settings import load_settings
from tests.conftest import kansli

CHECK_NAMES = ["settings", "data dir", "log dir", "database", "robots", "chromium"]
VERSION = r"Chromium \d+\.\d+\.\d+\.\d+"
UNREACHABLE_PASSWORD = "doktor-hemlis-5521"
UNREACHABLE_URL = f"postgresql+psycopg://nobody:{UNREACHABLE_PASSWORD}@127.0.0.1:1/x"


def executable_script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_every_check_passes_in_a_fresh_environment(kansli_env: Path) -> None:
    checks = run_checks()
    assert [check.name for check in checks] == CHECK_NAMES
    failed = [check for check in checks if not check.ok]
    assert failed == []
    by_name = {check.name: check for check in checks}
    assert by_name["data dir"].detail == str((kansli_env / "data").resolve())
    assert by_name["log dir"].detail == str((kansli_env / "log").resolve())
    assert (kansli_env / "data").is_dir() and (kansli_env / "log").is_dir()
    database = (kansli_env / "data" / "kansli.db").resolve()
    assert by_name["database"].detail == f"sqlite:///{database}"
    assert database.is_file()
    match = re.fullmatch(rf"{VERSION}.* at (/\S+)", by_name["chromium"].detail)
    assert match, by_name["chromium"].detail
    assert "chrom" in Path(match.group(1)).name and os.access(match.group(1), os.X_OK)


@pytest.mark.parametrize("executable", ["/usr/bin/chromium", "/usr/bin/chromium-headless-shell"])
def test_the_chromium_check_names_the_configured_executable_and_its_version(
    executable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANSLI_BROWSER__EXECUTABLE_PATH", executable)
    check = check_chromium(load_settings())
    assert check.ok, check.detail
    assert re.fullmatch(rf"{VERSION}.* at {re.escape(executable)}", check.detail), check.detail
    assert check.fix == ""


def test_the_chromium_check_fails_with_a_fix_when_the_executable_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "chromium"
    monkeypatch.setenv("KANSLI_BROWSER__EXECUTABLE_PATH", str(missing))
    check = check_chromium(load_settings())
    assert not check.ok
    assert check.detail == f"not found ({missing})"
    assert "apt-get install chromium" in check.fix and "KANSLI_BROWSER__EXECUTABLE_PATH" in check.fix


def test_the_chromium_check_fails_for_an_executable_that_is_not_a_working_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    impostor = executable_script(tmp_path / "chromium", "echo 'segmentation fault' >&2\nexit 1")
    monkeypatch.setenv("KANSLI_BROWSER__EXECUTABLE_PATH", str(impostor))
    check = check_chromium(load_settings())
    assert not check.ok
    assert check.detail.startswith(f"{impostor} does not start:")
    assert "exit status 1" in check.detail
    assert "KANSLI_BROWSER__EXECUTABLE_PATH" in check.fix


def test_the_chromium_check_fails_for_a_program_that_is_not_chromium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANSLI_BROWSER__EXECUTABLE_PATH", "/bin/true")
    check = check_chromium(load_settings())
    assert not check.ok and check.detail.startswith("/bin/true is not Chromium")


def test_the_chromium_check_fails_for_a_file_that_cannot_be_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_executable = tmp_path / "chromium"
    not_executable.write_text("just a text file\n", encoding="utf-8")
    monkeypatch.setenv("KANSLI_BROWSER__EXECUTABLE_PATH", str(not_executable))
    check = check_chromium(load_settings())
    assert not check.ok
    assert check.detail.startswith(f"{not_executable} does not start:")
    assert "Permission denied" in check.detail


def test_the_database_check_fails_clearly_for_an_unreachable_server_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KANSLI_DATABASE_URL", UNREACHABLE_URL)
    check = check_database(load_settings())
    assert not check.ok
    assert check.detail.startswith("cannot open the run history database postgresql+psycopg://nobody:***@")
    assert "127.0.0.1" in check.detail and "Connection refused" in check.detail
    assert UNREACHABLE_PASSWORD not in check.detail
    assert "KANSLI_DATABASE_URL" in check.fix


def test_doctor_cli_fails_for_an_unreachable_database_without_printing_its_password(
    kansli_env: Path,
) -> None:
    result = kansli("doctor", cwd=kansli_env, env={"KANSLI_DATABASE_URL": UNREACHABLE_URL})
    assert result.returncode == 4, result.stdout + result.stderr
    assert "FAIL database: cannot open the run history database" in result.stdout
    assert "fix: check KANSLI_DATABASE_URL and the server" in result.stdout
    assert "ok   chromium:" in result.stdout  # the checks after the failed one still run
    assert UNREACHABLE_PASSWORD not in result.stdout + result.stderr


def test_the_data_dir_check_fails_when_a_file_stands_in_its_place(tmp_path: Path) -> None:
    squatter = tmp_path / "data"
    squatter.write_text("not a folder\n", encoding="utf-8")
    check = check_directory("data dir", squatter, "KANSLI_DATA_DIR")
    assert not check.ok
    assert check.detail == f"{squatter} is not writable (File exists)"
    assert "KANSLI_DATA_DIR" in check.fix
    assert squatter.read_text(encoding="utf-8") == "not a folder\n"  # left as it was


def test_doctor_reports_a_file_in_place_of_the_data_dir_instead_of_crashing(kansli_env: Path) -> None:
    (kansli_env / "data").write_text("not a folder\n", encoding="utf-8")
    checks = {check.name: check for check in run_checks()}
    assert not checks["data dir"].ok and not checks["database"].ok
    assert "cannot create the database folder" in checks["database"].detail
    result = kansli("doctor", cwd=kansli_env)
    assert result.returncode == 4 and "Traceback" not in result.stderr


def test_doctor_cli_exits_0_when_every_check_passes(kansli_env: Path) -> None:
    result = kansli("doctor", cwd=kansli_env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"ok   {name}" for name in CHECK_NAMES]
    assert "FAIL" not in result.stdout and "fix:" not in result.stdout


def test_doctor_cli_exits_4_and_stops_at_an_invalid_setting(kansli_env: Path) -> None:
    result = kansli("doctor", cwd=kansli_env, env={"KANSLI_BROWSER__WORKERS": "99"})
    assert result.returncode == 4
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL settings: invalid setting KANSLI_BROWSER__WORKERS")
    assert lines[1].strip() == "fix: correct the variable in .env or the environment"
    assert len(lines) == 2  # the other checks need the settings, so they do not run


def test_the_robots_check_lists_the_robots_or_names_the_package_that_does_not_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check = check_robots(load_settings())
    assert check.ok and "in package robots: decision_letters, intake_forms" in check.detail
    monkeypatch.setenv("KANSLI_ROBOTS_PACKAGE", "nosuch")
    broken = check_robots(load_settings())
    assert not broken.ok and "cannot import the robots package 'nosuch'" in broken.detail
    assert "KANSLI_ROBOTS_PACKAGE" in broken.fix
