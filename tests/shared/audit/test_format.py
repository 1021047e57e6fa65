"""shared.audit.format: every line is canonical JSON with its hash last, SHA-256 or HMAC-SHA256."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.audit import ZERO_HASH
from tests.shared.audit.conftest import day_file, read_lines, recompute, write_days


def test_line_format_is_canonical_json_with_hash_last(tmp_path: Path) -> None:
    log, _ = write_days(tmp_path, per_day=3)
    lines = read_lines(day_file(tmp_path))
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert list(first) == sorted(set(first) - {"hash"}) + ["hash"]
    assert first["seq"] == 1 and first["prev_hash"] == ZERO_HASH
    assert re.fullmatch(r"2026-11-20T08:00:00\.\d{6}\+00:00", first["time"])
    for line in lines:
        assert recompute(line, json.loads(line)["prev_hash"]) == line
    assert json.loads(lines[1])["prev_hash"] == first["hash"]
    assert log.head() == (3, json.loads(lines[2])["hash"])
    assert json.loads((tmp_path / "head.json").read_text())["seq"] == 3


def test_keyed_chain_is_hmac_sha256(tmp_path: Path) -> None:
    write_days(tmp_path, per_day=3, key="s3cret-key")
    for line in read_lines(day_file(tmp_path)):
        assert recompute(line, json.loads(line)["prev_hash"], b"s3cret-key") == line
