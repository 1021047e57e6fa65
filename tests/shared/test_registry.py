from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robots.decision_letters import decision_letters
from shared.errors import ConfigError, ParameterError, UnknownRobotError
from shared.registry import discover, get_robot, robot, spec_of
from tests.conftest import REPO


def test_decorator_returns_the_function_unchanged() -> None:
    def plain(run: object, count: int = 1) -> int:
        """Do a thing."""
        return count

    decorated = robot(name="plain")(plain)
    assert decorated is plain
    assert decorated(None, count=3) == 3
    assert spec_of(decorated).summary == "Do a thing."


def test_discovery_finds_the_shipped_robots() -> None:
    robots = discover()
    assert "decision_letters" in robots
    assert robots["decision_letters"].function is decision_letters


def test_parameters_are_validated_before_the_run() -> None:
    spec = get_robot("counting", "tests.sample_robots")
    assert spec.validate({"count": "3"}).count == 3  # type: ignore[attr-defined]
    with pytest.raises(ParameterError, match="parameter 'count'"):
        spec.validate({"count": "tre"})
    with pytest.raises(ParameterError, match="unknown parameter 'colour'"):
        spec.validate({"colour": "blå"})
    with pytest.raises(ParameterError, match="missing required parameter 'input'"):
        get_robot("decision_letters").validate({})


def test_unknown_robot_lists_the_known_ones() -> None:
    with pytest.raises(UnknownRobotError, match="decision_letters"):
        get_robot("no_such_robot")


def test_duplicate_robot_names_are_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "dup_robots"
    package.mkdir()
    (package / "__init__.py").write_text("")
    body = "from shared.registry import robot\n\n@robot(name='same')\ndef {0}(run):\n    '''R.'''\n"
    (package / "one.py").write_text(body.format("first"))
    (package / "two.py").write_text(body.format("second"))
    (package / "_private.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ConfigError, match="two robots named 'same'"):
            discover("dup_robots")
    finally:
        for name in [name for name in sys.modules if name.startswith("dup_robots")]:
            del sys.modules[name]


#: What robots use only when they run: the Word, Excel and browser libraries (shared.documents and
#: shared.excel import them when a template or a workbook is read), the database, mail, PDF, SFTP.
HEAVY_LIBRARIES = (
    "playwright.async_api", "sqlalchemy", "apscheduler", "asyncssh", "pdfplumber", "imap_tools",
    "docxtpl", "docx", "openpyxl", "python_calamine", "jinja2", "lxml",
)


def test_discovery_does_not_import_the_robots_heavy_libraries() -> None:
    """Listing robots must stay fast: robots import playwright, docxtpl, openpyxl (and the runner its
    database layer) when they run, not when they are listed."""
    script = (
        "import json, sys\n"
        "from shared.registry import discover\n"
        "robots = discover('robots')\n"
        f"print(json.dumps([sorted(robots), [m for m in {HEAVY_LIBRARIES!r} if m in sys.modules]]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                            timeout=120, check=True)
    robots, imported = json.loads(result.stdout)
    assert {"decision_letters", "intake_forms"} <= set(robots)
    assert imported == []


def _package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, str]) -> None:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for file_name, text in files.items():
        (package / file_name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_robots_package_that_cannot_be_imported_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot import the robots package 'no_such_robots' "
                       r"\(KANSLI_ROBOTS_PACKAGE\): ModuleNotFoundError"):
        discover("no_such_robots")
    with pytest.raises(ConfigError, match="is a module, not a package"):
        discover("shared.errors")


def test_a_robot_module_that_cannot_be_imported_is_a_config_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(tmp_path, monkeypatch, "broken_robots", {
        "syntax.py": "def robot(:\n",
    })
    _package(tmp_path, monkeypatch, "missing_robots", {"needs.py": "import no_such_library\n"})
    try:
        with pytest.raises(ConfigError, match=r"robot module broken_robots.syntax \(.*syntax.py, line 1\)"):
            discover("broken_robots")
        with pytest.raises(ConfigError, match="robot module missing_robots.needs: ModuleNotFoundError: "
                           "No module named 'no_such_library'"):
            discover("missing_robots")
    finally:
        for name in [name for name in sys.modules if name.endswith("_robots") or "_robots." in name]:
            if name.startswith(("broken_robots", "missing_robots")):
                del sys.modules[name]


def test_the_run_annotation_is_not_evaluated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A robot may import Run under TYPE_CHECKING; its other annotations are still checked."""
    _package(tmp_path, monkeypatch, "lazy_robots", {"lazy.py": (
        "from __future__ import annotations\n"
        "from pathlib import Path\n"
        "from typing import TYPE_CHECKING\n"
        "from shared.registry import robot\n"
        "if TYPE_CHECKING:\n"
        "    from shared.runner import Run\n\n"
        "@robot()\n"
        "def lazy(run: Run, input: Path, count: int = 2) -> None:\n"
        "    '''Lazy.'''\n"
    )})
    try:
        spec = discover("lazy_robots")["lazy"]
        params = spec.validate({"input": "a.xlsx", "count": "3"})
        assert params.input == Path("a.xlsx") and params.count == 3  # type: ignore[attr-defined]
        with pytest.raises(ParameterError, match="parameter 'count'"):
            spec.validate({"input": "a.xlsx", "count": "tre"})
    finally:
        for name in [name for name in sys.modules if name.startswith("lazy_robots")]:
            del sys.modules[name]
