"""shared.excel.rows: a row's key."""

from __future__ import annotations

from typing import Any

from shared import excel
from shared.excel import Row


def test_row_key_trims_the_value_and_is_empty_without_one() -> None:
    def key(value: Any, number: int = 7) -> str:
        return excel.row_key(Row(number, {"Referens": value}), "Referens")

    assert (key(" SN-2026-01 "), key(4711), key(None), key("   "), key("", 8)) == (
        "SN-2026-01", "4711", "", "", "")  # never the row number: it changes when the register does
    assert excel.row_key(Row(9, {}), "Saknas") == ""
    assert key("SN-1", 2) == key(" SN-1", 3), "duplicates keep one key, for the item layer to reject"
