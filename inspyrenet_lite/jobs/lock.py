"""One run at a time per output folder: an advisory lock on the folder.

Two runs into the same folder would each read the manifest, plan the same
output names and overwrite each other's records (results lost, both runs
saying all done). :class:`FolderLock` takes an exclusive ``flock`` on the
output folder itself (no file of its own) for the whole run: planning, the
work and the last manifest line. The kernel releases it when the process
ends, a crash or ``kill -9`` included, so a stale lock never blocks a later
run. A second run is refused at once with :class:`FolderBusy` instead of
waiting an unknown time.

Where the file system has no locks (some network shares) or the platform no
``fcntl``, the run goes on unlocked, as before, with one debug log line.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


class FolderBusy(RuntimeError):
    """Another run is writing into the output folder."""


class FolderLock:
    """``with FolderLock(folder):`` holds ``folder`` for this process (created if missing).

    Raises :class:`FolderBusy` when another process holds it, ``OSError`` when the
    folder cannot be created or opened.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; :class:`FolderBusy` if another process has it."""
        if self._fd is not None:
            return
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks of this kind
            logger.debug("no fcntl here: %s is not locked", self.folder)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusy(
                    f"another inspyrenet-lite run is writing into {str(self.folder)!r}; "
                    "wait for it to finish, or give this run another output folder"
                ) from None
            logger.debug("cannot lock %s (%s): going on unlocked", self.folder, exc)
            return
        self._fd = fd

    def release(self) -> None:
        """Let the folder go."""
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

