"""shared.documents: docxtpl templates checked for fields, compiled once and written atomically."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from docx.oxml import parse_xml
from docxtpl import RichText
from hypothesis import HealthCheck, given, settings
from openpyxl import Workbook

from bench.fuzz_inputs import mutated, seed_template, template_outcome
from shared.documents import DocumentTemplate, Hyperlink, format_datum, format_kronor, mask_personnummer
from shared.errors import InputError, TemplateFieldError
from shared.redaction import redact

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


# --- templates in other styles: notes, properties, headers, nested data, None, links, filters ---

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NOTE_TYPES = {
    "footnotes": "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml",
    "endnotes": "application/vnd.openxmlformats-officedocument.wordprocessingml.endnotes+xml",
}


def notes_xml(kind: str, text: str) -> str:
    tag = kind[:-1]
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:{kind} xmlns:w="{W_NS}" '
            f'xmlns:r="{R_NS}"><w:{tag} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p>'
            f'</w:{tag}><w:{tag} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/>'
            f'</w:r></w:p></w:{tag}><w:{tag} w:id="1"><w:p><w:r><w:t xml:space="preserve">{text}</w:t></w:r>'
            f'</w:p></w:{tag}></w:{kind}>')


def with_notes(path: Path, footnote: str | None = None, endnote: str | None = None) -> Path:
    """Add a footnote and an endnote (Word's own part layout) to the template at ``path``."""
    given = [("footnotes", footnote), ("endnotes", endnote)]
    notes = {kind: text for kind, text in given if text is not None}
    document = Document(str(path))
    paragraph = document.paragraphs[0]._p
    for kind in notes:
        paragraph.append(parse_xml(f'<w:r xmlns:w="{W_NS}"><w:{kind[:-1]}Reference w:id="1"/></w:r>'))
    document.save(str(path))
    source = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(source)) as original, zipfile.ZipFile(path, "w") as out:
        for info in original.infolist():
            data = original.read(info.filename)
            if info.filename == "[Content_Types].xml":
                overrides = "".join(f'<Override PartName="/word/{kind}.xml" ContentType="{content}"/>'
                                    for kind, content in NOTE_TYPES.items() if kind in notes)
                data = data.replace(b"</Types>", overrides.encode() + b"</Types>")
            if info.filename == "word/_rels/document.xml.rels":
                rels = "".join(f'<Relationship Id="rIdNote{kind}" Type="{R_NS}/{kind}" Target="{kind}.xml"/>'
                               for kind in notes)
                data = data.replace(b"</Relationships>", rels.encode() + b"</Relationships>")
            out.writestr(info, data)
        for kind, text in notes.items():
            out.writestr(f"word/{kind}.xml", notes_xml(kind, text))
    return path


def part_text(path: Path, member: str) -> str:
    with zipfile.ZipFile(path) as archive:
        return re.sub(r"<[^>]+>", "", archive.read(member).decode())


