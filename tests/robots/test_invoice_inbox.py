"""invoice_inbox on the 40 demo invoices against a real Dovecot and OpenSSH sshd: the register, the
filing, SIGKILLs between outcome and move and between upload and rename, an unknown host key, and no
password or personnummer in any file the runs wrote."""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openpyxl import load_workbook

from demo.build_invoice_demo import DemoInvoice, build
from demo.mail_demo import robot_environment
from demo.servers import MailServer, SftpServer
from shared.audit import AuditLog
from shared.settings import load_settings
from shared.store import open_store
from shared.transfer import sha256_of
from tests.conftest import kansli

MAIL_USER = "leverantorsfakturor"
PASSWORD = "kanariefågel-fakturor-7731"
GOOD, BAD = 36, 4
pytestmark = pytest.mark.slow


@dataclass
class Setup:
    mail: MailServer
    sftp: SftpServer
    import_dir: Path
    invoices: list[DemoInvoice]
    work: Path
    env: dict[str, str]

    def run(self, *extra: str, env: dict[str, str] | None = None) -> int:
        result = kansli("run", "invoice_inbox", "-p", f"upload_dir={self.import_dir}",
                        "-p", f"output_dir={self.work / 'ut'}", *extra, cwd=self.work,
                        env={**self.env, **(env or {})}, timeout=300)
        return result.returncode

    def counts(self) -> tuple[int, int, int]:
        return tuple(self.mail.count(MAIL_USER, folder)  # type: ignore[return-value]
                     for folder in ("INBOX", "Behandlat", "Manuell hantering"))

    def registered(self) -> Counter[str]:
        """How often each invoice number is in the registers that reached the import folder."""
        numbers: Counter[str] = Counter()
        for path in self.import_dir.glob("fakturaregister-*.xlsx"):
            sheet = load_workbook(path).active
            numbers.update(str(row[0]) for row in sheet.iter_rows(min_row=2, values_only=True))
        return numbers


@pytest.fixture
def setup(kansli_env: Path) -> Iterator[Setup]:
    built = build(kansli_env / "fakturor")
    with MailServer({MAIL_USER: PASSWORD}) as mail, SftpServer() as sftp:
        mail.append(MAIL_USER, *(message for _, message in built))
        import_dir = sftp.files / "ekonomi" / "import"
        import_dir.mkdir(parents=True)
        yield Setup(mail, sftp, import_dir, [invoice for invoice, _ in built], kansli_env,
                    robot_environment(mail, sftp, PASSWORD))


def good_numbers(setup: Setup) -> Counter[str]:
    return Counter(invoice.invoice_number for invoice in setup.invoices if invoice.bad is None)


def done_outcomes(work: Path) -> Counter[str]:
    """How often each item ended ``done`` over every run (a re-run's skips are not counted)."""
    store = open_store(load_settings().effective_database_url)
    return Counter(item.key for run in store.list_runs(robot="invoice_inbox", limit=100)
                   for item in store.list_items(run.run_id) if item.outcome == "done")


def test_the_demo_mailbox_registered_delivered_and_filed(setup: Setup) -> None:
    assert setup.run() == 3  # partial: the four bad invoices
    assert setup.counts() == (0, GOOD, BAD)
    assert setup.registered() == good_numbers(setup)
    register = load_workbook(next(setup.import_dir.glob("fakturaregister-*.xlsx"))).active
    header = [cell.value for cell in register[1]]
    assert header[:3] == ["Fakturanummer", "Organisationsnummer", "OCR-nummer"]
    first = next(row for row in register.iter_rows(min_row=2, values_only=True))
    expected = setup.invoices[0]
    assert first[:3] == (expected.invoice_number, expected.supplier.organisation_number, expected.ocr)
    assert float(first[5]) == float(expected.amount)
    staff = load_workbook(next((setup.work / "ut").glob("inkorg-*.xlsx"))).active
    reasons = {row[6]: row[5] for row in staff.iter_rows(min_row=2, values_only=True)
               if row[0] == "Manuell hantering"}
    assert sorted(reasons.values()) == sorted([
        "OCR-nummer har fel kontrollsiffra", "Belopp att betala saknas",
        "PDF-filen saknar text (inskannad bild) – registrera fakturan för hand",
        "Fakturan har redan kommit i ett annat meddelande (dubblett)"])
    audit = AuditLog.from_settings(load_settings())
    uploaded = [event["data"] for event in audit.search(event="file.uploaded")]
    delivered = next(setup.import_dir.glob("fakturaregister-*.xlsx"))
    assert [event["sha256"] for event in uploaded] == [sha256_of(delivered)]
    assert len(list(audit.search(event="mail.filed"))) == GOOD + BAD
    assert setup.run() == 0, "a second run found work"
    assert setup.registered() == good_numbers(setup), "a second run delivered again"


