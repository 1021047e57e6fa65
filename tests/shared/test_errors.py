"""The exception tree drawn in shared.errors' docstring is the one the code defines.

The CLI end to end is covered elsewhere: a bad setting exits 4 (test_settings.py
``test_cli_bad_env_value_is_one_line_and_exit_4``, test_cli.py ``doctor``) and an unknown robot
exits 2 (test_cli.py ``test_usage_errors_are_one_line_and_exit_2``).
"""

from __future__ import annotations

import pickle
import re

import pytest

import shared.cli
import shared.errors as errors
from shared.errors import KansliError, is_retryable

# "    │   ├── UnknownRobotError        2    no robot by that name"
DRAWN = re.compile(r"^(?P<lead>[ │├└─]*)(?P<name>[A-Z]\w+Error)\s+(?P<code>\d+)\s+(?P<says>.+)$")


def drawn_tree() -> dict[str, tuple[str | None, int, str]]:
    """Each drawn class: (its parent in the drawing, its exit code, what the drawing says of it)."""
    tree: dict[str, tuple[str | None, int, str]] = {}
    stack: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        match = DRAWN.match(line)
        if not match:
            continue
        depth = (len(match["lead"]) - 4) // 4  # four spaces of literal block, four per level
        del stack[depth:]
        tree[match["name"]] = (stack[-1] if stack else None, int(match["code"]), match["says"])
        stack.append(match["name"])
    return tree


def defined_classes() -> dict[str, type[KansliError]]:
    return {name: value for name, value in vars(errors).items()
            if isinstance(value, type) and issubclass(value, KansliError)}


TREE = drawn_tree()
RETRIED = {"TargetError", "TargetUnavailableError", "SessionExpiredError", "UncertainSubmitError"}


def test_the_drawing_names_exactly_the_defined_classes() -> None:
    assert len(TREE) == 18, "the docstring drawing no longer parses"
    assert sorted(TREE) == sorted(defined_classes())


@pytest.mark.parametrize("name", sorted(TREE))
def test_each_class_has_the_drawn_parent_and_exit_code(name: str) -> None:
    parent, code, _ = TREE[name]
    cls = defined_classes()[name]
    expected_base = KansliError.__base__ if parent is None else defined_classes()[parent]
    assert cls.__bases__ == (expected_base,)
    assert cls.exit_code == code


def test_the_families_the_cli_tells_apart_have_distinct_codes() -> None:
    families = [name for name, (parent, _, _) in TREE.items() if parent == "KansliError"]
    special = {TREE[name][1]: name for name in families if TREE[name][1] != 1}
    assert special == {2: "UsageError", 4: "ConfigError", 5: "AlreadyRunningError",
                       130: "RunCancelledError"}
    for name, (parent, code, _) in TREE.items():  # a subclass never changes its family's code
        if parent is None:
            continue
        family = next(f for f in families if issubclass(defined_classes()[name], defined_classes()[f]))
        assert code == TREE[family][1], name


def test_every_exit_code_is_one_the_cli_documents_and_none_claims_success_or_partial() -> None:
    documented = re.search(r"Exit codes:(.*?)\.\n", shared.cli.__doc__ or "", re.S)
    assert documented is not None
    listed = {int(code) for code in re.findall(r"(\d+) [a-z]", documented.group(1))}
    codes = {cls.exit_code for cls in defined_classes().values()}
    assert codes <= listed
    assert not codes & {0, 3}


@pytest.mark.parametrize("name", sorted(TREE))
def test_is_retryable_exactly_for_the_retried_kinds(name: str) -> None:
    error = defined_classes()[name]("målsystemet svarade 503")
    assert is_retryable(error) is (name in RETRIED)
    says = TREE[name][2]
    if "never retried" in says:
        assert not is_retryable(error)
    elif "retried" in says:
        assert is_retryable(error)


@pytest.mark.parametrize("error", [TimeoutError("timeout"), OSError("reset"), ValueError("x"),
                                   KeyboardInterrupt()])
def test_errors_outside_the_tree_are_not_retried(error: BaseException) -> None:
    assert not is_retryable(error)


@pytest.mark.parametrize("name", sorted(TREE))
def test_errors_keep_their_message_and_survive_pickling(name: str) -> None:
    error = defined_classes()[name]("rad 7: fältet 'belopp' saknas")
    assert str(error) == error.message == "rad 7: fältet 'belopp' saknas"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error) and copy.exit_code == error.exit_code


def test_a_form_mismatch_keeps_what_did_not_fit_through_pickling() -> None:
    error = errors.FormMismatchError("no field 'Nman'", label="Nman", path="/ansokan/steg1",
                                     closest=("Namn",))
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.label, copy.path, copy.closest) == ("Nman", "/ansokan/steg1", ("Namn",))
    assert not is_retryable(copy) and not isinstance(copy, errors.InputError | errors.TargetError)
    assert errors.UncertainSubmitError("x").needs_reconcile and is_retryable(errors.UncertainSubmitError("x"))


def test_an_uncertain_submit_is_retried_only_where_reconcile_can_look_first() -> None:
    uncertain = errors.UncertainSubmitError("no answer to the submit")
    assert is_retryable(uncertain) and not is_retryable(uncertain, can_reconcile=False)
    assert is_retryable(errors.TargetUnavailableError("503"), can_reconcile=False)
