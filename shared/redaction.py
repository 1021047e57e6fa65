"""The one redaction policy: what never reaches a log, report, audit event or error message.

Two kinds of value are masked wherever text leaves the process:

* **secrets**: every ``SecretStr`` value of the settings, plus values registered at run time
  (:func:`register_secret`); replaced by ``**********``;
* **Swedish personal identity numbers** (personnummer and samordningsnummer, 10 or 12 digits, with or
  without ``-``/``+``, with a valid check digit); replaced by ``******-****``.

:func:`pseudonym` gives a keyed, stable stand-in for a number (HMAC-SHA256), so an auditor can follow
one person's items across runs without seeing the number itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_MASK = "**********"
_MIN_SECRET_LENGTH = 4

_PERSONNUMMER = re.compile(r"(?<![\d])(?:19|20)?(\d{6})([-+]?)(\d{4})(?![\d])")

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def luhn_valid(digits: str) -> bool:
    """The Luhn check used by Swedish identity numbers (over YYMMDDNNNC)."""
    total = 0
    for index, char in enumerate(digits):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def is_personnummer(text: str) -> bool:
    """True when ``text`` as a whole is a valid personnummer or samordningsnummer."""
    match = _PERSONNUMMER.fullmatch(text.strip())
    return match is not None and _plausible(match.group(1), match.group(3))


def normalise_personnummer(text: str) -> str:
    """The 10-digit form ``YYMMDD-NNNC`` of a valid number (raises ``ValueError`` otherwise)."""
    match = _PERSONNUMMER.fullmatch(text.strip())
    if not match or not _plausible(match.group(1), match.group(3)):
        raise ValueError("not a valid personnummer")
    separator = "+" if match.group(2) == "+" else "-"
    return f"{match.group(1)}{separator}{match.group(3)}"


def _plausible(date_part: str, tail: str) -> bool:
    month, day = int(date_part[2:4]), int(date_part[4:6])
    if not 1 <= month <= 12:
        return False
    if day > 60:  # samordningsnummer: day + 60
        day -= 60
    return 1 <= day <= 31 and luhn_valid(date_part + tail)


def _mask_number(match: re.Match[str]) -> str:
    if not _plausible(match.group(1), match.group(3)):
        return match.group(0)
    return "******-****"


def register_secret(value: str | None) -> None:
    """Mask ``value`` from now on wherever text is redacted (short values are ignored)."""
    global _secret_pattern
    if not value or len(value) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(secret) for secret in ordered))


def register_secrets(values: Iterable[str | None]) -> None:
    """Register several secrets at once."""
    for value in values:
        register_secret(value)


def redact(text: str) -> str:
    """``text`` with every known secret and every valid identity number masked."""
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(SECRET_MASK, text)
    if any(char.isdigit() for char in text):
        text = _PERSONNUMMER.sub(_mask_number, text)
    return text


def mask_quoted_value(text: str, *, personal: bool = False) -> str:
    """A bad value fit to quote to staff: redacted, and its digits masked when it is personal data.

    ``personal`` marks a value known to be personal data (a personnummer cell): it is quoted as its
    shape only (``811218-987`` → ``******-***``), so staff see what is wrong without the number. A
    value shaped like an identity number is masked so too, even with a wrong check digit (which
    :func:`redact` leaves alone, as it may be anything).
    """
    text = redact(text)
    if personal or _PERSONNUMMER.search(text):
        text = "".join("*" if char.isdigit() else char for char in text)  # any script's digits
    return text


def redact_value(value: Any) -> Any:
    """Redact strings inside nested dicts, lists and tuples; other values pass unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


def pseudonym(value: str, key: str) -> str:
    """A stable keyed stand-in for ``value``: the same person gives the same pseudonym."""
    try:
        value = normalise_personnummer(value).replace("+", "-")
    except ValueError:
        value = value.strip()
    digest = hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()
    return f"pn:{digest[:16]}"
