"""``Deadline``: when a request's work must stop, seen by every stage it runs.

``ServiceState.within_deadline`` makes one per request and sets it as the current
deadline of the request's task; the CPU stages (run on the pool with that context)
and the batcher check it at each stage boundary, so work past its deadline (or
whose client left) is dropped before the next stage starts instead of running on
for nobody.
"""

from __future__ import annotations

import contextvars
import time


class DeadlineExceeded(RuntimeError):
    """The request's deadline passed (or it was abandoned) before this stage began."""


class Deadline:
    """A point on the monotonic clock; ``abandon()`` ends it early (a 504 answered, the client gone)."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.abandoned = False

    def remaining(self) -> float:
        """Seconds left (0 once abandoned)."""
        return 0.0 if self.abandoned else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.abandoned or time.monotonic() >= self.at

    def abandon(self) -> None:
        self.abandoned = True


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("inspyrenet_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the request this code runs for, if any."""
    return _CURRENT.get()


def set_current(deadline: Deadline | None) -> contextvars.Token:
    return _CURRENT.set(deadline)


def reset_current(token: contextvars.Token) -> None:
    _CURRENT.reset(token)


def check() -> None:
    """A stage boundary: raise :class:`DeadlineExceeded` when the current request's deadline passed."""
    deadline = _CURRENT.get()
    if deadline is not None and deadline.expired():
        raise DeadlineExceeded("the request's deadline passed")
