"""Hold Ctrl-C, SIGTERM and SIGHUP for a few statements that must not be split.

A run that is stopped must leave its output folder and its manifest telling
the same story: a file that was put in place is recorded ``done``, a job
recorded ``done`` is not recorded ``interrupted`` afterwards (a resume would
do it again). Python runs signal handlers between any two bytecodes, so
without this a stop that lands between ``os.replace`` and the manifest line
splits them. Only that short step is held: a stop while a result is still
being encoded interrupts it at once (its temporary is removed).

The handlers in place are swapped for ones that only note the signal, and
the noted signals are handed to the original handlers when the block ends
(a ``KeyboardInterrupt`` then rises from the ``with`` statement). Outside the
main thread, where handlers cannot be swapped, the block runs as it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

_STOPS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Run the block without being stopped half-way; a stop that arrives meanwhile is handled after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[int, FrameType | None]] = []
    previous: dict[int, object] = {}

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append((signum, frame))

    try:
        for signum in _STOPS:
            previous[signum] = signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        for signum, frame in held[:1]:  # one stop is enough; the first decides how
            _deliver(signum, frame, previous.get(signum))


def _deliver(signum: int, frame: FrameType | None, handler: object) -> None:
    """What ``signum`` would have done under ``handler``."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # the default action (end the process), now that the block is done
    # SIG_IGN, or a handler installed outside Python (None): nothing to do


def exit_quietly_on_interrupt(program: str) -> None:
    """From now on, Ctrl-C ends the process at once with status 130 and one line on stderr
    (``PROGRAM: interrupted``), no traceback: for a command whose work is done (its summary
    printed) while Python shuts down (threads joined, caches closed). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.write(f"{program}: interrupted\n")
            sys.stderr.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, stop)
