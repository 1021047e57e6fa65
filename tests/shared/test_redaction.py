from __future__ import annotations

import pytest

from shared.redaction import (
    SECRET_MASK,
    is_personnummer,
    luhn_valid,
    normalise_personnummer,
    pseudonym,
    redact,
    redact_value,
    register_secret,
)

VALID = ["811218-9876", "8112189876", "19811218-9876", "198112189876", "121212+1212",
         "701063-2391"]  # last one: a samordningsnummer (day + 60)


@pytest.mark.parametrize("number", VALID)
def test_valid_numbers_are_masked_in_text(number: str) -> None:
    assert is_personnummer(number)
    masked = redact(f"sökande {number} i ärende SN-2026-0412")
    assert number not in masked
    assert "******-****" in masked
    assert "SN-2026-0412" in masked


@pytest.mark.parametrize("text", ["811218-9875", "20261125-141433", "KS-2026-000123", "070-1234567",
                                  "1234567890123"])
def test_other_numbers_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_luhn_and_normalise() -> None:
    assert luhn_valid("8112189876")
    assert not luhn_valid("8112189875")
    assert normalise_personnummer("198112189876") == "811218-9876"
    with pytest.raises(ValueError):
        normalise_personnummer("811218-9875")


def test_registered_secret_is_masked_everywhere() -> None:
    register_secret("kanariefågel-hemlis-42")
    nested = {"a": ["x kanariefågel-hemlis-42 y"], "b": ("kanariefågel-hemlis-42",), "c": 3}
    assert redact_value(nested) == {"a": [f"x {SECRET_MASK} y"], "b": [SECRET_MASK], "c": 3}


def test_pseudonym_is_stable_and_keyed() -> None:
    one = pseudonym("19811218-9876", "key-a")
    assert one == pseudonym("811218-9876", "key-a")
    assert one != pseudonym("811218-9876", "key-b")
    assert "9876" not in one


def test_a_quoted_value_is_redacted_and_masked_to_its_shape_when_personal() -> None:
    from shared.redaction import mask_quoted_value

    assert mask_quoted_value("Kanske") == "Kanske"
    assert mask_quoted_value("811218-9875") == "******-****", "a wrong check digit is still a number"
    assert mask_quoted_value("19811218-98", personal=True) == "********-**"
    assert mask_quoted_value("ruta ２３", personal=True) == "ruta **"
    assert mask_quoted_value("tre 811218-9876") == "tre ******-****"
    assert mask_quoted_value("12 äpplen") == "12 äpplen"
