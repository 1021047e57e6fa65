"""Every code example of the docs site is run, so a stale example fails CI.

The conventions of docs/ (docs/index.md, "About these pages"):

* a fenced ``python`` block titled ``robots/NAME.py`` is a robot module: it is written into a robots
  package of the test's own; ``tests/NAME.py`` is a test of a robot repo, ``toml`` titled
  ``pyproject.toml`` that repo's configuration, ``text`` titled ``templates/NAME.docx`` a Word
  template (one paragraph per line);
* ``<!-- register: NAME.xlsx -->`` before a Markdown table: that table is a register (an .xlsx the
  page's commands read; numbers and ISO dates typed as such);
* the ``sh`` blocks after a page's first titled block are run in order as they stand, in the
  page's working directory: ``kansli ...`` through the real CLI (exit code 0, or 3 for a run that is
  partial on purpose), ``python -m pytest ...`` as pytest (exit code 0);
* every ``python`` block of docs/ is titled: a fragment nobody runs goes stale.

Each page with examples has a scenario below: it lays out the page's files, runs its commands and
checks what they wrote (the letters, the results workbook, the queue), and what the prose says of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from fpdf import FPDF
from openpyxl import Workbook, load_workbook

from demo.servers import MailServer, SftpServer
from demo.site.store import CaseStore
from shared.errors import InputError
from shared.pdf import PdfNoTextError, check_pdfa, read_pdf
from shared.queue import WorkQueue
from shared.runner import Runner
from shared.settings import load_settings, reset_settings
from shared.store import open_store
from shared.testing import kansli
from tests.conftest import REPO
from tests.shared.test_mailbox import message as mail_message
from tests.shared.test_pdf import fpdf_invoice, scanned_pdf, word_letter

DOCS = REPO / "docs"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
TITLE = re.compile(r'title="([^"]+)"')
REGISTER = re.compile(r"<!--\s*register:\s*(\S+)\s*-->\s*\n((?:\|[^\n]*\n)+)")
KINDS = {"python": ("robots/", "tests/", "scripts/"), "toml": ("pyproject.toml",), "text": ("templates/",)}


@dataclass(frozen=True)
class Block:
    lang: str
    title: str | None
    code: str
    offset: int


@dataclass
class Page:
    name: str
    text: str
    blocks: list[Block]

    @classmethod
    def read(cls, name: str) -> Page:
        text = (DOCS / name).read_text(encoding="utf-8")
        blocks = []
        for match in FENCE.finditer(text):
            title = TITLE.search(match["attrs"])
            blocks.append(Block(match["lang"], title[1] if title else None, match["code"], match.start()))
        return cls(name, text, blocks)

    def files(self, prefix: str) -> dict[str, str]:
        """Titled blocks whose title starts with ``prefix``: file name → text."""
        return {block.title.removeprefix(prefix): block.code for block in self.blocks
                if block.title and block.title.startswith(prefix)}

    def commands(self) -> list[str]:
        """The lines of the sh blocks after the first titled block, in order."""
        first = min((block.offset for block in self.blocks if block.title), default=len(self.text))
        return [line for block in self.blocks if block.lang == "sh" and block.offset > first
                for line in block.code.splitlines() if line.strip()]

    def registers(self) -> dict[str, list[list[Any]]]:
        found = {}
        for match in REGISTER.finditer(self.text):
            lines = [line.strip().strip("|").split("|") for line in match[2].splitlines()]
            found[match[1]] = [[_typed(cell.strip()) for cell in line] for index, line in enumerate(lines)
                               if index != 1]  # the |---| line
        return found

    def says(self, text: str) -> bool:
        """The page's prose says ``text`` (whitespace and emphasis aside)."""
        return " ".join(text.split()) in " ".join(self.text.replace("*", "").split())


def _typed(cell: str) -> Any:
    if re.fullmatch(r"-?\d+", cell):
        return int(cell)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", cell):
        return date.fromisoformat(cell)
    return cell


