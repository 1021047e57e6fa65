"""Declaring and discovering robots.

A robot is a typed function decorated with :func:`robot`. Its first parameter receives the run
(:class:`shared.runner.Run`); the others are the robot's parameters, validated by a pydantic model
built from the signature before the run starts. The decorator only attaches metadata and returns the
function unchanged, so a robot can be called directly in a test.

Discovery imports every module of the ``robots`` package whose name does not start with ``_``; two
robots with one name are an error.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from shared.errors import ConfigError, KansliError, ParameterError, UnknownRobotError

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__kansli_robot__"


class RobotParams(BaseModel):
    """Base of every robot's parameter model: unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


@dataclass(frozen=True)
class RobotSpec:
    """What Kansli knows of one robot."""

    name: str
    summary: str
    description: str
    function: Callable[..., Any]
    params_model: type[RobotParams]
    module: str
    #: Its items change other systems (a case submitted, a mail sent): ``--rerun-all`` without a
    #: reconcile step then needs the operator's ``--yes``.
    side_effects: bool = False
    #: What a host needs to run it (``chromium``, a network zone, ...): a worker serves it only if it
    #: declares every one of these (``kansli worker --tags``).
    tags: tuple[str, ...] = ()
    #: Its runs may overlap (a consumer of a queue: each item still goes to one run only); other
    #: robots' runs never overlap, on any host.
    parallel: bool = False

    def parameters(self) -> list[dict[str, Any]]:
        """Name, type, default and whether required, for each parameter (for display)."""
        described = []
        for name, info in self.params_model.model_fields.items():
            annotation = info.annotation
            type_name = getattr(annotation, "__name__", None) or str(annotation)
            described.append(
                {
                    "name": name,
                    "type": type_name.replace("typing.", ""),
                    "required": info.is_required(),
                    "default": None if info.is_required() else _display(info.default),
                    "help": info.description or "",
                }
            )
        return described

    def validate(self, params: Mapping[str, Any]) -> RobotParams:
        """The parameters as the robot's model, or :class:`ParameterError` naming the bad one."""
        try:
            return self.params_model.model_validate(dict(params))
        except ValidationError as error:
            raise ParameterError(_describe(self.name, error)) from None


def _display(value: Any) -> Any:
    return str(value) if value is not None and not isinstance(value, int | float | bool) else value


def _describe(robot_name: str, error: ValidationError) -> str:
    first = error.errors()[0]
    name = ".".join(str(part) for part in first["loc"]) or "parameters"
    kind = first["type"]
    if kind == "missing":
        return f"robot {robot_name}: missing required parameter '{name}'"
    if kind == "extra_forbidden":
        return f"robot {robot_name}: unknown parameter '{name}'"
    return f"robot {robot_name}: parameter '{name}': {first['msg']}"


def robot(
    name: str | None = None, *, side_effects: bool = False, tags: Sequence[str] = (),
    parallel: bool = False,
) -> Callable[[F], F]:
    """Declare a robot. The summary is the first line of the function's docstring.

    ``side_effects``: its items change other systems (see :attr:`RobotSpec.side_effects`);
    ``tags``: what a host needs to run it (:attr:`RobotSpec.tags`); ``parallel``: its runs may
    overlap (:attr:`RobotSpec.parallel`).
    """

    def decorate(function: F) -> F:
        spec = _spec_for(function, name or function.__name__, side_effects)
        spec = dataclasses.replace(spec, tags=tuple(sorted(set(tags))), parallel=parallel)
        setattr(function, _ATTRIBUTE, spec)
        return function

    return decorate


def _spec_for(function: Callable[..., Any], name: str, side_effects: bool = False) -> RobotSpec:
    doc = inspect.getdoc(function) or ""
    summary, _, description = doc.partition("\n")
    return RobotSpec(
        name=name,
        summary=summary.strip(),
        description=description.strip(),
        function=function,
        params_model=_params_model(function, name),
        module=function.__module__,
        side_effects=side_effects,
    )


def _params_model(function: Callable[..., Any], name: str) -> type[RobotParams]:
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())[1:]  # the first one receives the run
    hints = _parameter_hints(function, {parameter.name for parameter in parameters})
    fields: dict[str, Any] = {}
    for parameter in parameters:
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    model_name = "".join(part.title() for part in name.split("_")) + "Params"
    return create_model(model_name, __base__=RobotParams, **fields)


def _parameter_hints(function: Callable[..., Any], names: set[str]) -> dict[str, Any]:
    """The evaluated annotations of the parameters ``names`` only: the run's annotation is not
    evaluated, so a robot may import ``Run`` under ``TYPE_CHECKING`` (listing robots then does not
    import the runner and the database layer)."""
    annotations = getattr(function, "__annotations__", {})
    only = SimpleNamespace(__annotations__={k: v for k, v in annotations.items() if k in names})
    return typing.get_type_hints(only, globalns=getattr(inspect.unwrap(function), "__globals__", None))


def spec_of(function: Callable[..., Any]) -> RobotSpec:
    """The spec attached by :func:`robot` (``ConfigError`` if the function is not a robot)."""
    spec = getattr(function, _ATTRIBUTE, None)
    if not isinstance(spec, RobotSpec):
        raise ConfigError(f"{getattr(function, '__name__', function)!r} is not a robot")
    return spec


def discover(package: str = "robots") -> dict[str, RobotSpec]:
    """Import every public module of ``package`` and collect its robots by name.

    A package or robot module that cannot be imported is a :class:`ConfigError` naming it (exit 4).
    """
    root = _import(package, package)
    if not hasattr(root, "__path__"):
        raise ConfigError(f"the robots package {package!r} (KANSLI_ROBOTS_PACKAGE) is a module, "
                          "not a package of robot modules")
    found: dict[str, RobotSpec] = {}
    for module_info in pkgutil.iter_modules(root.__path__):
        if module_info.name.startswith("_"):
            continue
        module = _import(f"{package}.{module_info.name}", package)
        for value in vars(module).values():
            spec = getattr(value, _ATTRIBUTE, None)
            if not isinstance(spec, RobotSpec) or spec.module != module.__name__:
                continue
            if spec.name in found:
                raise ConfigError(
                    f"two robots named {spec.name!r}: in {found[spec.name].module} "
                    f"and {spec.module}"
                )
            found[spec.name] = spec
    return dict(sorted(found.items()))


def _import(module_name: str, package: str) -> ModuleType:
    """Import a module of the robots package; any failure is one :class:`ConfigError` line."""
    try:
        return importlib.import_module(module_name)
    except KansliError:
        raise
    except SyntaxError as error:
        where = f"{error.filename}, line {error.lineno}" if error.filename else module_name
        raise ConfigError(f"cannot import robot module {module_name} ({where}): "
                          f"{error.msg}") from None
    except Exception as error:  # noqa: BLE001 - a robot module's import may raise anything
        what = (f"the robots package {package!r} (KANSLI_ROBOTS_PACKAGE)" if module_name == package
                else f"robot module {module_name}")
        raise ConfigError(f"cannot import {what}: {type(error).__name__}: {error}") from None


def get_robot(name: str, package: str = "robots") -> RobotSpec:
    """One robot by name, or :class:`UnknownRobotError` listing the known ones."""
    robots = discover(package)
    if name not in robots:
        known = ", ".join(robots) or "none"
        raise UnknownRobotError(f"unknown robot {name!r} (known robots: {known})")
    return robots[name]
