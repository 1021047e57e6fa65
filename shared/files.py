"""Writing files so that a reader never sees half of one: write a temp file, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.errors import InputError

_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


@contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temp path beside ``destination``; on success it replaces ``destination``.

    The result gets the mode a plain ``open`` would give it (the umask's), not the temp file's 0600.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
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
    """Create ``path`` if needed and prove it is writable, or raise :class:`InputError`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(f"{what} {path} is not writable: {reason}") from None
    return path