def test_fields_in_footnotes_endnotes_headers_and_properties_are_checked_and_rendered(tmp_path: Path) -> None:
    path = template(tmp_path / "noter.docx", "Hej {{ namn }}!", footer="{{ kommun }}")
    document = Document(str(path))
    document.sections[0].header.paragraphs[0].text = "Dnr {{ diarienummer }}"
    document.core_properties.title = "Beslut {{ diarienummer }}"
    document.core_properties.subject = "{{ arendetyp }}"
    document.save(str(path))
    letter = DocumentTemplate(with_notes(path, "Enligt {{ lagrum }}.", "Frågor: {{ handlaggare }}"))
    assert letter.fields == {"namn", "kommun", "diarienummer", "arendetyp", "lagrum", "handlaggare"}
    with pytest.raises(TemplateFieldError, match=r"field\(s\) 'arendetyp', 'handlaggare', 'lagrum' that"):
        letter.require(["namn", "kommun", "diarienummer"])
    context = {"namn": "Åsa", "kommun": "Exempelby", "diarienummer": "SN-1", "arendetyp": "Färdtjänst",
               "lagrum": "4 kap. 1 § SoL", "handlaggare": "Karin Ek"}
    partial = {key: value for key, value in context.items() if key not in ("lagrum", "handlaggare")}
    with pytest.raises(TemplateFieldError, match=r"lacks field\(s\) 'handlaggare', 'lagrum' \(missing or"):
        letter.render(partial, tmp_path / "x.docx")
    assert not (tmp_path / "x.docx").exists()
    out = letter.render(context, tmp_path / "brev.docx")
    assert "Enligt 4 kap. 1 § SoL." in part_text(out, "word/footnotes.xml")
    assert "Frågor: Karin Ek" in part_text(out, "word/endnotes.xml")
    written = Document(str(out))
    assert (written.core_properties.title, written.core_properties.subject) == ("Beslut SN-1", "Färdtjänst")
    escaped = letter.render({**context, "arendetyp": "Bygg & <miljö>"}, tmp_path / "brev2.docx")
    assert Document(str(escaped)).core_properties.subject == "Bygg & <miljö>", "properties are text, not XML"
    assert "&amp;amp;" not in part_text(escaped, "docProps/core.xml"), "escaped once, by python-docx"
    assert written.sections[0].header.paragraphs[0].text == "Dnr SN-1"
    assert "{{" not in "".join(part_text(out, m) for m in ["word/document.xml", "word/footnotes.xml"])


def test_nested_attributes_are_checked_in_dicts_objects_and_loop_items(tmp_path: Path) -> None:
    letter = DocumentTemplate(template(
        tmp_path / "n.docx", "{{ mottagare.namn }}", "Telefon: {{ mottagare.telefon }}.",
        "{% for a in atgarder %}{{ a.namn }}: {{ a.beslut | upper }}; {% endfor %}",
        "{{ handlaggare.namn.upper() }} {{ beslut['datum'] }}"))
    assert letter.fields == {"mottagare", "atgarder", "handlaggare", "beslut"}
    assert letter.field_paths == {"mottagare.namn", "mottagare.telefon", "atgarder", "atgarder[].namn",
                                  "atgarder[].beslut", "handlaggare.namn", "beslut.datum"}

    @dataclass
    class Person:
        namn: str

    context: dict[str, Any] = {"mottagare": {"namn": "Åsa"}, "handlaggare": Person("Bo"),
                               "atgarder": [{"namn": "Ramp", "beslut": "beviljas"}, {"namn": "Dörr"}],
                               "beslut": {"datum": "2026-12-02"}}
    assert letter.missing(context) == ["atgarder[1].beslut", "mottagare.telefon"]
    with pytest.raises(TemplateFieldError) as caught:
        letter.render(context, tmp_path / "ut.docx")
    assert str(caught.value) == (f"{tmp_path / 'n.docx'}: the data lacks field(s) 'atgarder[1].beslut', "
                                 "'mottagare.telefon' (missing or empty)")
    assert not (tmp_path / "ut.docx").exists()
    context["mottagare"]["telefon"] = "08-123 45"
    context["atgarder"][1]["beslut"] = "avslås"
    out = letter.render(context, tmp_path / "ut.docx")
    assert text_of(out) == ["Åsa", "Telefon: 08-123 45.", "Ramp: BEVILJAS; Dörr: AVSLÅS; ", "BO 2026-12-02"]
    assert letter.missing({**context, "handlaggare": object()}) == ["handlaggare.namn"]


def test_none_is_missing_unless_allowed_and_then_prints_as_nothing(tmp_path: Path) -> None:
    letter = DocumentTemplate(template(tmp_path / "t.docx", "Telefon: {{ mottagare.telefon }}.",
                                       "Motivering: {{ motivering }}."))
    context = {"mottagare": {"telefon": None}, "motivering": None}
    assert letter.missing(context) == ["motivering", "mottagare.telefon"]
    assert letter.missing(context, allow_none={"motivering"}) == ["mottagare.telefon"]
    assert letter.missing({"mottagare": None, "motivering": "x"}) == ["mottagare"]
    with pytest.raises(TemplateFieldError, match="'motivering', 'mottagare.telefon'"):
        letter.render(context, tmp_path / "ut.docx")
    out = letter.render(context, tmp_path / "ut.docx", allow_none={"motivering", "mottagare.telefon"})
    assert text_of(out) == ["Telefon: .", "Motivering: ."], "never the word None"


