"""The pytest plugin for robot repos: its fixtures isolate a test, and a robot repo gets them by
installing kansli (the ``pytest11`` entry point), with no conftest of ours."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from shared.settings import load_settings
from shared.testing import import_path, isolate
from tests.conftest import REPO

ROBOT = '''
"""Count the lines of a text file."""

from __future__ import annotations

from pathlib import Path

from shared.items import WorkItem
from shared.registry import robot
from shared.runner import Run


@robot()
def line_count(run: Run, input: Path) -> None:
    """Count the lines of a text file, one item per line keyed by its text."""
    lines = input.read_text(encoding="utf-8").splitlines()

    def count(item: WorkItem) -> int:
        return len(item.data)

    run.process([WorkItem(key=line, data=line, position=number)
                 for number, line in enumerate(lines, start=1)], count, total=len(lines))
'''

ROBOT_TEST = '''
import json
from pathlib import Path

import pytest

from shared.runner import Runner
from shared.testing import kansli


@pytest.fixture(autouse=True)
def isolated(kansli_env: Path) -> Path:
    return kansli_env


def test_in_process(kansli_env: Path, settings) -> None:
    assert settings.data_dir == kansli_env / "data"
    assert settings.robots_package == "exempelby_robots"
    (kansli_env / "lines.txt").write_text("ett\\ntvå\\n", encoding="utf-8")
    record = Runner().run("line_count", {"input": "lines.txt"})
    assert (record.status, record.items_done) == ("succeeded", 2)


def test_through_the_cli(kansli_env: Path) -> None:
    (kansli_env / "lines.txt").write_text("ett\\nett\\n", encoding="utf-8")
    result = kansli("run", "line_count", "-p", "input=lines.txt", "--json", cwd=kansli_env)
    assert result.returncode == 3, result.stderr  # the second "ett" is a key twice: partial
    assert json.loads(result.stdout)["run"]["items_business_error"] == 1
'''


def test_the_plugin_is_registered_for_pytest() -> None:
    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert plugins.get("kansli") == "shared.testing"


def test_a_robot_repo_gets_the_fixtures_by_installing_kansli(tmp_path: Path) -> None:
    repo = tmp_path / "exempelby"
    (repo / "exempelby_robots").mkdir(parents=True)
    (repo / "exempelby_robots" / "__init__.py").write_text("", encoding="utf-8")
    (repo / "exempelby_robots" / "line_count.py").write_text(ROBOT, encoding="utf-8")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_line_count.py").write_text(ROBOT_TEST, encoding="utf-8")
    (repo / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.pytest.ini_options]
        pythonpath = ["."]
        kansli_robots_package = "exempelby_robots"
    '''), encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_isolate_drops_stray_settings_and_keeps_the_test_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANSLI_LANGUAGE", "en")
    monkeypatch.setenv("KANSLI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    work = isolate(tmp_path / "elsewhere", monkeypatch, robots_package="exempelby_robots")
    settings = load_settings()
    assert Path.cwd() == work and settings.data_dir == work / "data" and settings.log_dir == work / "log"
    assert settings.language == "sv" and settings.robots_package == "exempelby_robots"
    assert os.environ["KANSLI_TEST_POSTGRES_URL"].endswith("/test")


def test_the_cli_subprocess_imports_what_the_tests_import() -> None:
    folders = import_path().split(os.pathsep)
    assert str(REPO) in folders
    assert not any(Path(folder).resolve().is_relative_to(Path(sys.prefix).resolve()) for folder in folders)
