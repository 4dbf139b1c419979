"""Refuse every network connection that does not stay on this machine.

The benchmark serves the reference package a local random checkpoint; if any
code path still tried to download weights, the run must fail loudly instead
of fetching 351 MiB (or hanging without internet).
"""

from __future__ import annotations

import os
import socket
from typing import Any

_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


class NetworkBlockedError(RuntimeError):
    """Raised when benchmarked code tries to reach another machine."""


def _host_of(address: Any) -> str | None:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None  # AF_UNIX paths and the like stay local


def block_network() -> None:
    """Make non-loopback ``connect`` calls raise; set the Hub libraries to offline mode."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    original_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        host = _host_of(address)
        if host is not None and host not in _LOCAL_HOSTS:
            raise NetworkBlockedError(
                f"benchmark blocked a network connection to {address!r}: "
                "every checkpoint must come from the local cache (pass ckpt=)"
            )
        return original_connect(self, address)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
