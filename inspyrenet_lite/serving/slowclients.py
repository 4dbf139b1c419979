"""Slow clients cannot hold the service: a head deadline on every connection, and uvicorn's knobs.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and caps
connections (``limit_concurrency``: 503 above it) but has no deadline on the
request head: a client sending one byte a minute holds a socket (and a file
descriptor) forever. :class:`GuardedH11Protocol` is uvicorn's h11 protocol with one: a
connection that has not sent a complete request head within ``head_timeout_s``
of opening (or of its previous answer) is closed. h11 itself refuses a head
above 16 KiB (400). The body's deadline is the app's (408, see ``app._Guard``).
Each cause is logged once a minute with a count, never once per socket.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import ServeSettings

logger = logging.getLogger(__name__)
#: Seconds an idle keep-alive connection stays open after its answer.
KEEP_ALIVE_S = 5


class CauseLog:
    """Log a cause once, then at most once per ``every_s`` seconds with how many happened since."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def __call__(self, cause: str) -> None:
        now = time.monotonic()
        self._count[cause] = self._count.get(cause, 0) + 1
        if now - self._last.get(cause, -self.every_s) >= self.every_s:
            logger.warning("%s (%d since the last such line)", cause, self._count[cause])
            self._last[cause] = now
            self._count[cause] = 0


slow_client_log = CauseLog()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline of ``head_timeout_s`` on each request head."""

    _head_timer: asyncio.TimerHandle | None = None
    _armed_cycle: Any = None

    def __init__(self, *args: Any, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout_s = head_timeout_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._armed_cycle:  # a complete head arrived: a request began
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # the next head has its own deadline (armed before pipelined requests start)
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._armed_cycle = self.cycle
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is self._armed_cycle and not self.transport.is_closing():
            slow_client_log(f"closed connections that sent no complete request head within {self.head_timeout_s:g} s")
            self.transport.close()


def guarded_h11(head_timeout_s: float) -> Callable[..., H11Protocol]:
    """uvicorn's ``http`` option: :class:`GuardedH11Protocol` with ``head_timeout_s``. A partial of a
    module-level class, not a class made here: ``serve --workers`` pickles it into each worker process."""
    return functools.partial(GuardedH11Protocol, head_timeout_s=head_timeout_s)


def server_options(settings: ServeSettings) -> dict[str, Any]:
    """uvicorn.Config options that keep slow clients from holding the service."""
    return {
        "http": guarded_h11(settings.head_timeout_s),
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": settings.max_connections,
    }
