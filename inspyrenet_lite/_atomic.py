"""Write a file atomically: a temporary name in the same folder, fsync, rename.

A reader never sees a half-written file and an interrupted write (Ctrl-C
included) leaves the old file (if any) untouched and no temporary file. The
result gets the user's normal permissions (0666 & ~umask): the temporary file
is created with mode 0666 and the kernel applies the umask, as for any file
the user creates (no ``os.umask`` round trip, which would race with other
threads). The temporary name is short and of fixed length
(``.inspyrenet-XXXXXXXX.part``), so any final name the file system accepts
works.

A destination that is a folder is refused before anything is written, with
an :class:`IsADirectoryError` that says so (no errno text).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def _refuse_folder(path: Path) -> None:
    """Raise a clear IsADirectoryError if ``path`` is an existing folder (a file cannot replace it)."""
    if path.is_dir():
        raise IsADirectoryError(
            f"cannot write {str(path)!r}: a folder of that name exists there; "
            "move or rename that folder, or choose another output name or folder"
        )


def _replace(tmp: str, path: Path) -> None:
    """``os.replace(tmp, path)``, with a clear message if ``path`` became a folder meanwhile."""
    try:
        os.replace(tmp, path)
    except IsADirectoryError:
        _refuse_folder(path)
        raise


def _create_temporary(folder: Path) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = os.path.join(folder, f".inspyrenet-{secrets.token_hex(4)}.part")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {str(folder)!r}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path``
    when the block ends without an exception, and is removed otherwise."""
    path = Path(path)
    _refuse_folder(path)
    fd, tmp = _create_temporary(path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then move it to ``path`` atomically
    (creating ``path``'s folder if needed)."""
    path = Path(path)
    _refuse_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path.parent)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0666 & ~umask, as the kernel applied it
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # some writers (safetensors) make a file of their own at tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
