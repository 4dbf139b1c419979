"""Write a file atomically: a temporary name in the same folder, fsync, rename.

A reader never sees a half-written file and an interrupted write (Ctrl-C
included) leaves the old file (if any) untouched and no temporary file. The
result gets the user's normal permissions (0666 & ~umask): the temporary file
is created with mode 0666 and the kernel applies the umask, as for any file
the user creates (no ``os.umask`` round trip, which would race with other
threads). The temporary name is short (``.inspyrenet-<pid>-<machine>-XXXXXXXX.part``,
at most about 40 characters), so any final name the file system accepts
works; it carries the writer's process id and a tag of the machine (host name
and process-id namespace) so that a later run can tell a temporary left by a
killed process (``kill -9``) from one still being written
(:func:`remove_stale_temporaries`).

A destination that is a folder is refused before anything is written, with
an :class:`IsADirectoryError` that says so (no errno text).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from inspyrenet_lite._interrupts import deferred_interrupts

logger = logging.getLogger(__name__)

#: Our temporaries: ``.inspyrenet-<pid>-<machine tag>-<8 hex>.part`` (files) or ``.tmp`` (folders being
#: filled, e.g. a PNG sequence), and the file names of earlier versions (``<pid>-<8 hex>``, ``<8 hex>``).
_TEMPORARY = re.compile(r"\.inspyrenet-(?:(\d{1,10})-(?:([0-9a-f]{8})-)?)?[0-9a-f]{8}\.(part|tmp)")
#: A temporary untouched for this long is no one's work in progress (writers append as they go).
STALE_AFTER_S = 15 * 60


@functools.cache
def machine_tag() -> str:
    """8 hex digits naming where process ids mean the same: this host and its process-id namespace.

    A temporary with this tag whose writer's process id is not alive was left by a dead process
    of this machine; one with another tag may belong to a live writer elsewhere (a shared network
    folder, another container), whose process ids mean nothing here."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{platform.node()}\0{namespace}".encode()).hexdigest()[:8]


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


def _temporary_name(folder: Path, suffix: str = ".part") -> str:
    """A fresh temporary's path in ``folder``, in the form :data:`_TEMPORARY` recognises (with
    ``suffix`` ``.tmp`` for a folder)."""
    return os.path.join(folder, f".inspyrenet-{os.getpid()}-{machine_tag()}-{secrets.token_hex(4)}{suffix}")


def new_temporary_folder(parent: str | os.PathLike[str], suffix: str = ".tmp") -> Path:
    """A new hidden folder in ``parent`` with the user's normal permissions (0777 & ~umask, applied by
    the kernel), named as our temporaries: with ``.tmp``, :func:`remove_stale_temporaries` removes it
    once its writer is gone (``kill -9``); other suffixes (a folder holding a previous result while
    it is being replaced) are never swept."""
    for _ in range(100):
        folder = Path(_temporary_name(Path(parent), suffix))
        try:
            os.mkdir(folder, 0o777)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary folder in {str(parent)!r}")


def _create_temporary(folder: Path) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = _temporary_name(folder)
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {str(folder)!r}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], on_replaced: Callable[[], None] | None = None) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path``
    when the block ends without an exception, and is removed otherwise.

    ``on_replaced`` (e.g. recording the file as done) runs right after the
    rename, with Ctrl-C and SIGTERM held from before the rename until it
    returns: a stop cannot fall between the two."""
    path = Path(path)
    _refuse_folder(path)
    fd, tmp = _create_temporary(path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        with deferred_interrupts():
            _replace(tmp, path)
            tmp = ""  # in place: nothing to remove if on_replaced fails
            _sync_folder(path.parent)  # the rename itself on disk before anyone records the file as written
            if on_replaced is not None:
                on_replaced()
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    """fsync ``folder`` so that a rename in it survives a power cut (best effort: not every platform or
    file system can open or sync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def atomic_link(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Make ``path`` hold ``source``'s content atomically: a hard link where the file system has them
    (no second write of a file that can be gigabytes), else a copy.

    Only for sources that are replaced by rename (as :func:`atomic_write` does) and never rewritten in
    place: a later write of ``source`` then makes a new file and leaves ``path`` as it was."""
    source, path = Path(source), Path(path)
    _refuse_folder(path)
    if path.exists() and path.samefile(source):
        return path  # linked already (a rename onto it would do nothing and leave the temporary)
    tmp = Path(_temporary_name(path.parent))
    with deferred_interrupts():  # a stop cannot fall between making the link and naming it
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (FAT, some network shares)
            linked = False
        else:
            linked = True
            try:
                _replace(str(tmp), path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    if not linked:
        return atomic_write(path, lambda t: shutil.copyfile(source, t))
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (True when unsure)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's live process, or a pid we cannot ask about
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str], older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete temporaries this module left in ``folder`` when their writer was killed.

    Only regular files named exactly as :func:`_create_temporary` names them
    (and folders named as :func:`new_temporary_folder` names its ``.tmp`` ones)
    are removed, and of those only the ones whose writer is known to be gone:
    written on this machine (:func:`machine_tag`) by a process that is no
    longer alive; or, where the writer cannot be told apart (another machine,
    an earlier version's name), untouched for ``older_than_s`` seconds and
    with no live process of the id it names. Never another file, nor the
    temporary of a writer still at work (another run into the same folder
    included). Returns what was removed; best effort (a file that cannot be
    removed is logged and left).
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None:
            continue
        folder = match.group(3) == "tmp"
        try:
            if folder and (match.group(2) is None or not entry.is_dir(follow_symlinks=False)):
                continue  # our temporary folders always carry pid and machine tag
            if not folder and not entry.is_file(follow_symlinks=False):
                continue
            pid = None if match.group(1) is None else int(match.group(1))
            if pid is not None and _pid_alive(pid):
                continue
            ours = match.group(2) == machine_tag()
            if not ours and now - entry.stat(follow_symlinks=False).st_mtime < older_than_s:
                continue
            if folder:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError as exc:
            logger.debug("could not remove the stale temporary %s: %s", entry.path, exc)
            continue
        removed.append(Path(entry.path))
        logger.info("removed %s, a temporary left by an interrupted earlier run", entry.path)
    return removed