def test_a_sigkill_between_outcome_and_move_files_every_message_once(setup: Setup) -> None:
    assert setup.run(env={"KANSLI_TEST_CRASH_AT": "mailbox.before_move:11"}) == -9
    inbox, done, manual = setup.counts()
    assert inbox == 30 and done + manual == 10
    assert setup.registered() == Counter(), "registered before the crash, delivered after: not yet"
    # The done ones are skipped and just moved; bad ones still in the INBOX are checked again (a
    # business error is no effect, so the ledger does not keep it from a re-run): partial again.
    assert setup.run() == 3
    assert setup.counts() == (0, GOOD, BAD)
    assert setup.registered() == good_numbers(setup)
    assert set(done_outcomes(setup.work).values()) == {1}, "an invoice was processed twice"


def test_a_sigkill_mid_items_then_the_rest(setup: Setup) -> None:
    assert setup.run(env={"KANSLI_TEST_CRASH_AT": "item.recorded:17"}) == -9
    assert setup.counts() == (40, 0, 0)
    assert setup.run() == 3
    assert setup.counts() == (0, GOOD, BAD)
    assert setup.registered() == good_numbers(setup)
    assert set(done_outcomes(setup.work).values()) == {1} and len(done_outcomes(setup.work)) == GOOD


def test_a_sigkill_between_upload_and_rename_delivers_the_register_once(setup: Setup) -> None:
    assert setup.run(env={"KANSLI_TEST_CRASH_AT": "transfer.uploaded:1"}) == -9
    assert setup.counts() == (0, GOOD, BAD), "the messages are filed once the register is in the outbox"
    assert not list(setup.import_dir.glob("fakturaregister-*.xlsx"))
    assert len(list(setup.import_dir.glob(".*.part"))) == 1
    assert setup.run() == 0
    assert setup.registered() == good_numbers(setup)
    assert not list(setup.import_dir.glob(".*.part"))


def test_an_unknown_host_key_fails_the_delivery_and_nothing_is_lost(setup: Setup) -> None:
    wrong = setup.work / "known_hosts"
    other = SftpServer()  # another server's key for the same address
    wrong.write_text(f"[127.0.0.1]:{setup.sftp.port} {other.host_public_key}\n", encoding="ascii")
    other.stop()
    assert setup.run(env={"KANSLI_SFTP__KNOWN_HOSTS": str(wrong)}) == 4  # a configuration error
    assert setup.registered() == Counter()
    assert setup.run() == 0
    assert setup.registered() == good_numbers(setup)


def _identity_numbers(invoices: list[DemoInvoice]) -> set[str]:
    numbers = {invoice.client_personnummer for invoice in invoices if invoice.client_personnummer}
    numbers |= {invoice.supplier.organisation_number for invoice in invoices
                if invoice.supplier.name.startswith("Ängens")}  # a sole trader: a personnummer
    return {form for number in numbers for form in (number, number.replace("-", ""))}


def test_no_password_or_personnummer_in_any_log_report_or_audit_file(setup: Setup) -> None:
    assert setup.run(env={"KANSLI_TEST_CRASH_AT": "mailbox.before_move:5"}) == -9
    assert setup.run() == 3
    secrets = {PASSWORD, *_identity_numbers(setup.invoices)}
    written = [path for root in (setup.work / "data", setup.work / "log") for path in root.rglob("*")
               if path.is_file() and not (path.suffix == ".pdf" and "mail" in path.parts)]
    written += list((setup.work / "ut").glob("inkorg-*.xlsx"))
    assert any(path.name == "report.html" for path in written)
    assert any("audit" in path.parts for path in written)
    leaks = []
    for path in written:
        contents = [path.read_bytes()]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                contents += [archive.read(name) for name in archive.namelist()]
        leaks += [(path, secret) for secret in secrets for content in contents if secret.encode() in content]
    assert not leaks