def all_pages() -> list[str]:
    return sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))


# -- laying out a page's files and running its commands --------------------------------------------


def write_files(files: dict[str, str], folder: Path) -> list[Path]:
    written = []
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def write_templates(page: Page, root: Path) -> None:
    for name, text in page.files("templates/").items():
        document = Document()
        for line in text.splitlines():
            document.add_paragraph(line)
        (root / "templates").mkdir(parents=True, exist_ok=True)
        document.save(str(root / "templates" / name))


def write_register(rows: list[list[Any]], path: Path) -> Path:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def robots_package(page: Page, root: Path, monkeypatch: pytest.MonkeyPatch, name: str | None = None) -> str:
    """The page's robot modules as a package of their own under ``root``, found by the runner and CLI."""
    package = name or f"docs_robots_{uuid.uuid4().hex[:8]}"
    modules = write_files({"__init__.py": "", **page.files("robots/")}, root / package)
    assert_ruff_clean(modules)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("KANSLI_ROBOTS_PACKAGE", package)
    reset_settings()
    return package


def assert_ruff_clean(paths: list[Path]) -> None:
    """Examples keep the house style (ruff with the project's settings)."""
    ruff = Path(sys.executable).parent / "ruff"
    first_party = 'lint.isort.known-first-party = ["shared"]'  # the examples live outside the repo
    result = subprocess.run([str(ruff), "check", "--no-cache", "--config", str(REPO / "pyproject.toml"),
                             "--config", first_party, *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def run_commands(page: Page, cwd: Path, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Run the page's commands as they stand; each one's output, for the checks."""
    outputs = []
    assert page.commands(), f"{page.name}: no commands to run"
    for line in page.commands():
        words = shlex.split(line, comments=True)
        if words[0] in ("kansli", ".venv/bin/kansli"):
            result = kansli(*words[1:], cwd=cwd, env=env)
            allowed = (0, 3) if words[1:2] == ["run"] else (0,)
        elif words[:3] == ["python", "-m", "pytest"]:
            result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *words[3:]],
                                    cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
            allowed = (0,)
        else:
            raise AssertionError(f"{page.name}: {line!r} is not a command the docs test can run "
                                 "(kansli ..., python -m pytest ...): show it in a text block")
        assert result.returncode in allowed, f"{page.name}: {line}\n{result.stdout}\n{result.stderr}"
        outputs.append((line, result.stdout))
    return outputs


def sheet_column(path: Path, header: str) -> dict[int, Any]:
    sheet = load_workbook(path).worksheets[0]
    column = [cell.value for cell in sheet[1]].index(header) + 1
    return {number: sheet.cell(number, column).value for number in range(2, sheet.max_row + 1)}


def letter_text(path: Path) -> str:
    return "\n".join(paragraph.text for paragraph in Document(str(path)).paragraphs)


# -- the pages -------------------------------------------------------------------------------------


def scenario_robots(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The author's guide: the payment reminders robot on the page's register, then a grown one; the
    case numbers robot against the demo e-service (with two of the page's three references)."""
    page = Page.read("robots.md")
    root = tmp_path / "site"
    robots_package(page, root, monkeypatch)
    write_templates(page, root)
    registers = page.registers()
    for name, rows in registers.items():
        write_register(rows, work / name)
    site = request.getfixturevalue("eservice")  # the demo e-service; KANSLI_ESERVICE__* point at it
    case = {"applicant_name": "Anna Lindqvist", "personnummer": "19811218-9876", "email": "anna@example.se",
            "phone": "070-123 45 67", "address": "Storgatan 1", "postal_code": "123 45", "city": "Exempelby",
            "case_type": "Färdtjänst", "start_date": "2027-01-04", "description": "Resor till jobbet",
            "attachment_size": 0}
    cases = CaseStore(site.config.db_path)
    submitted = {reference: cases.add({**case, "reference": reference}) for reference in ("PA-2026-0001",
                                                                                          "PA-2026-0002")}
    outputs = dict(run_commands(page, work))
    looked_up = work / "var" / "out" / "case_numbers" / "referenser-resultat.xlsx"
    numbers = sheet_column(looked_up, "Ärendenummer")
    assert (numbers[2], numbers[3]) == (submitted["PA-2026-0001"], submitted["PA-2026-0002"])
    assert not numbers[4]
    assert sheet_column(looked_up, "Status") == {2: "klar", 3: "klar", 4: "fel i data"}
    assert page.says("row 4 marked `fel i data`")
    register = ("paminnelser.xlsx", registers["paminnelser.xlsx"])
    assert "payment_reminders" in outputs[next(line for line in outputs if line.startswith("kansli robots"))]

    out = work / "var" / "out" / "payment_reminders"
    assert sorted(path.name for path in out.glob("*.docx")) == [
        "paminnelse-F-2026-1001.docx", "paminnelse-F-2026-1002.docx"]
    letter = letter_text(out / "paminnelse-F-2026-1001.docx")
    assert "Anna Lindqvist" in letter and "1\xa0250 kr" in letter and "2026-10-31" in letter
    assert "{{" not in letter and "Påminnelse om betalning" in letter
    results = out / "paminnelser-resultat.xlsx"
    statuses = sheet_column(results, "Status")
    assert statuses == {2: "klar", 3: "klar", 4: "fel i data", 5: None, 6: "fel i data"}
    errors = sheet_column(results, "Fel")
    assert page.says(errors[4]), f"the page does not say the results workbook's {errors[4]!r}"
    assert "F-2026-1002" in errors[6] and "rad 3 och rad 6" in errors[6]
    assert page.says("rows 2 and 3 `klar`") and page.says("row 5 empty (not due)")

    # "Run it again tomorrow on a grown register, sorted anew and saved as another file"
    header, *rows = register[1]
    grown = [header, ["F-2026-1005", "Eva Ek", "Ekvägen 5", 12349, "Exempelby", 300, date(2026, 11, 30)],
             *reversed(rows)]
    (work / "arkiv").mkdir()
    elsewhere = write_register(grown, work / "arkiv" / "paminnelser-v2.xlsx")
    record = Runner().run("payment_reminders", {"input": elsewhere, "today": "2026-12-02"})
    assert (record.items_done, record.items_skipped) == (1, 2)
    assert (out / "paminnelse-F-2026-1005.docx").is_file()


def scenario_queues(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Keys and queues: the producer and the consumer, then the operators' queue commands."""
    page = Page.read("queues.md")
    robots_package(page, tmp_path / "site", monkeypatch)
    inbox = work / "inkorg"
    inbox.mkdir()
    for number, name in ((41, "Anna Lindqvist"), (42, ""), (43, "Björn Åkesson")):
        reference = f"PA-2026-{number:04d}"
        application = {"referens": reference, "namn": name, "arendetyp": "Färdtjänst"}
        text = json.dumps(application, ensure_ascii=False)
        (inbox / f"{reference}.json").write_text(text, encoding="utf-8")
    run_commands(page, work)

    cases = work / "var" / "out" / "cases"
    assert sorted(path.name for path in cases.glob("*.json")) == ["PA-2026-0041.json", "PA-2026-0043.json"]
    assert json.loads((cases / "PA-2026-0043.json").read_text(encoding="utf-8"))["namn"] == "Björn Åkesson"
    queue = WorkQueue(open_store(load_settings().effective_database_url), "intake")
    assert queue.get("PA-2026-0041") is None  # forgotten
    states = {key: getattr(queue.get(key), "status", None) for key in ("PA-2026-0042", "PA-2026-0043")}
    assert states == {"PA-2026-0042": "pending", "PA-2026-0043": "done"}


def scenario_testing(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Testing a robot: the page's test and configuration, in a robot repo of its own, by pytest."""
    page, guide = Page.read("testing.md"), Page.read("robots.md")
    repo = tmp_path / "exempelby-robotar"
    (configuration,) = page.files("pyproject.toml").values()
    package = tomllib.loads(configuration)["tool"]["pytest"]["ini_options"]["kansli_robots_package"]
    write_files({"pyproject.toml": configuration}, repo)
    tests = write_files({f"tests/{name}": text for name, text in page.files("tests/").items()}, repo)
    assert_ruff_clean(tests)
    write_files({"__init__.py": "", **guide.files("robots/")}, repo / package)
    write_templates(guide, repo)
    env = {name: value for name, value in os.environ.items()
           if name != "PYTHONPATH" and not name.startswith("KANSLI_")}
    ((_, output),) = run_commands(page, repo, env)
    collected = sum(len(re.findall(r"^def test_", test, re.M)) for test in page.files("tests/").values())
    assert f"{collected} passed" in output, output


def scenario_audit(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The audit trail: the developers' script writes and verifies a trail, with and without a key;
    the auditors' independent check accepts it, and refuses it once a line is edited."""
    page = Page.read("audit.md")
    scripts = page.files("scripts/")
    checker: dict[str, Any] = {}
    exec(compile(scripts["check_trail.py"], "check_trail.py", "exec"), checker)  # the page's own code
    write_files({"audit_api.py": scripts["audit_api.py"]}, work)
    for key in (None, "revisionsnyckel-2026"):
        log_dir = work / ("log-keyed" if key else "log")  # one trail per database: one data dir each
        env = {**os.environ, "PYTHONPATH": str(REPO), "KANSLI_LOG_DIR": str(log_dir),
               "KANSLI_DATA_DIR": str(work / ("data-keyed" if key else "data")),
               **({"KANSLI_AUDIT__KEY": key} if key else {})}
        for _ in range(2):
            result = subprocess.run([sys.executable, "audit_api.py"], cwd=work, capture_output=True,
                                    text=True, env=env, timeout=120)
            assert result.returncode == 0, result.stderr
        assert "run.finished 20261125-142001-123-a1b2" in result.stderr
        days = sorted((log_dir / "audit").glob("*.jsonl"))
        assert days
        prev, seq = "0" * 64, 1
        for day in days:
            count, prev = checker["check"](day, prev=prev, seq=seq, key=key)
            seq = count + 1
        assert seq - 1 == 2
        lines = days[-1].read_text(encoding="utf-8").splitlines()
        lines[-1] = lines[-1].replace('"items_done":12', '"items_done":13')
        days[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
        with pytest.raises(AssertionError):
            checker["check"](days[-1], key=key)


def last_run(robot: str) -> Any:
    """The newest run of ``robot`` in the run history."""
    (record,) = open_store(load_settings().effective_database_url).list_runs(robot=robot, limit=1)
    return record


def scenario_mailbox(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The shared mailbox: the page's robot against a real Dovecot with three messages, run twice."""
    page = Page.read("mailbox.md")
    robots_package(page, tmp_path / "site", monkeypatch)
    user, password = "ansokningar", "brevlåda-lösen-2026"
    with MailServer({user: password}) as server:
        for name, value in {"HOST": "127.0.0.1", "PORT": str(server.imaps_port), "SECURITY": "tls",
                            "CA_FILE": str(server.ca_file), "USERNAME": user, "PASSWORD": password}.items():
            monkeypatch.setenv(f"KANSLI_MAILBOX__{name}", value)
        server.append(user, mail_message("Ansökan färdtjänst", message_id="<ansokan-1@exempelby.se>",
                                         attachments=[("ansökan.pdf", b"%PDF-1.4 ett\n")]),
                      mail_message("Ansökan parkeringstillstånd", message_id="<ansokan-2@exempelby.se>",
                                   attachments=[("ansökan.pdf", "%PDF-1.4 två\n".encode())]),
                      mail_message("Ansökan (glömde bilagan)", message_id="<ansokan-3@exempelby.se>",
                                   attachments=[]))
        run_commands(page, work)
        first = last_run("mailed_applications")
        assert (first.status, first.items_done, first.items_business_error) == ("partial", 2, 1)
        assert page.says("the run is partial (exit code 3)")
        cases = work / "var" / "out" / "ansokningar"
        saved = {path.relative_to(cases).as_posix(): path.read_bytes() for path in cases.rglob("*.pdf")}
        assert saved == {"ansokan-1@exempelby.se/ansökan.pdf": b"%PDF-1.4 ett\n",
                         "ansokan-2@exempelby.se/ansökan.pdf": "%PDF-1.4 två\n".encode()}
        counts = {folder: server.count(user, folder)
                  for folder in ("INBOX", "Behandlat", "Manuell hantering")}
        assert counts == {"INBOX": 0, "Behandlat": 2, "Manuell hantering": 1}
        items = open_store(load_settings().effective_database_url).list_items(first.run_id)
        refused = [item.error_class for item in items if item.outcome == "business_error"]
        assert refused == ["NoAttachmentError"]
        run_commands(page, work)  # "Run it again and there is nothing left to do"
        assert (last_run("mailed_applications").items_total, server.count(user, "Behandlat")) == (0, 2)
        assert page.says("files those two messages in `Behandlat`; the third is a business error "
                         "(`NoAttachmentError`) and goes to `Manuell hantering`")


def scenario_pdf(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """PDF in and out: the page's script on an invoice, a scanned one and a letter; the page's robot
    archiving a folder of decisions (one broken) through the real LibreOffice, then again."""
    page = Page.read("pdf.md")
    (script,) = write_files(page.files("scripts/"), tmp_path / "scripts")
    assert_ruff_clean([script])
    lines: dict[str, Any] = {}
    exec(compile(script.read_text(encoding="utf-8"), script.name, "exec"), lines)  # the page's own code
    invoice = fpdf_invoice(tmp_path / "faktura.pdf")
    assert lines["invoice_lines"](invoice) == [["Städning", "4", "1 200,00"], ["Fönsterputs", "1", "450,50"]]
    assert page.says('[["Städning", "4", "1 200,00"], ["Fönsterputs", "1", "450,50"]]')
    assert "Öresunds Städ AB" in lines["invoice_text"](invoice)
    with pytest.raises(PdfNoTextError):
        lines["invoice_lines"](scanned_pdf(tmp_path / "skannad.pdf"))
    note = FPDF()
    note.add_page()
    note.set_font("Helvetica", size=12)
    note.cell(0, 10, "Påminnelse: faktura 2026-117 är obetald")
    note.output(str(tmp_path / "paminnelse.pdf"))
    with pytest.raises(InputError, match="paminnelse.pdf: no table of invoice lines"):
        lines["invoice_lines"](tmp_path / "paminnelse.pdf")
    robots_package(page, tmp_path / "site", monkeypatch)
    decisions = work / "beslut"
    decisions.mkdir()
    for number in (1, 2):
        word_letter(decisions / f"beslut-{number}.docx",
                    f"Beslut om färdtjänst nummer {number} för Åsa Öberg")
    (decisions / "trasig.docx").write_bytes(b"PK\x03\x04 inget dokument")
    run_commands(page, work)
    archive = work / "var" / "out" / "arkiv"
    assert sorted(path.name for path in archive.iterdir()) == ["beslut-1.pdf", "beslut-2.pdf"]
    for number in (1, 2):
        check_pdfa(archive / f"beslut-{number}.pdf")
        assert f"nummer {number} för Åsa Öberg" in read_pdf(archive / f"beslut-{number}.pdf").text
    first = last_run("archive_pdfs")
    assert (first.status, first.items_done, first.items_business_error) == ("partial", 2, 1)
    items = open_store(load_settings().effective_database_url).list_items(first.run_id)
    assert [item.error_class for item in items if item.outcome == "business_error"] == ["ConversionError"]
    run_commands(page, work)  # "A second run converts nothing more"
    again = last_run("archive_pdfs")
    assert (again.items_done, again.items_skipped, again.items_business_error) == (0, 2, 1)
    # "--rerun-all asks archived first": only the document whose PDF is gone is converted again
    (archive / "beslut-1.pdf").unlink()
    kept = (archive / "beslut-2.pdf").stat().st_mtime_ns
    redone = Runner().run("archive_pdfs", {"folder": "beslut"}, rerun_all=True)
    assert redone.status == "partial" and (archive / "beslut-1.pdf").is_file()
    assert (archive / "beslut-2.pdf").stat().st_mtime_ns == kept, "a PDF in place was converted again"
    check_pdfa(archive / "beslut-1.pdf")
    assert page.says("only those whose PDF is no longer in `var/out/arkiv` are converted again")


def scenario_transfer(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """File transfer: the page's robot against a real sshd, with absolute remote folders; run again,
    then once more after the partner changed a file in place."""
    page = Page.read("transfer.md")
    robots_package(page, tmp_path / "site", monkeypatch)
    with SftpServer() as server:
        for name, value in {"HOST": "127.0.0.1", "PORT": str(server.port), "USERNAME": "root",
                            "KEY_FILE": str(server.client_key),
                            "KNOWN_HOSTS": str(server.known_hosts)}.items():
            monkeypatch.setenv(f"KANSLI_SFTP__{name}", value)
        reset_settings()
        outgoing, receipts = server.files / "ut", server.files / "kvitton"
        outgoing.mkdir()
        receipts.mkdir()
        (outgoing / "betalningar-1.csv").write_text("referens;belopp\nF-1;1250\n", encoding="utf-8")
        (outgoing / "betalningar-2.csv").write_text("referens;belopp\nF-2;980\n", encoding="utf-8")
        (outgoing / ".betalningar-3.csv.4f2a.part").write_text("referens;bel", encoding="utf-8")
        params = {"remote_in": str(outgoing), "remote_receipts": str(receipts)}
        assert page.says("-p remote_in=/utbyte/ut -p remote_receipts=/utbyte/kvitton")
        first = Runner().run("partner_exchange", params)
        local = work / "var" / "out" / "partner"
        assert (first.status, first.items_done) == ("succeeded", 2)
        assert sorted(path.name for path in local.iterdir()) == [
            "betalningar-1.csv", "betalningar-1.csv.kvitto", "betalningar-2.csv", "betalningar-2.csv.kvitto"]
        digest = hashlib.sha256((outgoing / "betalningar-1.csv").read_bytes()).hexdigest()
        receipt = (receipts / "betalningar-1.csv.kvitto").read_text(encoding="utf-8")
        assert receipt == f"betalningar-1.csv {digest}\n"
        assert sorted(path.name for path in receipts.iterdir()) == ["betalningar-1.csv.kvitto",
                                                                     "betalningar-2.csv.kvitto"]
        again = Runner().run("partner_exchange", params)
        assert (again.items_done, again.items_skipped) == (0, 2)
        (outgoing / "betalningar-2.csv").write_text("referens;belopp\nF-2;990\nF-3;15\n", encoding="utf-8")
        changed = Runner().run("partner_exchange", params)
        assert (changed.items_done, changed.items_skipped) == (1, 1)
        assert "F-3;15" in (local / "betalningar-2.csv").read_text(encoding="utf-8")
        assert page.says("The next run fetches nothing") and page.says("it is fetched again")
        deliver_payments_once(server, work)
        assert page.says("a run delivers one file of two lines; the third payment is a business error")
        assert page.says("the next file holds only that one") and page.says("delivers the file, once")


def deliver_payments_once(server: SftpServer, work: Path) -> None:
    """The outbox robot of transfer.md: delivered once, nothing twice, and a kill before the rename."""
    payments, imported = work / "betalningar", server.files / "import"
    payments.mkdir()
    imported.mkdir()
    for reference, amount in (("B-2026-001", "1250"), ("B-2026-002", ""), ("B-2026-003", "980,50")):
        order = {"referens": reference, "belopp": amount, "mottagare": "Öresunds Städ AB"}
        (payments / f"{reference}.json").write_text(json.dumps(order, ensure_ascii=False), encoding="utf-8")
    params = {"folder": str(payments), "import_dir": str(imported)}

    def delivered() -> list[list[str]]:
        return [path.read_text(encoding="utf-8").splitlines()[1:] for path in sorted(imported.glob("*.csv"))]

    first = Runner().run("payment_file", params)
    assert (first.status, first.items_done, first.items_business_error) == ("partial", 2, 1)
    assert delivered() == [["B-2026-001;1250", "B-2026-003;980,50"]]
    Runner().run("payment_file", params)
    assert len(delivered()) == 1, "a payment was delivered twice"
    (payments / "B-2026-004.json").write_text('{"referens": "B-2026-004", "belopp": "15"}', encoding="utf-8")
    Runner().run("payment_file", params)
    assert delivered()[1:] == [["B-2026-004;15"]]
    (payments / "B-2026-005.json").write_text('{"referens": "B-2026-005", "belopp": "70"}', encoding="utf-8")
    words = ["run", "payment_file", "-p", f"folder={payments}", "-p", f"import_dir={imported}"]
    killed = kansli(*words, env={"KANSLI_TEST_CRASH_AT": "transfer.uploaded"})
    assert killed.returncode == -9, killed.stderr
    assert len(delivered()) == 2 and [path.name for path in imported.glob(".*.part")]
    assert kansli(*words).returncode in (0, 3)
    assert delivered()[2:] == [["B-2026-005;70"]] and not list(imported.glob(".*.part"))


Scenario = Callable[[Path, Path, pytest.MonkeyPatch, pytest.FixtureRequest], None]
SCENARIOS: dict[str, Scenario] = {
    "robots.md": scenario_robots, "queues.md": scenario_queues, "testing.md": scenario_testing,
    "audit.md": scenario_audit, "mailbox.md": scenario_mailbox, "pdf.md": scenario_pdf,
    "transfer.md": scenario_transfer,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.browser] * (name == "robots.md"))
                                  for name in sorted(SCENARIOS)])
def test_the_examples_of_a_page_run(name: str, tmp_path: Path, kansli_env: Path,
                                    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    SCENARIOS[name](tmp_path, kansli_env, monkeypatch, request)


@pytest.mark.parametrize("name", all_pages())
def test_every_example_is_one_the_test_runs(name: str) -> None:
    """Every python block is titled; a page with titled blocks or registers has a scenario."""
    page = Page.read(name)
    for block in page.blocks:
        kinds = KINDS.get(block.lang)
        if block.lang == "python" or block.title is not None:
            assert block.title is not None, f"{name}: an untitled python block at offset {block.offset}"
            assert kinds and block.title.startswith(kinds), f"{name}: {block.lang} titled {block.title}"
    if any(block.title for block in page.blocks) or page.registers():
        assert name in SCENARIOS, f"{name} has examples but no scenario in {Path(__file__).name}"


def test_the_conventions_find_what_they_should() -> None:
    """The parser is no test that cannot fail: it finds the author's guide's robot, register and template."""
    page = Page.read("robots.md")
    assert set(page.files("robots/")) == {"payment_reminders.py", "case_numbers.py"}
    assert set(page.files("templates/")) == {"paminnelse.docx"}
    rows = page.registers()["paminnelser.xlsx"]
    assert rows[0][0] == "Fakturanummer" and rows[1][6] == date(2026, 10, 31)
    assert page.registers()["referenser.xlsx"][1:] == [["PA-2026-0001", "inskickad i måndags"],
                                                       ["PA-2026-0002", ""], ["PA-2026-9999", "finns inte"]]
    assert any(line.startswith("kansli run payment_reminders") for line in page.commands())
    assert all(name in SCENARIOS for name in all_pages() if Page.read(name).files("robots/"))
