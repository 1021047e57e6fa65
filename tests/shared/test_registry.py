from __future__ import annotations

import sys
from pathlib import Path

import pytest

from robots.decision_letters import decision_letters
from shared.errors import ConfigError, ParameterError, UnknownRobotError
from shared.registry import discover, get_robot, robot, spec_of


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
