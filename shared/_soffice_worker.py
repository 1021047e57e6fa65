"""Drives one LibreOffice process through its UNO API; run by the Python that has ``uno``.

Not imported by Kansli: :class:`shared.pdf.PdfConverter` starts it as
``/usr/bin/python3 _soffice_worker.py PIPE_NAME`` (Debian's ``python3-uno`` belongs to the system
Python, not to a virtualenv's). It connects to the ``soffice`` listening on the named pipe, says
``{"ready": true}`` on stdout, then answers one JSON line per request line on stdin::

    {"source": "/abs/in.docx", "target": "/abs/out.pdf"}  ->  {"ok": true} | {"error": "..."}

Only the standard library and ``uno`` here: this file runs outside the virtualenv.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import uno
from com.sun.star.beans import PropertyValue

CONNECT_SECONDS = 60.0


def prop(name: str, value: Any) -> Any:
    return PropertyValue(Name=name, Value=value)


def connect(pipe_name: str) -> Any:
    """The LibreOffice desktop behind ``pipe_name``, waiting for soffice to start listening."""
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        try:
            context = resolver.resolve(f"uno:pipe,name={pipe_name};urp;StarOffice.ComponentContext")
            break
        except Exception:  # noqa: BLE001 - NoConnectException until soffice listens
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return context.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", context)


def pdfa_filter() -> tuple[Any, ...]:
    """writer_pdf_Export as PDF/A-2b (SelectPdfVersion=2), fonts embedded by the standard."""
    data = uno.Any("[]com.sun.star.beans.PropertyValue", (prop("SelectPdfVersion", 2),
                                                          prop("UseTaggedPDF", True)))
    return (prop("FilterName", "writer_pdf_Export"), prop("FilterData", data), prop("Overwrite", True))


def convert(desktop: Any, source: str, target: str) -> None:
    load = (prop("Hidden", True), prop("ReadOnly", True), prop("UpdateDocMode", 0))
    document = desktop.loadComponentFromURL(uno.systemPathToFileUrl(source), "_blank", 0, load)
    if document is None:
        raise RuntimeError("LibreOffice could not open the document")
    try:
        document.storeToURL(uno.systemPathToFileUrl(target), pdfa_filter())
    finally:
        document.close(True)


def answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(pipe_name: str) -> None:
    desktop = connect(pipe_name)
    answer({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            convert(desktop, request["source"], request["target"])
        except Exception as error:  # noqa: BLE001 - reported to the caller, per document
            answer({"error": f"{type(error).__name__}: {getattr(error, 'Message', '') or error}"})
        else:
            answer({"ok": True})


if __name__ == "__main__":
    main(sys.argv[1])
