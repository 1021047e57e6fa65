"""What the demo data builders share: synthetic identity numbers and reproducible Office files."""

from __future__ import annotations

import datetime as dt
import random
import re
import zipfile
from pathlib import Path

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_CORE_DATE = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")


def luhn_check_digit(digits: str) -> int:
    """Check digit for a Swedish personnummer over the nine digits YYMMDDNNN."""
    total = 0
    for index, char in enumerate(digits):
        product = int(char) * (2 if index % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def make_personnummer(rng: random.Random, birth: dt.date, female: bool) -> str:
    """``YYYYMMDD-NNNC``; the third birth-number digit is even for women, odd for men."""
    serial = rng.randint(0, 99) * 10 + rng.choice((0, 2, 4, 6, 8) if female else (1, 3, 5, 7, 9))
    nine = f"{birth:%y%m%d}{serial:03d}"
    return f"{birth:%Y%m%d}-{serial:03d}{luhn_check_digit(nine)}"


def normalise_ooxml(path: Path, timestamp: dt.datetime) -> None:
    """Rewrite an .xlsx/.docx zip with fixed entry dates and core-property timestamps.

    openpyxl stamps ``dcterms:modified`` with the current time on save, and both libraries write
    zip entries with the current time, so without this every rebuild differs.
    """
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    stamp = timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in entries:
            if name == "docProps/core.xml":
                data = _CORE_DATE.sub(lambda match: match.group(1) + stamp + match.group(2), data)
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, data)