@pytest.mark.parametrize(("paragraphs", "footer", "place"), [
    (["Beslut", "Hej {{ namn }"], None, "the body, paragraph 2 ('Hej {{ namn }'): unexpected '}'"),
    (["Beslut", "", "{% endfor %}"], None, "the body, paragraph 3 ('{% endfor %}'): Encountered unknown tag"),
    (["Beslut"], "Sida {{ sida }", "the footer word/footer1.xml, paragraph 1 ('Sida {{ sida }'): unexpected"),
    (["Beslut", "{{ namn | inget_filter }}"], None, "the body, paragraph 2 ('{{ namn | inget_filter }}'): "
     "No filter named 'inget_filter'"),
])
def test_a_syntax_error_names_the_part_the_paragraph_and_its_text(tmp_path: Path, paragraphs: list[str],
                                                                   footer: str | None, place: str) -> None:
    path = template(tmp_path / "trasig.docx", *paragraphs, footer=footer)
    with pytest.raises(InputError) as caught:
        DocumentTemplate(path)
    assert str(caught.value).startswith(f"{path}: the template does not parse: {place}")


def test_a_syntax_error_in_a_footnote_or_a_property_names_it(tmp_path: Path) -> None:
    noted = with_notes(template(tmp_path / "not.docx", "Beslut"), footnote="Enligt {{ lagrum }")
    with pytest.raises(InputError, match=r"not\.docx: the template does not parse: the footnotes, footnote 1 "
                       r"\('Enligt \{\{ lagrum \}'\): unexpected '\}'$"):
        DocumentTemplate(noted)
    path = template(tmp_path / "egenskap.docx", "Beslut")
    document = Document(str(path))
    document.core_properties.title = "Beslut {{ diarienummer"
    document.save(str(path))
    with pytest.raises(InputError, match=r"parse: the document property 'title', line 1: unexpected end"):
        DocumentTemplate(path)


def test_hyperlinks_work_in_the_body_and_in_a_header(tmp_path: Path) -> None:
    path = template(tmp_path / "lank.docx", "Läs mer: {{r lank }}")
    document = Document(str(path))
    document.sections[0].header.paragraphs[0].text = "{{r hemsida }}"
    document.save(str(path))
    letter = DocumentTemplate(path)
    context = {"lank": Hyperlink("beslutet", "https://exempelby.se/beslut?id=1&typ=a"),
               "hemsida": Hyperlink("exempelby.se", "https://exempelby.se/")}
    out = letter.render(context, tmp_path / "brev.docx")
    written = Document(str(out))
    (link,) = written.paragraphs[0].hyperlinks
    assert (link.text, link.url) == ("beslutet", "https://exempelby.se/beslut?id=1&typ=a")
    (home,) = written.sections[0].header.paragraphs[0].hyperlinks
    assert (home.text, home.url) == ("exempelby.se", "https://exempelby.se/")
    with zipfile.ZipFile(out) as archive:
        for member, rels in [("word/document.xml", "word/_rels/document.xml.rels"),
                             ("word/header1.xml", "word/_rels/header1.xml.rels")]:
            ids = set(re.findall(r'<w:hyperlink r:id="([^"]+)"', archive.read(member).decode()))
            assert ids and all(f'Id="{rid}"' in archive.read(rels).decode() for rid in ids), member


