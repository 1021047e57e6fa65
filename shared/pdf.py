"""PDF in and out: text and tables out of a PDF, Word documents to archivable PDF/A-2b.

:func:`read_pdf` gives a PDF's text per page and its tables (pdfplumber); a PDF that cannot be
read is one business error naming the file: :class:`PdfEncryptedError` (it needs a password),
:class:`PdfNoTextError` (no text layer: a scanned image), :class:`PdfBrokenError` (not a PDF, or
damaged). A PDF encrypted with an empty user password (permissions only) opens as any viewer opens it.

:func:`pdf_converter` starts ONE LibreOffice for a whole run and converts document after document
through its UNO API (``soffice --convert-to`` per document starts a whole office each time)::

    with pdf_converter(run) as convert:
        convert(Path("beslut.docx"), Path("beslut.pdf"))

Each PDF is written beside its destination, checked to be PDF/A-2b (:func:`check_pdfa`) and only
then renamed into place. LibreOffice is driven by ``_soffice_worker.py`` under the Python that has
``uno`` (Debian ``python3-uno``, the system Python): a JSON line per document over its stdin and
stdout, LibreOffice listening on a named pipe. No port is opened.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pdfplumber
from loguru import logger
from pypdf import PdfReader
from pypdf.errors import LimitReachedError, PdfReadError
from pypdf.generic import DictionaryObject, IndirectObject

from shared.errors import ConfigError, InputError, TargetError
from shared.files import atomic_path
from shared.settings import PdfSettings

if TYPE_CHECKING:
    from shared.runner import Run

WORKER = Path(__file__).with_name("_soffice_worker.py")
PDFA_NS = "http://www.aiim.org/pdfa/ns/id/"
#: A PDF whose page content streams decompress to more than this is refused (a PDF bomb): text
#: extraction would hold it all in memory. Ordinary invoices and letters have a few hundred KB.
MAX_CONTENT_BYTES = 32 * 1024 * 1024
#: PDF/A-2b, and the two levels that include it (2u: also Unicode text; 2a: also tagged structure).
PDFA_2B_CONFORMANCE = {"B", "U", "A"}


class PdfEncryptedError(InputError):
    """The PDF needs a password to be opened."""


class PdfNoTextError(InputError):
    """The PDF has no text layer (a scanned image): it needs OCR or a person."""


class PdfBrokenError(InputError):
    """The file is not a PDF, or is damaged past reading."""


class ConversionError(InputError):
    """LibreOffice could not convert the document (it is not a document it can open)."""


class PdfAError(InputError):
    """A converted PDF is not a valid PDF/A-2b file."""


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PdfContent:
    """A PDF's text, page by page, and its tables (rows of cells, ``None`` for an empty cell)."""

    path: Path
    pages: list[str]
    tables: list[list[list[str | None]]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.pages)


def open_pdf(path: Path) -> PdfReader:
    """``path`` opened by pypdf and decrypted if it only has an owner password, or a clear error."""
    if not path.is_file():
        raise PdfBrokenError(f"{path.name}: file not found")
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfEncryptedError(f"{path.name}: the PDF is encrypted (it needs a password)")
        _ = len(reader.pages)
    except PdfEncryptedError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as error:
        raise PdfBrokenError(f"{path.name}: not a readable PDF ({type(error).__name__})") from None
    except Exception as error:  # noqa: BLE001 - pypdf raises many kinds on damaged files
        raise PdfBrokenError(f"{path.name}: not a readable PDF ({type(error).__name__})") from None
    return reader


def read_pdf(path: Path, *, tables: bool = True) -> PdfContent:
    """The text of every page of ``path`` and, with ``tables``, the tables pdfplumber finds."""
    reader = open_pdf(path)
    _refuse_bombs(reader, path)
    password = "" if reader.is_encrypted else None
    try:
        with pdfplumber.open(path, password=password) as document:
            pages = [page.extract_text() or "" for page in document.pages]
            found = [table for page in document.pages for table in page.extract_tables()] if tables else []
    except Exception as error:  # noqa: BLE001 - pdfminer's syntax errors and the like
        raise PdfBrokenError(f"{path.name}: not a readable PDF ({type(error).__name__})") from None
    if not any(text.strip() for text in pages):
        raise PdfNoTextError(f"{path.name}: the PDF has no text layer (a scanned image?); it needs "
                             "OCR or manual handling")
    return PdfContent(path, pages, found)


def _refuse_bombs(reader: PdfReader, path: Path) -> None:
    """Decode the page contents with pypdf's output limits before pdfplumber decodes them unbounded."""
    total = 0
    try:
        for page in reader.pages:
            contents = page.get_contents()
            total += len(contents.get_data()) if contents is not None else 0
            if total > MAX_CONTENT_BYTES:
                break
    except LimitReachedError:
        total = MAX_CONTENT_BYTES + 1
    except Exception as error:  # noqa: BLE001 - a damaged stream
        raise PdfBrokenError(f"{path.name}: not a readable PDF ({type(error).__name__})") from None
    if total > MAX_CONTENT_BYTES:
        raise PdfBrokenError(f"{path.name}: its pages decompress to more than {MAX_CONTENT_BYTES} bytes; "
                             "refused (a PDF bomb?)")


