"""Writing files so that a reader never sees half of one: write a temp file, then rename.

A temp file is named ``.<name>.<pid>.<random>.part``: when its process is killed before the rename,
:func:`remove_stale_parts` (run by :func:`writable_directory`) knows it is nobody's and deletes it.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from loguru import logger

from shared.errors import InputError

_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)
_PART = re.compile(r"^\..+\.(\d+)\.[^.]+\.part$")


@contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temp path beside ``destination``; on success it replaces ``destination``.

    The result gets the mode a plain ``open`` would give it (the umask's), not the temp file's 0600.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{destination.name}.{os.getpid()}.", suffix=".part", dir=destination.parent
    )
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if temporary.exists():
            os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def writable_directory(path: Path, what: str = "output directory") -> Path:
    """Create ``path`` if needed and prove it is writable, or raise :class:`InputError`.

    Temp files left there by killed processes are removed (:func:`remove_stale_parts`).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(f"{what} {path} is not writable: {reason}") from None
    remove_stale_parts(path)
    return path


def remove_stale_parts(directory: Path) -> int:
    """Delete the temp files of :func:`atomic_path` whose process no longer runs; return how many."""
    removed = 0
    for path in directory.glob(".*.part"):
        match = _PART.match(path.name)
        if match and not psutil.pid_exists(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        logger.info("removed {} temp file(s) left in {} by a killed run", removed, directory)
    return removed
