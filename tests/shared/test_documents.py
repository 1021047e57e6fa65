"""shared.documents: docxtpl templates checked for fields, compiled once and written atomically."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from openpyxl import Workbook

from shared.documents import DocumentTemplate, format_kronor
from shared.errors import InputError, TemplateFieldError

NBSP = "\u00a0"


def template(path: Path, *paragraphs: str, footer: str | None = None) -> Path:
    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if footer is not None:
        document.sections[0].footer.paragraphs[0].text = footer
    document.save(str(path))
    return path


def text_of(path: Path) -> list[str]:
    return [paragraph.text for paragraph in Document(str(path)).paragraphs]


def letter_template(path: Path) -> Path:
    return template(path, "Hej {{ namn }}!", "Belopp: {{ belopp }}",
                    "{% for a in atgarder %}{{ a }}; {% endfor %}", footer="{{ kommun }}")


def test_render_fills_fields_loops_and_footer_with_swedish_text_intact(tmp_path: Path) -> None:
    letter = DocumentTemplate(letter_template(tmp_path / "mall.docx"))
    context = {"namn": "Åsa Öberg & <Ärla>", "belopp": format_kronor(12500),
               "atgarder": ["Ramp vid entrén", "Dörröppnare"], "kommun": "Exempelby kommun"}
    out = letter.render(context, tmp_path / "brev.docx")
    assert out == tmp_path / "brev.docx"
    assert text_of(out) == ["Hej Åsa Öberg & <Ärla>!", f"Belopp: 12{NBSP}500 kr",
                            "Ramp vid entrén; Dörröppnare; "]
    assert Document(str(out)).sections[0].footer.paragraphs[0].text == "Exempelby kommun"


def test_fields_are_the_top_level_names_used_in_body_and_footer(tmp_path: Path) -> None:
    letter = DocumentTemplate(letter_template(tmp_path / "mall.docx"))
    assert letter.fields == {"namn", "belopp", "atgarder", "kommun"}, "loop variable 'a' is not a field"
    nested = DocumentTemplate(template(tmp_path / "n.docx", "{{ mottagare.namn }}, {{ mottagare.adress }}"))
    assert nested.fields == {"mottagare"}


def test_require_names_every_missing_field_and_the_template(tmp_path: Path) -> None:
    path = letter_template(tmp_path / "mall.docx")
    letter = DocumentTemplate(path)
    letter.require(["namn", "belopp", "atgarder", "kommun", "extra"])  # more than needed is fine
    with pytest.raises(TemplateFieldError) as caught:
        letter.require(["namn", "kommun"])
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 1
    assert str(caught.value) == (
        f"{path}: template uses field(s) 'atgarder', 'belopp' that the data does not provide")


@pytest.mark.parametrize("broken", ["Hej {{ namn ", "{% if beslut %} utan slut", "{{ namn | inget_filter }}",
                                    "{% endfor %}"])
def test_broken_jinja_is_an_input_error_naming_the_template(tmp_path: Path, broken: str) -> None:
    path = template(tmp_path / "trasig.docx", "Beslut", broken)
    with pytest.raises(InputError) as caught:
        DocumentTemplate(path)
    assert str(caught.value).startswith(f"{path}: the template does not parse: ")
    assert not isinstance(caught.value, TemplateFieldError)


def test_missing_or_non_word_template_is_an_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"ingen\.docx: template not found$"):
        DocumentTemplate(tmp_path / "ingen.docx")
    (tmp_path / "skräp.docx").write_bytes(b"\x00\x01 not a zip at all")
    with pytest.raises(InputError, match=r"skräp\.docx: not a Word \.docx template$"):
        DocumentTemplate(tmp_path / "skräp.docx")
    Workbook().save(tmp_path / "kalkyl.docx")  # a zip, but a workbook
    with pytest.raises(InputError, match=r"kalkyl\.docx: not a Word \.docx template$"):
        DocumentTemplate(tmp_path / "kalkyl.docx")


def test_a_directory_as_template_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "mallar").mkdir()
    with pytest.raises(InputError, match="mallar"):
        DocumentTemplate(tmp_path / "mallar")


def test_each_template_text_is_compiled_once_and_reused(tmp_path: Path) -> None:
    letter = DocumentTemplate(template(tmp_path / "mall.docx", "Hej {{ namn }}!"))
    compiled = letter._environment._compiled
    first = letter.render({"namn": "Åsa"}, tmp_path / "a.docx")
    cached = dict(compiled)
    body = next(source for source in cached if "namn" in source)
    second = letter.render({"namn": "Örjan"}, tmp_path / "b.docx")
    third = letter.render({"namn": "Åsa"}, tmp_path / "c.docx")
    assert compiled.keys() == cached.keys() and all(compiled[key] is cached[key] for key in cached)
    assert letter._environment.from_string(body) is cached[body]
    assert text_of(first) == text_of(third) == ["Hej Åsa!"] and text_of(second) == ["Hej Örjan!"]


def test_the_compile_cache_stays_bounded(tmp_path: Path) -> None:
    environment = DocumentTemplate(template(tmp_path / "mall.docx", "{{ x }}"))._environment
    for number in range(300):
        environment.from_string(f"text {number}")
    assert 0 < len(environment._compiled) <= 256
    assert environment.from_string("text 299").render() == "text 299"


def test_render_replaces_an_existing_file_and_creates_folders(tmp_path: Path) -> None:
    letter = DocumentTemplate(template(tmp_path / "mall.docx", "Hej {{ namn }}!"))
    out = tmp_path / "ut" / "beslut.docx"
    out.parent.mkdir()
    out.write_bytes(b"an older letter")
    letter.render({"namn": "Åsa"}, out)
    assert text_of(out) == ["Hej Åsa!"]
    assert [path.name for path in out.parent.iterdir()] == ["beslut.docx"]
    deep = letter.render({"namn": "Bo"}, tmp_path / "nya" / "mappar" / "beslut.docx")
    assert text_of(deep) == ["Hej Bo!"] and [p.name for p in deep.parent.iterdir()] == ["beslut.docx"]


def test_a_render_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    letter = DocumentTemplate(template(tmp_path / "mall.docx", "Per månad: {{ 1200 // manader }}"))
    out = tmp_path / "ut" / "beslut.docx"
    out.parent.mkdir()
    out.write_bytes(b"an older letter")
    with pytest.raises(ZeroDivisionError):
        letter.render({"manader": 0}, out)
    assert out.read_bytes() == b"an older letter"
    assert [path.name for path in out.parent.iterdir()] == ["beslut.docx"]


@pytest.mark.parametrize(("amount", "expected"), [
    (12500, f"12{NBSP}500 kr"), (1234567, f"1{NBSP}234{NBSP}567 kr"), (999, "999 kr"),
    (1000, f"1{NBSP}000 kr"), (5, "5 kr"), (-12500, f"-12{NBSP}500 kr"), (0, ""), (None, ""),
    (1234.5, f"1{NBSP}234,50 kr"), (2500.0, f"2{NBSP}500 kr"), (Decimal("99.95"), "99,95 kr"),
])
def test_format_kronor_groups_thousands_with_no_break_spaces(amount: Any, expected: str) -> None:
    assert format_kronor(amount) == expected


def test_a_missing_nested_field_at_render_time_names_the_template(tmp_path: Path) -> None:
    letter = DocumentTemplate(template(tmp_path / "n.docx", "{{ mottagare.namn }}"))
    with pytest.raises(TemplateFieldError, match=r"n\.docx: the data lacks field\(s\) 'mottagare' \(missing"):
        letter.render({}, tmp_path / "ut.docx")
    assert not (tmp_path / "ut.docx").exists()