# -- PDF/A checks -------------------------------------------------------------------------------


def check_pdfa(path: Path, document: str | None = None) -> None:
    """Raise :class:`PdfAError` naming ``document`` unless ``path`` identifies as PDF/A-2b and
    embeds every font it uses.

    veraPDF (the reference validator) is in neither Debian nor PyPI; this checks what a PDF/A-2b
    file must declare (XMP ``pdfaid:part`` 2 and ``pdfaid:conformance`` B/U/A, an output intent
    ``GTS_PDFA1``, no encryption) and the requirement a converter most often misses: fonts embedded.
    """
    name = document or path.name
    try:
        reader = open_pdf(path)
    except InputError as error:
        raise PdfAError(f"{name}: the converted PDF is not readable: {error}") from None
    problems = _pdfa_identification(reader) + _unembedded_fonts(reader)
    if reader.is_encrypted:
        problems.append("it is encrypted")
    if problems:
        raise PdfAError(f"{name}: the converted PDF is not PDF/A-2b: {'; '.join(problems)}")


def _pdfa_identification(reader: PdfReader) -> list[str]:
    xmp = reader.xmp_metadata
    if xmp is None:
        return ["no XMP metadata (no PDF/A identification)"]
    part = _xmp_value(xmp, "part")
    conformance = _xmp_value(xmp, "conformance")
    problems = []
    if part != "2" or (conformance or "").upper() not in PDFA_2B_CONFORMANCE:
        problems.append(f"identifies as PDF/A part {part or '-'} conformance {conformance or '-'}")
    intents = _resolved(_resolved(reader.trailer["/Root"]).get("/OutputIntents")) or []
    subtypes = {str(_resolved(intent).get("/S")) for intent in intents}
    if "/GTS_PDFA1" not in subtypes:
        problems.append("no PDF/A output intent")
    return problems


def _xmp_value(xmp: Any, name: str) -> str | None:
    """``pdfaid:NAME`` as an element or as an attribute of an ``rdf:Description``."""
    for element in xmp.rdf_root.getElementsByTagNameNS(PDFA_NS, name):
        return "".join(node.data for node in element.childNodes if node.nodeType == node.TEXT_NODE).strip()
    for description in xmp.rdf_root.getElementsByTagNameNS("http://www.w3.org/1999/02/22-rdf-syntax-ns#",
                                                            "Description"):
        if description.hasAttributeNS(PDFA_NS, name):
            return str(description.getAttributeNS(PDFA_NS, name)).strip()
    return None


def _unembedded_fonts(reader: PdfReader) -> list[str]:
    missing: set[str] = set()
    seen: set[int] = set()
    for page in reader.pages:
        _fonts_in(page.get("/Resources"), missing, seen)
    return [f"font {font} is not embedded" for font in sorted(missing)]


def _fonts_in(resources: Any, missing: set[str], seen: set[int]) -> None:
    """Walk a resource dictionary (and its form XObjects) collecting fonts without a font file."""
    resources = _resolved(resources)
    if not isinstance(resources, DictionaryObject) or id(resources) in seen:
        return
    seen.add(id(resources))
    for font in (_resolved(resources.get("/Font")) or {}).values():
        font = _resolved(font)
        if font.get("/Subtype") == "/Type3":
            continue  # drawn with PDF operators: nothing to embed
        descendants = [_resolved(d) for d in _resolved(font.get("/DescendantFonts")) or []]
        for candidate in descendants or [font]:
            descriptor = _resolved(candidate.get("/FontDescriptor")) or {}
            if not any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3")):
                missing.add(str(candidate.get("/BaseFont", "?")).lstrip("/"))
    for xobject in (_resolved(resources.get("/XObject")) or {}).values():
        xobject = _resolved(xobject)
        if xobject.get("/Subtype") == "/Form":
            _fonts_in(xobject.get("/Resources"), missing, seen)


def _resolved(value: Any) -> Any:
    return value.get_object() if isinstance(value, IndirectObject) else value


# -- Word to PDF/A through one long-lived LibreOffice ---------------------------------------------


