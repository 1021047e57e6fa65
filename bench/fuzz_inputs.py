"""Fuzz the readers of files Kansli did not write: ``read_rows`` and the template check.

Real workbooks and templates are made here (openpyxl, python-docx: shared strings, numbers, dates,
formulas, merged cells, title rows, two sheets; headers, footers, footnotes, properties, loops), then
mutated under hypothesis: bytes of the file, bytes and XML tokens of one zip member, a member
dropped, the file cut short. The only allowed outcomes are rows, an ``InputError`` or a
``ConfigError`` whose message is one line naming the file. Anything else is a finding: it is printed
and the file kept under ``var/fuzz/``, and the script exits 1.

    .venv/bin/python bench/fuzz_inputs.py [--seconds 60] [--kind xlsx|docx|both]

The test suite runs the same properties for a few seconds (tests/shared/excel/test_reading.py and
tests/shared/test_documents.py).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from shared.documents import DocumentTemplate  # noqa: E402
from shared.errors import ConfigError, InputError  # noqa: E402
from shared.excel import MergedTopLeft, Personnummer, read_rows  # noqa: E402

ALLOWED = (InputError, ConfigError)
#: XML fragments that reach the readers' less travelled paths when spliced into a member.
TOKENS = [b'<c r="A2" t="s"><v>999999</v></c>', b'<c r="B3" t="n"><v>tolv</v></c>', b'<v>-1</v>',
          b'<c r="XFE1"><v>1</v></c>', b'<row r="0">', b'<row r="1048577">', b"</row>", b"</sheetData>",
          b'<f>SUM(A1:A3)</f>', b'<mergeCell ref="A1:C3"/>', b'<mergeCell ref="Z9:A1"/>', b't="d"', b't="b"',
          b't="e"', b't="inlineStr"', b's="9999"', b'<v>1e309</v>', b'<v>2958466</v>', b"&#0;", b"&bogus;",
          b"<!DOCTYPE x [<!ENTITY a 'b'>]>", b"{{", b"}}", b"{%", b"%}", b"{% for x in %}", b"{{ a.b[",
          b"{{r x }}", b'r:id="rId99"', b"\xff\xfe", b"\x00", b'encoding="utf-16"', b"xmlns:x='urn:x'"]


#: Text (well-formed XML) that reaches Jinja and the cell converters when put into a text node.
TEXT_TOKENS = [
    b"{{", b"}}", b"{%", b"%}", b"{{ x }", b"{% if a %}", b"{% endif %}", b"{% for a in b %}",
    b"{% endfor %}", b"{%p if a %}", b"{%tr for r in rader %}", b"{{r x }}", b"{{ a.b.c }}", b"{{ a['k'] }}",
    b"{{ x | kronor }}", b"{{ x | inget_filter }}", b"{{ x.y() }}", b"{#", b"#}", b"{{ loop.index }}",
    b"{% set z = 1 %}", b"{% raw %}", b"{{ 1 // 0 }}", b"tolv", b"-1", b"1e309", b"2958466", b"99999",
    b"0x1F", b"NaN", b"inf", b"", b" ", "åä".encode(), b"&amp;", b"&#x0;",
]
#: The members holding the cells and the template text: mutated half the time.
CONTENT_PARTS = ("worksheets/sheet", "sharedStrings", "word/document", "word/footnotes", "word/header",
                 "word/footer", "docProps/core")


class FuzzRow(BaseModel):
    """A register row of the fuzzed workbooks."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    referens: str = Field(alias="Referens")
    personnummer: Personnummer = Field(alias="Personnummer")
    handlaggare: Annotated[str | None, MergedTopLeft()] = Field(default=None, alias="Handläggare")
    belopp: int | None = Field(default=None, alias="Belopp")
    datum: date | None = Field(default=None, alias="Datum")


