"""Letters to PDF/A-2b per second: one long-lived LibreOffice against one `soffice` per letter.

Kansli: ``shared.pdf.pdf_converter`` starts LibreOffice once and converts every letter through
its UNO API, writing each PDF to a temp name, checking it is PDF/A-2b (XMP identification, output
intent, fonts embedded) and renaming it into place. The start of LibreOffice is counted.
Baseline (the naive script): ``soffice --headless --convert-to pdf:writer_pdf_Export:{PDF/A-2}``
once per letter, with one user profile kept between the calls (a fresh profile per call would be
slower still), no check. Target: Kansli >= 5x the naive script's letters per second.

    .venv/bin/python bench/pdf.py [--letters 100]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo.scale import scaled_register  # noqa: E402
from robots.decision_letters import DEFAULT_TEMPLATE, Application, letter_context  # noqa: E402
from shared.documents import DocumentTemplate  # noqa: E402
from shared.excel import read_rows  # noqa: E402
from shared.pdf import check_pdfa, pdf_converter  # noqa: E402
from shared.settings import PdfSettings  # noqa: E402

PDFA_FILTER = 'pdf:writer_pdf_Export:{"SelectPdfVersion":{"type":"long","value":"2"}}'


def letters(work: Path, count: int) -> list[Path]:
    """``count`` decision letters (.docx) from the demo register, scaled up."""
    register = scaled_register(work / "register.xlsx", count * 2)
    template = DocumentTemplate(DEFAULT_TEMPLATE)
    out = work / "docx"
    made: list[Path] = []
    for row in read_rows(register, Application):
        if row.model is None:
            continue
        made.append(template.render(letter_context(row.model), out / f"beslut-{len(made):04d}.docx"))
        if len(made) == count:
            break
    return made


def long_lived(documents: list[Path], out: Path) -> float:
    out.mkdir()
    started = time.perf_counter()
    with pdf_converter(settings=PdfSettings()) as convert:
        for document in documents:
            convert(document, out / document.with_suffix(".pdf").name)
    return time.perf_counter() - started


def naive(documents: list[Path], out: Path, profile: Path) -> float:
    out.mkdir()
    soffice = shutil.which("soffice") or "soffice"
    started = time.perf_counter()
    for document in documents:
        subprocess.run([soffice, "--headless", "--norestore", f"-env:UserInstallation={profile.as_uri()}",
                        "--convert-to", PDFA_FILTER, "--outdir", str(out), str(document)],
                       check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kansli-bench-pdf-") as folder:
        work = Path(folder)
        documents = letters(work, args.letters)
        profile = work / "profile"
        subprocess.run([shutil.which("soffice") or "soffice", "--headless", "--terminate_after_init",
                        f"-env:UserInstallation={profile.as_uri()}"], check=True, capture_output=True)
        kansli = long_lived(documents, work / "kansli")
        baseline = naive(documents, work / "naive", profile)
        for pdf in (work / "naive").glob("*.pdf"):
            check_pdfa(pdf)  # the naive output is PDF/A too: the same work was done
        n = len(documents)
        print(f"{n} letters to PDF/A-2b")
        print(f"{'path':<52} {'seconds':>8} {'letters/s':>10}")
        for name, seconds in (("soffice --convert-to, one process per letter", baseline),
                              ("kansli pdf_converter, one LibreOffice (start incl.)", kansli)):
            print(f"{name:<52} {seconds:>8.2f} {n / seconds:>10.2f}")
        print(f"kansli / naive: {baseline / kansli:.1f}x (target >= 5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