class PdfConverter:
    """One LibreOffice (``soffice``) and its UNO worker, started on first use and kept for every
    document; killed and started again when a document hangs it or it dies."""

    def __init__(self, settings: PdfSettings, profile_root: Path | None = None) -> None:
        self.settings = settings
        self.soffice = self._find_soffice()
        self.profile_root = profile_root
        self._office: subprocess.Popen[bytes] | None = None
        self._worker: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._profile: Path | None = None
        self.converted = 0
        self.starts = 0

    def _find_soffice(self) -> Path:
        found = self.settings.soffice or (Path(p) if (p := shutil.which("soffice")) else None)
        if found is None or not found.exists():
            raise ConfigError("LibreOffice (soffice) not found: `make setup` installs "
                              "libreoffice-writer-nogui, or set KANSLI_PDF__SOFFICE")
        return found

    @property
    def running(self) -> bool:
        return self._office is not None and self._office.poll() is None and self._worker is not None \
            and self._worker.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id of ``soffice`` (its process group), while it runs."""
        return self._office.pid if self._office is not None else None

    def start(self) -> None:
        """Start LibreOffice and the worker, and wait until the worker reaches it."""
        if self.running:
            return
        self.stop()
        self._profile = Path(tempfile.mkdtemp(prefix="kansli-soffice-", dir=self.profile_root))
        pipe = f"kansli-{os.getpid()}-{secrets.token_hex(4)}"
        self._office = subprocess.Popen(
            [str(self.soffice), "--headless", "--invisible", "--nologo", "--norestore", "--nodefault",
             "--nolockcheck", f"-env:UserInstallation={self._profile.as_uri()}",
             f"--accept=pipe,name={pipe};urp;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._worker = self._start_worker(pipe)
        self.starts += 1
        if self._answer(self.settings.start_timeout) != {"ready": True}:
            self.kill()
            raise ConfigError(f"LibreOffice did not start within {self.settings.start_timeout:.0f} s "
                              f"({self.soffice}, UNO through {self.settings.uno_python}: python3-uno?)")
        logger.info("LibreOffice started (pid {})", self._office.pid)

    def _start_worker(self, pipe: str) -> subprocess.Popen[str]:
        if not self.settings.uno_python.exists():
            self.kill()
            raise ConfigError(f"{self.settings.uno_python} not found: the Python with LibreOffice's "
                              "uno module (Debian python3-uno); set KANSLI_PDF__UNO_PYTHON")
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL"))}
        worker = subprocess.Popen(
            [str(self.settings.uno_python), str(WORKER), pipe], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            start_new_session=True,
        )
        self._answers = queue.Queue()
        threading.Thread(target=_forward_lines, args=(worker.stdout, self._answers),
                         name="soffice-worker", daemon=True).start()
        return worker

    def _answer(self, timeout: float) -> dict[str, Any] | None:
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            return None
        return json.loads(line) if line else None

    def __call__(self, source: Path, destination: Path) -> Path:
        """Convert ``source`` (a Word document) to PDF/A-2b at ``destination``; returns it."""
        if not source.is_file():
            raise ConversionError(f"{source.name}: file not found")
        self.start()
        with atomic_path(destination) as temporary:
            self._convert(source.resolve(), temporary.resolve())
            check_pdfa(temporary, source.name)
        self.converted += 1
        return destination

    def _convert(self, source: Path, target: Path) -> None:
        assert self._worker is not None and self._worker.stdin is not None
        started = time.monotonic()
        try:
            self._worker.stdin.write(json.dumps({"source": str(source), "target": str(target)}) + "\n")
            self._worker.stdin.flush()
        except OSError:
            self.kill()
            raise TargetError(f"{source.name}: LibreOffice ended before the conversion") from None
        answer = self._answer(self.settings.timeout)
        if answer is None:
            waited = time.monotonic() - started
            self.kill()
            raise TargetError(f"{source.name}: LibreOffice did not convert it in {waited:.0f} s "
                              "(it was stopped; the next document starts it again)")
        if "error" in answer and not self.running:
            self.kill()
            raise TargetError(f"{source.name}: LibreOffice ended during the conversion")
        if "error" in answer:
            raise ConversionError(f"{source.name}: LibreOffice could not convert it: {answer['error']}")

    def stop(self, timeout: float = 10.0) -> None:
        """End the worker and LibreOffice (politely, then by SIGKILL)."""
        if self._worker is not None and self._worker.stdin is not None:
            try:
                self._worker.stdin.close()
            except OSError:
                pass
        for process in (self._worker, self._office):
            _end_group(process, signal.SIGTERM, timeout)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the worker and LibreOffice at once (after a failure)."""
        for process in (self._worker, self._office):
            _end_group(process, signal.SIGKILL, 5.0)
        self._forget()

    def _forget(self) -> None:
        self._office = self._worker = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None


def _forward_lines(stream: IO[str] | None, answers: queue.Queue[str | None]) -> None:
    if stream is not None:
        for line in stream:
            answers.put(line)
    answers.put(None)  # the worker ended


def _end_group(process: subprocess.Popen[Any] | None, sig: signal.Signals, timeout: float) -> None:
    """Signal the process group of ``process`` (soffice forks soffice.bin) and reap it."""
    if process is None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout)


@contextmanager
def pdf_converter(run: Run | None = None, settings: PdfSettings | None = None) -> Iterator[PdfConverter]:
    """A :class:`PdfConverter` for the run (``run.settings.pdf``); LibreOffice stops on leaving,
    and is killed at once when the block fails."""
    if settings is None:
        if run is None:
            from shared.settings import get_settings

            settings = get_settings().pdf
        else:
            settings = run.settings.pdf
    converter = PdfConverter(settings)
    try:
        yield converter
    except BaseException:
        converter.kill()
        raise
    converter.stop()


Converter = Callable[[Path, Path], Path]