@cache
def seed_workbook() -> bytes:
    """A register in the styles seen in real files: a title row, formulas, merges, a second sheet."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Ansökningar"
    sheet.append(["Ansökningar 2026"])
    sheet.append(["Referens", "Personnummer", "Handläggare", "Belopp", "Datum", "Anteckning"])
    for number in range(1, 9):
        sheet.append([f"SN-{number}", "811218-9876", "Karin Ek" if number % 3 == 1 else None, number * 1000,
                      date(2026, 1, number), f"=D{number + 2}*2" if number % 2 else "åäö"])
    sheet.merge_cells("C3:C5")
    workbook.create_sheet("Koder").append(["Kod", "Text"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return with_shared_strings(buffer.getvalue())


def with_shared_strings(content: bytes) -> bytes:
    """The workbook as Excel writes it: its texts in a shared string table (openpyxl writes them inline)."""
    strings: dict[bytes, int] = {}
    inline = re.compile(rb'<c ([^>]*?)t="inlineStr"([^>]*)><is><t[^>]*>(.*?)</t></is></c>', re.DOTALL)

    def shared(match: re.Match[bytes]) -> bytes:
        index = strings.setdefault(match.group(3), len(strings))
        return b'<c %st="s"%s><v>%d</v></c>' % (match.group(1), match.group(2), index)

    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        sheets = [name for name in archive.namelist() if name.startswith("xl/worksheets/sheet")]
    rezipped = _rezip(content, {name: lambda xml: inline.sub(shared, xml) for name in sheets})
    table = b"".join(b'<si><t xml:space="preserve">%s</t></si>' % text for text in strings)
    sst = (b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="%d" '
           b'uniqueCount="%d">%s</sst>' % (len(strings), len(strings), table))
    content_type = b"application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
    relationship = (b'<Relationship Id="rIdStrings" Target="sharedStrings.xml" Type="http://schemas.'
                    b'openxmlformats.org/officeDocument/2006/relationships/sharedStrings"/></Relationships>')
    override = b'<Override PartName="/xl/sharedStrings.xml" ContentType="%s"/></Types>' % content_type
    return _rezip(rezipped, {
        "[Content_Types].xml": lambda xml: xml.replace(b"</Types>", override),
        "xl/_rels/workbook.xml.rels": lambda xml: xml.replace(b"</Relationships>", relationship),
    }, add={"xl/sharedStrings.xml": sst})


@cache
def seed_template() -> bytes:
    """A letter template with fields in body, table, loop, header, footer, footnote and properties."""
    from docx import Document

    document = Document()
    document.add_paragraph("Hej {{ mottagare.namn }}!")
    document.add_paragraph("{% for a in atgarder %}{{ a.namn }}: {{ a.beslut }}; {% endfor %}")
    document.add_paragraph("Belopp: {{ belopp | kronor }}, beslutat {{ datum | datum }}")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Diarienummer", "{{ diarienummer }}"
    document.sections[0].header.paragraphs[0].text = "{{ kommun }}"
    document.sections[0].footer.paragraphs[0].text = "Handläggare: {{ handlaggare }}"
    document.core_properties.title = "Beslut {{ diarienummer }}"
    buffer = io.BytesIO()
    document.save(buffer)
    return _with_footnote(buffer.getvalue(), "Enligt {{ lagrum }}.")


def _with_footnote(content: bytes, text: str) -> bytes:
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    rels = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    footnotes = (f'<w:footnotes xmlns:w="{w}"><w:footnote w:id="1"><w:p><w:r><w:t>{text}</w:t></w:r></w:p>'
                 "</w:footnote></w:footnotes>")
    content_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"
    override = f'<Override PartName="/word/footnotes.xml" ContentType="{content_type}"/></Types>'
    relationship = (f'<Relationship Id="rIdFn" Type="{rels}/footnotes" Target="footnotes.xml"/>'
                    "</Relationships>")
    changes = {
        "[Content_Types].xml": lambda xml: xml.replace(b"</Types>", override.encode()),
        "word/_rels/document.xml.rels": lambda xml: xml.replace(b"</Relationships>", relationship.encode()),
    }
    return _rezip(content, changes, add={"word/footnotes.xml": footnotes.encode()})


def _rezip(content: bytes, changes: dict[str, Callable[[bytes], bytes]], *, drop: str | None = None,
           add: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(content)) as source, zipfile.ZipFile(buffer, "w") as out:
        for info in source.infolist():
            if info.filename != drop:
                data = source.read(info.filename)
                out.writestr(info, changes[info.filename](data) if info.filename in changes else data)
        for name, data in (add or {}).items():
            out.writestr(name, data)
    return buffer.getvalue()


def _edited(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes replaced, deleted or inserted."""
    edited = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, max(len(edited) - 1, 0)))
        how = draw(st.sampled_from(["replace", "delete", "insert"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if how == "replace":
            edited[position: position + len(chunk)] = chunk
        elif how == "delete":
            del edited[position: position + draw(st.integers(1, 64))]
        else:
            edited[position:position] = chunk
    return bytes(edited)


def _spliced(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` (XML) with a token spliced in at a tag boundary, maybe over what was there."""
    boundaries = [index for index, byte in enumerate(data) if byte == ord("<")] or [0]
    position = draw(st.sampled_from(boundaries))
    removed = draw(st.integers(0, 40))
    return data[:position] + draw(st.sampled_from(TOKENS)) + data[position + removed:]


def _in_text(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` (XML) with a text token put into a text node (a cell value, a run of a paragraph)."""
    starts = [index + 1 for index, byte in enumerate(data)
              if byte == ord(">") and data[index + 1: index + 2] != b"<"]
    position = draw(st.sampled_from(starts or [0]))
    removed = draw(st.integers(0, 12))
    end = data.find(b"<", position)
    end = len(data) if end < 0 else end
    return data[:position] + draw(st.sampled_from(TEXT_TOKENS)) + data[min(position + removed, end):]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """A mutation of the zip package ``seed``: of its bytes, of one member, or of its members."""
    with zipfile.ZipFile(io.BytesIO(seed)) as archive:
        members = archive.namelist()
    ways = ["member-text", "member-text", "member-xml", "member-xml", "member-bytes", "file-bytes", "drop",
            "truncate"]
    how = draw(st.sampled_from(ways))
    if how == "file-bytes":
        return _edited(draw, seed)
    if how == "truncate":
        return seed[: draw(st.integers(0, len(seed) - 1))]
    content = [name for name in members if any(word in name for word in CONTENT_PARTS)]
    prefer_content: bool = draw(st.booleans())
    member = draw(st.sampled_from(content if content and prefer_content else members))
    if how == "drop":
        return _rezip(seed, {}, drop=member)
    change = {"member-text": _in_text, "member-xml": _spliced}.get(how, _edited)
    return _rezip(seed, {member: lambda data: change(draw, data)})


def check_message(error: Exception, path: Path) -> None:
    """An allowed error is one line naming the file."""
    message = str(error)
    assert "\n" not in message, f"a message of several lines: {message!r}"
    assert message.startswith(str(path)), f"a message not naming the file: {message!r}"


def read_outcome(path: Path, *, merged: bool = False) -> str:
    """``rows``, or the name of the allowed error; any other exception propagates."""
    try:
        rows = list(read_rows(path, FuzzRow, merged="top_left" if merged else "empty"))
    except ALLOWED as error:
        check_message(error, path)
        return type(error).__name__
    assert all(row.number >= 1 and (row.model is None) != (row.error is None) for row in rows)
    return "rows"


def template_outcome(path: Path) -> str:
    """``checked``, or the name of the allowed error; any other exception propagates."""
    try:
        template = DocumentTemplate(path)
        template.require(template.fields)
        template.missing({"mottagare": {"namn": "Åsa"}, "atgarder": [{"namn": "Ramp"}], "belopp": None})
    except ALLOWED as error:
        check_message(error, path)
        return type(error).__name__
    return "checked"


def run(kind: str, seconds: float, folder: Path) -> tuple[Counter[str], list[str]]:
    """Fuzz ``kind`` ("xlsx" or "docx") for ``seconds``; the outcomes counted and the findings."""
    seed = seed_workbook() if kind == "xlsx" else seed_template()
    outcomes: Counter[str] = Counter()
    findings: list[str] = []
    target = folder / f"fuzzed.{kind}"

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(content=mutated(seed), merged=st.booleans())
    def example(content: bytes, merged: bool) -> None:
        target.write_bytes(content)
        try:
            outcomes[read_outcome(target, merged=merged) if kind == "xlsx" else template_outcome(target)] += 1
        except Exception:  # noqa: BLE001 - a finding, kept for a look
            kept = REPO / "var" / "fuzz" / f"finding-{len(findings) + 1}.{kind}"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_bytes(content)
            findings.append(f"{kept}: {traceback.format_exc(limit=-3)}")
            outcomes["finding"] += 1

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        example()
    return outcomes, findings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz each kind")
    parser.add_argument("--kind", choices=["xlsx", "docx", "both"], default="both")
    arguments = parser.parse_args()
    kinds = ["xlsx", "docx"] if arguments.kind == "both" else [arguments.kind]
    found = False
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            started = time.monotonic()
            outcomes, findings = run(kind, arguments.seconds, Path(folder))
            elapsed = time.monotonic() - started
            total = sum(outcomes.values())
            summary = ", ".join(f"{name} {count}" for name, count in outcomes.most_common())
            print(f"{kind}: {total} mutated files in {elapsed:.0f} s ({total / elapsed:.0f}/s): {summary}")
            for finding in findings[:10]:
                print(finding)
            found = found or bool(findings)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
