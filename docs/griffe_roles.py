"""A griffe extension for the API reference: Sphinx roles in docstrings read as code.

The docstrings cross-reference with Sphinx roles (``:class:`~shared.errors.InputError```), which
Markdown would show verbatim; here each becomes inline code naming the object (``InputError``).
reST's literal-block marker ``::`` is dropped too (``text::`` reads ``text:``, a ``::`` line goes):
the indented block after it is a code block in Markdown already.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")
LITERAL_LINE = re.compile(r"^[ \t]*::[ \t]*\n", re.M)
LITERAL_END = re.compile(r"(?<=\S)::[ \t]*$", re.M)


def _as_code(match: re.Match[str]) -> str:
    target = match[1]
    shown = target.rsplit(".", 1)[-1] if match[0].find("`~") != -1 else target
    return f"`{shown}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite Sphinx roles in every docstring as inline code."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = ROLE.sub(_as_code, obj.docstring.value)
            obj.docstring.value = LITERAL_END.sub(":", LITERAL_LINE.sub("", value))
