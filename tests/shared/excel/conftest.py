"""What the tests of shared.excel share: every test runs with both sheet readers (the autouse
``reader`` fixture), the registers they read (:class:`Person`, :class:`Decision`), and tools that
make and damage workbooks."""

from __future__ import annotations

import zipfile
from datetime import date as _date
from pathlib import Path
from typing import Any
from typing import Literal as _Literal
from uuid import UUID as _UUID

import pytest
from openpyxl import Workbook
from openpyxl.styles import Font
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.excel import Personnummer, Postnummer

HEADER = ["Referens", "Personnummer", "Förnamn", "Postnummer", "Belopp"]
PNR = "811218-9876"


@pytest.fixture(autouse=True, params=["fast", "openpyxl"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with both sheet readers: calamine where it may read (a plain sheet),
    and openpyxl alone (tests/shared/test_excel_readers.py shows the two agree)."""
    from shared import _sheets

    monkeypatch.setattr(_sheets, "FAST", request.param == "fast")
    return str(request.param)


class Person(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True, str_strip_whitespace=True)

    referens: str = Field(alias="Referens", min_length=1)
    personnummer: Personnummer = Field(alias="Personnummer")
    fornamn: str = Field(alias="Förnamn", min_length=1)
    postnummer: Postnummer | None = Field(default=None, alias="Postnummer")
    belopp: int | None = Field(default=None, alias="Belopp")


def sheet(path: Path, *rows: list[Any], header: list[Any] | None = None) -> Path:
    workbook = Workbook()
    workbook.active.append(HEADER if header is None else header)
    for cell in workbook.active[1]:
        cell.font = Font(bold=True)
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


STAFF_HEADER = ["Referens", "Personnummer", "Beslut", "Datum", "Belopp", "Antal", "Ort", "Kod"]


class Decision(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True, str_strip_whitespace=True)

    referens: str = Field(alias="Referens", min_length=3)
    personnummer: Personnummer = Field(alias="Personnummer")
    beslut: _Literal["Bifall", "Avslag"] = Field(alias="Beslut")
    datum: _date = Field(alias="Datum")
    belopp: int | None = Field(default=None, alias="Belopp", ge=0)
    antal: int | None = Field(default=None, alias="Antal")
    ort: str | None = Field(default=None, alias="Ort")
    kod: _UUID | None = Field(default=None, alias="Kod")

    @field_validator("ort")
    @classmethod
    def known_town(cls, value: str | None) -> str | None:
        if value is not None and value not in ("Exempelby", "Åby"):
            raise ValueError("okänd ort")
        return value

    @model_validator(mode="after")
    def no_amount_when_refused(self) -> Decision:
        if self.beslut == "Avslag" and self.belopp:
            raise ValueError("Belopp vid avslag")
        return self


GOOD = ["SN-1", PNR, "Bifall", _date(2026, 3, 1), 100, 2, "Åby", None]
BAD_PNR = "811218-9875"  # a wrong check digit: redact() alone would leave it


def decision_register(path: Path) -> Path:
    def variant(**changes: Any) -> list[Any]:
        row = dict(zip(STAFF_HEADER, GOOD, strict=True))
        row.update(changes)
        return list(row.values())

    return sheet(path, GOOD, variant(Referens="AB"), variant(Personnummer=BAD_PNR),
                 variant(Beslut="Kanske"), variant(Datum="2026-13-45"), variant(Belopp=-5),
                 variant(Antal="tre"), variant(Ort="Atlantis"), variant(Kod="xyz"), variant(Beslut=None),
                 variant(Beslut="Avslag"), variant(Referens="A", Personnummer="19811218-98", Beslut="Ja",
                                                   Datum="igår", Belopp=-1, Antal="x", Kod="y"),
                 variant(Antal=PNR), header=STAFF_HEADER)


def rewritten(source: Path, target: Path, member: str, change: Any) -> Path:
    """A copy of the zip ``source`` with ``member`` passed through ``change`` (bytes -> bytes)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in original.infolist():
            data = original.read(info.filename)
            copy.writestr(info, change(data) if info.filename == member else data)
    return target


def sheet_xml(path: Path, member: str = "xl/worksheets/sheet1.xml") -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(member)


def cell_xml(xml: bytes, reference: str) -> bytes:
    start = xml.index(f'<c r="{reference}"'.encode())
    return xml[start: xml.index(b"</c>", start) + 4]
