"""Atomic writes (temp file beside the destination, then rename) and the writable-directory check."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shared.errors import InputError
from shared.files import atomic_path, remove_stale_parts, writable_directory
from tests.conftest import REPO


def leftovers(directory: Path) -> list[str]:
    """Temp files ``atomic_path`` may have left behind in ``directory``."""
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".part"))


def test_atomic_path_writes_through_a_temp_file_in_the_same_directory(tmp_path: Path) -> None:
    destination = tmp_path / "ut" / "beslut.txt"  # the parent does not exist yet
    with atomic_path(destination) as temporary:
        assert temporary.parent == destination.parent
        assert temporary != destination and temporary.name.startswith(".beslut.txt.")
        temporary.write_text("beviljas", encoding="utf-8")
        assert not destination.exists(), "the destination appeared before the block ended"
    assert destination.read_text(encoding="utf-8") == "beviljas"
    assert not temporary.exists()
    assert leftovers(destination.parent) == []


def test_atomic_path_replaces_an_existing_file_only_on_success(tmp_path: Path) -> None:
    destination = tmp_path / "register.csv"
    destination.write_text("gammal", encoding="utf-8")
    old_inode = destination.stat().st_ino
    with atomic_path(destination) as temporary:
        temporary.write_text("ny", encoding="utf-8")
        assert destination.read_text(encoding="utf-8") == "gammal", "a reader saw a half-written file"
    assert destination.read_text(encoding="utf-8") == "ny"
    assert destination.stat().st_ino != old_inode, "replaced in place rather than renamed over"
    assert leftovers(tmp_path) == []


def test_an_error_inside_the_block_keeps_the_old_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    destination = tmp_path / "ut" / "brev.docx"
    destination.parent.mkdir()
    destination.write_bytes(b"old letter")
    with pytest.raises(RuntimeError, match="mallen saknas"):
        with atomic_path(destination) as temporary:
            temporary.write_bytes(b"half a new let")
            raise RuntimeError("mallen saknas")
    assert destination.read_bytes() == b"old letter"
    assert sorted(path.name for path in destination.parent.iterdir()) == ["brev.docx"]


def test_an_error_inside_the_block_does_not_create_a_missing_destination(tmp_path: Path) -> None:
    destination = tmp_path / "ut" / "rapport.html"
    with pytest.raises(KeyError):
        with atomic_path(destination) as temporary:
            temporary.write_text("<html>", encoding="utf-8")
            raise KeyError("personnummer")
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []  # created for the temp file, then left empty


def test_an_untouched_temp_file_still_replaces_the_destination_with_an_empty_file(tmp_path: Path) -> None:
    destination = tmp_path / "tom.txt"
    destination.write_text("innehåll", encoding="utf-8")
    with atomic_path(destination):
        pass
    assert destination.read_bytes() == b""
    assert leftovers(tmp_path) == []


def test_writable_directory_creates_a_missing_directory_and_leaves_it_empty(tmp_path: Path) -> None:
    wanted = tmp_path / "ut" / "2026" / "brev"
    assert writable_directory(wanted) == wanted
    assert wanted.is_dir()
    assert list(wanted.iterdir()) == [], "the write probe left a file behind"
    assert writable_directory(wanted) == wanted  # an existing directory is fine too


def test_writable_directory_refuses_a_file_in_the_way_and_names_the_path(tmp_path: Path) -> None:
    in_the_way = tmp_path / "ut"
    in_the_way.write_text("not a directory", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        writable_directory(in_the_way, "output_dir")
    message = str(caught.value)
    assert message.startswith(f"output_dir {in_the_way} is not writable")
    assert caught.value.exit_code == 1
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert in_the_way.read_text(encoding="utf-8") == "not a directory"


def test_writable_directory_refuses_a_path_below_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "ut"
    blocker.write_text("", encoding="utf-8")
    below = blocker / "brev"
    with pytest.raises(InputError, match="output directory .*brev is not writable: Not a directory"):
        writable_directory(below)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_writable_directory_refuses_a_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "låst"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="is not writable: Permission denied"):
            writable_directory(locked)
    finally:
        locked.chmod(0o700)


def test_the_result_gets_the_umask_mode_not_the_temp_files_0600(tmp_path: Path) -> None:
    destination = tmp_path / "beslut.docx"
    with atomic_path(destination) as temporary:
        temporary.write_bytes(b"x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(destination.stat().st_mode) == 0o666 & ~umask


def test_temp_files_of_killed_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    script = ("import os, signal, sys; from pathlib import Path; from shared.files import atomic_path\n"
              "with atomic_path(Path(sys.argv[1])) as part:\n"
              "    part.write_text('halv'); os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "beslut.docx")],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    [left] = tmp_path.glob(".beslut.docx.*.part")
    with atomic_path(tmp_path / "annat.docx") as live:
        live.write_text("pågår")
        assert writable_directory(tmp_path) == tmp_path
        assert not left.exists() and live.exists()  # the dead one's removed, ours kept
    assert remove_stale_parts(tmp_path) == 0 and not list(tmp_path.glob("*.part"))
