"""After a full demo run, no secret and no valid personnummer is readable in any file Kansli wrote.

Both demo robots run through the real CLI (letters, then forms against the demo e-service, with
items that fail and leave screenshots and traces). Every file under the data and log dirs is read,
zip members (traces) decompressed, and searched for the secrets and every valid identity number
of the input registers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from demo.scale import scaled_register
from shared.excel import open_workbook
from shared.redaction import is_personnummer
from tests.conftest import ESERVICE_PASSWORD, REPO, kansli

LETTERS = REPO / "demo" / "data" / "applications.xlsx"
INTAKE = REPO / "demo" / "data" / "intake.xlsx"
AUDIT_KEY = "kanariefågel-granskning-5512"


def identity_numbers(path: Path) -> set[str]:
    workbook = open_workbook(path, read_only=True)
    numbers: set[str] = set()
    for row in workbook.worksheets[0].iter_rows(values_only=True):
        for cell in row:
            if isinstance(cell, str) and is_personnummer(cell):
                numbers |= {cell, cell[2:], cell.replace("-", ""), cell[2:].replace("-", "")}
    workbook.close()
    return numbers


def readable_contents(root: Path) -> list[tuple[str, bytes]]:
    contents: list[tuple[str, bytes]] = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        contents.append((str(path), data))
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                contents += [(f"{path}!{name}", archive.read(name)) for name in archive.namelist()]
    return contents


@pytest.mark.browser
def test_no_secret_or_personnummer_in_any_file_after_a_demo_run(
    eservice: Any, kansli_env: Path
) -> None:
    (kansli_env / ".env").write_text(f"KANSLI_AUDIT__KEY={AUDIT_KEY}\n", encoding="utf-8")
    intake = scaled_register(kansli_env / "inkomna.xlsx", 5, source=INTAKE, key_column="Referens",
                             valid={2, 3, 33, 52, 71})
    letters = kansli("run", "decision_letters", "-p", f"input={LETTERS}",
                     "-p", f"output_dir={kansli_env / 'ut' / 'brev'}", cwd=kansli_env)
    forms = kansli("run", "intake_forms", "-p", f"input={intake}",
                   "-p", f"output_dir={kansli_env / 'ut' / 'e-tjanst'}", cwd=kansli_env)
    assert letters.returncode == 3, letters.stderr
    assert forms.returncode == 3, forms.stdout + forms.stderr
    evidence = list((kansli_env / "data").rglob("*-trace.zip"))
    assert evidence, "no failed item left a trace to check"
    audited = kansli("audit", "search", "--event", "item.outcome", "--csv", cwd=kansli_env).stdout
    robots = [line.split(",")[3] for line in audited.splitlines()[1:]]
    assert robots.count("decision_letters") == 50 and robots.count("intake_forms") == 5

    secrets = {ESERVICE_PASSWORD, AUDIT_KEY}
    numbers = identity_numbers(LETTERS) | identity_numbers(intake)
    needles = [value.encode() for value in secrets | numbers]
    needles += [secret.encode("unicode_escape") for secret in secrets]
    console = (letters.stdout + letters.stderr + forms.stdout + forms.stderr).encode()
    scanned = readable_contents(kansli_env / "data") + readable_contents(kansli_env / "log")
    assert len(scanned) > 20
    for name, content in [("console", console), *scanned]:
        for needle in needles:
            assert needle not in content, f"{needle!r} readable in {name}"
