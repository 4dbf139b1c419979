"""Resident-memory readings of the current process (Linux /proc, with a getrusage fallback)."""

from __future__ import annotations

import resource
import sys

_MIB = 1024 * 1024


def _status_kib(field: str) -> int | None:
    """Value of a ``kB`` field of /proc/self/status, or None where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """Resident set size now, in MiB."""
    kib = _status_kib("VmRSS")
    if kib is None:
        return peak_rss_mib()
    return kib / 1024


def peak_rss_mib() -> float:
    """Peak resident set size of this process since it started (high-water mark), in MiB."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux but bytes on macOS.
    return maxrss / _MIB if sys.platform == "darwin" else maxrss / 1024
