"""House rules checked by a test: robots are documented, tested and listed; commands have help."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from shared.cli import app
from shared.registry import discover
from tests.conftest import REPO, kansli


def test_every_robot_has_a_docstring_a_test_and_is_listed(kansli_env: Path) -> None:
    robots = discover()
    listed = {robot["name"] for robot in json.loads(kansli("robots", "--json", cwd=kansli_env).stdout)}
    assert robots, "no robots discovered"
    for name, spec in robots.items():
        assert spec.summary, f"robot {name} has no docstring"
        module_file = spec.module.rsplit(".", 1)[-1]
        assert (REPO / "tests" / "robots" / f"test_{module_file}.py").is_file(), f"robot {name} has no test"
        assert name in listed, f"robot {name} is missing from `kansli robots`"


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        found.append((prefix + name, command))
        if hasattr(command, "commands"):
            found.extend(_commands(command, prefix + name + " "))
    return found


def test_every_cli_command_has_help() -> None:
    root = typer.main.get_command(app)
    commands = _commands(root)
    assert len(commands) >= 7
    for name, command in commands:
        assert (command.help or "").strip(), f"`kansli {name}` has no help text"
        for parameter in command.params:
            if parameter.param_type_name == "option" and not getattr(parameter, "hidden", False):
                assert parameter.help, f"`kansli {name}` option {parameter.name} has no help"


def test_tests_mirror_the_framework() -> None:
    """Every public module of shared/ has its own test module in tests/shared/, and every public module
    of a package there (shared/audit/verify.py) one in the package's mirror (tests/shared/audit/)."""
    shared = REPO / "shared"
    modules = [path for path in shared.rglob("*.py") if not path.stem.startswith("_")
               and not any(part.startswith("_") for part in path.relative_to(shared).parent.parts)]
    missing = [str(path.relative_to(REPO)) for path in sorted(modules)
               if not (REPO / "tests" / path.parent.relative_to(REPO) / f"test_{path.stem}.py").is_file()]
    assert not missing, f"no tests/shared/.../test_<module>.py for: {', '.join(missing)}"
    packages = [path.parent for path in shared.rglob("__init__.py") if path.parent != shared]
    unmirrored = [str(package.relative_to(REPO)) for package in packages
                  if not (REPO / "tests" / package.relative_to(REPO) / "__init__.py").is_file()]
    assert not unmirrored, f"no tests/ package mirroring: {', '.join(unmirrored)}"


def test_the_license_is_an_spdx_expression_the_build_backend_supports() -> None:
    """A TOML table for ``project.license`` is deprecated (setuptools warns on every install); an SPDX
    string needs setuptools >= 77."""
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "MIT"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
