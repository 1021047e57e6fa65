"""Validating a row as its model, and the problems of a bad row: one English line for logs and the
CLI (:func:`describe_validation`), structured (:func:`cell_problems`), and worded in the staff
language (:func:`word_problems`), naming the column and quoting the value, masked when it is
personal data; and the Swedish field types :data:`Personnummer` and :data:`Postnummer`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from datetime import time as clock_time
from functools import lru_cache
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from shared.excel.rows import CellProblem, M, Row
from shared.redaction import mask_quoted_value, redact
from shared.wording import VALIDATION_ALIASES, Wording


def _validated(number: int, values: dict[str, Any], model: type[M]) -> Row[M]:
    cleaned = {key: _clean(value) for key, value in values.items() if key}
    try:
        return Row(number, values, model=model.model_validate(cleaned))
    except ValidationError as error:
        return Row(number, values, error=f"row {number}: {describe_validation(error)}",
                   problems=cell_problems(error, model))


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def describe_validation(error: ValidationError) -> str:
    """``column 'X': message`` for the first problem (never the offending value itself)."""
    first = error.errors()[0]
    column = ".".join(str(part) for part in first["loc"])
    empty = first["type"] == "missing" or first.get("input", "") is None
    message = "required value is empty" if empty else first["msg"]
    message = message.removeprefix("Value error, ")
    more = error.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"column {column!r}: {message}{suffix}"


PERSONAL_COLUMN = re.compile(r"person(?:nummer|nr)|samordningsnummer|personal.?(?:id|number)", re.IGNORECASE)


def cell_problems(error: ValidationError, model: type[BaseModel]) -> list[CellProblem]:
    """Every problem of ``error``, structured (columns by header, values as read)."""
    personal = personal_columns(model)
    problems = []
    for detail in error.errors(include_url=False):
        column = ".".join(str(part) for part in detail["loc"])
        value = detail.get("input") if column else None
        context = {key: item for key, item in (detail.get("ctx") or {}).items() if key != "error"}
        problems.append(CellProblem(column, detail["type"], detail["msg"].removeprefix("Value error, "),
                                    value, context, column in personal))
    return problems


@lru_cache(maxsize=64)
def personal_columns(model: type[BaseModel]) -> frozenset[str]:
    """The headers of ``model`` holding personal identity numbers (by type or by name)."""
    found = set()
    for name, info in model.model_fields.items():
        header = info.alias or name
        typed = any(_is_personnummer_check(item) for item in info.metadata)
        if typed or _holds_personnummer(info.annotation) or PERSONAL_COLUMN.search(f"{header} {name}"):
            found.add(header)
    return frozenset(found)


def _is_personnummer_check(metadata: Any) -> bool:
    return getattr(metadata, "func", None) is _check_personnummer


def _holds_personnummer(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated and any(map(_is_personnummer_check, annotation.__metadata__)):
        return True
    return any(_holds_personnummer(argument) for argument in get_args(annotation))


MAX_PROBLEMS_WORDED = 5
MAX_QUOTED_LENGTH = 40


def word_problems(row: Row[Any], words: Wording) -> str:
    """The row's problems in the staff language: ``Rad 8: kolumnen ”Belopp”: ”tre” är inget heltal``."""
    worded = [word_problem(problem, words) for problem in row.problems[:MAX_PROBLEMS_WORDED]]
    if len(row.problems) > MAX_PROBLEMS_WORDED:
        worded.append(words("validation.more", count=len(row.problems) - MAX_PROBLEMS_WORDED))
    return words("validation.row", row=row.number, problems="; ".join(worded))


def word_problem(problem: CellProblem, words: Wording) -> str:
    """One problem, naming its column and quoting its value (masked when personal); redacted."""
    if not problem.column:
        return redact(words("validation.model", message=problem.message))
    kind = VALIDATION_ALIASES.get(problem.kind, problem.kind)
    if kind == "missing" or problem.value is None or str(problem.value).strip() == "":
        body = words("validation.missing")
    else:
        shown = mask_quoted_value(_shown(problem.value), personal=problem.personal)
        fields = {**problem.context, "value": words.quote(shown), "message": problem.message}
        if "expected" in problem.context:
            fields["expected"] = _expected(str(problem.context["expected"]), words)
        key = f"validation.{kind}" if words.has(f"validation.{kind}") else "validation.other"
        try:
            body = words(key, **fields)
        except (KeyError, IndexError):  # a context field the wording names is not there
            body = words("validation.other", **fields)
    return redact(words("validation.column", column=words.quote(problem.column), problem=body))


def _shown(value: Any) -> str:
    """A cell value as staff typed it: dates as dates, whole floats as integers, bounded."""
    if isinstance(value, datetime):
        text = value.date().isoformat() if value.time() == clock_time() else value.isoformat(" ", "minutes")
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= MAX_QUOTED_LENGTH else text[: MAX_QUOTED_LENGTH - 1] + "…"


def _expected(expected: str, words: Wording) -> str:
    """Pydantic's ``'A', 'B' or 'C'`` in the staff language's quotes and ``or``."""
    choices = re.findall(r"'([^']*)'", expected)
    if not choices:
        return expected
    quoted = [words.quote(choice) for choice in choices]
    if len(quoted) == 1:
        return quoted[0]
    return f"{', '.join(quoted[:-1])} {words('validation.or')} {quoted[-1]}"


def _check_personnummer(value: str) -> str:
    from shared.redaction import normalise_personnummer

    try:
        normalise_personnummer(value)
    except ValueError:
        message = "not a valid personnummer (format or check digit)"
        raise PydanticCustomError("personnummer", message) from None
    return value.strip()


def _check_postnummer(value: str) -> str:
    digits = value.replace(" ", "")
    if len(digits) != 5 or not digits.isdigit():
        raise PydanticCustomError("postnummer", "not a valid postnummer (five digits, e.g. 123 45)")
    return f"{digits[:3]} {digits[3:]}"


#: A Swedish personal identity number (or samordningsnummer) with a valid check digit.
Personnummer = Annotated[str, AfterValidator(_check_personnummer)]
#: A Swedish postal code, normalised to ``NNN NN``.
Postnummer = Annotated[str, AfterValidator(_check_postnummer)]