def test_a_rich_text_link_made_for_another_document_is_an_error_not_a_damaged_file(tmp_path: Path) -> None:
    letter = DocumentTemplate(template(tmp_path / "lank.docx", "Läs mer: {{r lank }}"))
    with pytest.raises(InputError, match=r"lank\.docx: /word/document\.xml refers to relationship\(s\) rId99 "
                       r"it does not have \(a RichText url_id made for another document\? use shared\."):
        letter.render({"lank": RichText("beslutet", url_id="rId99")}, tmp_path / "brev.docx")
    assert not (tmp_path / "brev.docx").exists()


def test_swedish_filters_and_filters_a_robot_registers(tmp_path: Path) -> None:
    path = template(tmp_path / "f.docx", "{{ belopp | kronor }} per {{ beslutsdatum | datum }}",
                    "{{ personnummer | personnummer_maskat }} {{ namn | versaler }}")
    with pytest.raises(InputError, match="No filter named 'versaler'"):
        DocumentTemplate(path)
    letter = DocumentTemplate(path, filters={"versaler": str.upper})
    out = letter.render({"belopp": 12500, "beslutsdatum": date(2026, 12, 2), "personnummer": "811218-9876",
                         "namn": "Åsa"}, tmp_path / "ut.docx")
    assert text_of(out) == [f"12{NBSP}500 kr per 2 december 2026", "19811218-XXXX ÅSA"]
    with pytest.raises(InputError) as caught:
        letter.render({"belopp": 1, "beslutsdatum": "2026-13-01", "personnummer": "811218-9876",
                       "namn": "Bo"}, tmp_path / "ut2.docx")
    assert str(caught.value) == f"{path}: datum: '2026-13-01' is not a date (YYYY-MM-DD)"
    with pytest.raises(InputError) as caught:
        letter.render({"belopp": 1, "beslutsdatum": "2026-12-01", "personnummer": "811218-9875",
                       "namn": "Bo"}, tmp_path / "ut3.docx")
    assert str(caught.value) == f"{path}: personnummer_maskat: not a valid personnummer"
    assert not (tmp_path / "ut2.docx").exists() and not (tmp_path / "ut3.docx").exists()


@pytest.mark.parametrize(("value", "expected"), [
    (date(2026, 12, 2), "2 december 2026"), (dt.datetime(2026, 1, 31, 23, 59), "31 januari 2026"),
    ("2026-05-01", "1 maj 2026"), (" 2026-03-09 ", "9 mars 2026"), (None, ""), ("", ""),
])
def test_datum_writes_swedish_month_names(value: Any, expected: str) -> None:
    assert format_datum(value) == expected


@pytest.mark.parametrize(("number", "expected"), [
    ("811218-9876", "19811218-XXXX"), ("8112189876", "19811218-XXXX"), ("19811218-9876", "19811218-XXXX"),
    ("121212-1212", "20121212-XXXX"), ("121212+1212", "19121212-XXXX"), ("19121212-1212", "19121212-XXXX"),
    ("811278-9873", "19811278-XXXX"), ("250101-0009", "20250101-XXXX"),
])
def test_personnummer_maskat_shows_the_birth_date_and_masks_the_rest(number: str, expected: str) -> None:
    masked = mask_personnummer(number, today=date(2026, 12, 1))
    assert masked == expected and redact(masked) == masked


def test_personnummer_maskat_refuses_an_invalid_number_without_quoting_it() -> None:
    with pytest.raises(InputError) as caught:
        mask_personnummer("811218-9875")
    assert "9875" not in str(caught.value)


# --- fuzzing: mutated real templates are checked or give one InputError, never a traceback ---

def test_the_fuzzing_seed_is_a_template_with_fields_in_every_part(tmp_path: Path) -> None:
    path = tmp_path / "frö.docx"
    path.write_bytes(seed_template())
    letter = DocumentTemplate(path)
    assert letter.fields == {"mottagare", "atgarder", "belopp", "datum", "diarienummer", "kommun",
                             "handlaggare",
                             "lagrum"}
    assert template_outcome(path) == "checked"


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=mutated(seed_template()))
def test_mutated_templates_are_checked_or_give_one_input_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mutated.docx"
    path.write_bytes(content)
    assert template_outcome(path) in {"checked", "InputError", "ConfigError"}
