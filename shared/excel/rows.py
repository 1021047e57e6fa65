"""What a register is read into: :class:`Row` (with its :class:`CellProblem` list when it is bad),
how a model names its columns (field aliases, :class:`MergedTopLeft`), and rows as work items.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from shared.items import WorkItem

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class CellProblem:
    """One problem of a bad row, kept structured so each output words it in its own language."""

    #: The column's header; ``""`` for a problem of the whole row (a model validator).
    column: str
    #: Pydantic's error type: ``missing``, ``int_parsing``, ``personnummer``, ...
    kind: str
    #: Pydantic's English message.
    message: str
    #: The offending value as read (None when the cell is empty).
    value: Any = None
    #: Pydantic's context (``ge``, ``expected``, ...).
    context: dict[str, Any] = field(default_factory=dict)
    #: The value is personal data (a personnummer column): it is quoted masked.
    personal: bool = False


@dataclass
class Row(Generic[M]):
    """One data row: its Excel row number, its raw values by header, and the model or the error.

    ``error`` is one English line for logs and the CLI; ``problems`` are the same problems, structured.
    """

    number: int
    values: dict[str, Any]
    model: M | None = None
    error: str | None = None
    problems: list[CellProblem] = field(default_factory=list)


class MergedTopLeft:
    """Marks a field whose empty cells inside a merged range take the range's top-left value.

    ``handlaggare: Annotated[str, MergedTopLeft()] = Field(alias="Handläggare")``; or read every
    column so with ``read_rows(..., merged="top_left")``. Without it a merged range's other cells are
    empty, as Excel stores them.
    """

    def __repr__(self) -> str:
        return "MergedTopLeft()"


def columns_of(model: type[BaseModel]) -> dict[str, str]:
    """Header → field name, from the model's aliases."""
    return {(info.alias or name): name for name, info in model.model_fields.items()}


def column_letter(column: int) -> str:
    """``1`` as ``A``, ``28`` as ``AB``: a column's letters."""
    letters = ""
    while column > 0:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def row_key(row: Row[Any], column: str) -> str:
    """The row's ``column`` as an item key (a case reference); ``""`` when it is empty.

    An empty key is a business error of its row (:mod:`shared.items`): a row is never identified
    by its position, which changes when the register grows or is sorted.
    """
    value = row.values.get(column)
    return str(value).strip() if value is not None else ""


def row_items(rows: Iterable[Row[Any]], key_column: str, source: Path) -> Iterator[WorkItem]:
    """Work items of a register's rows: keyed by ``key_column``, with file and row for people."""
    from shared.items import WorkItem

    for row in rows:
        yield WorkItem(key=row_key(row, key_column), data=row, position=row.number,
                       source=f"{source.name} row {row.number}")
