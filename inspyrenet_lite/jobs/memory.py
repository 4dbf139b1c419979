"""How much memory this machine (or its container) has left, and what one process holds.

Used to start no more worker processes than memory holds: each loads its own model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Part of the free memory worker processes may take; the rest is for the parent, the page cache and the system.
WORKER_SHARE = 0.8


def peak_rss_bytes() -> int:
    """The most resident memory this process has held so far, in bytes."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """What the cgroup v2 limit of this container leaves (None without a limit)."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        return None


def available_bytes() -> int | None:
    """Memory a new process can take without swapping or the OOM killer: the smaller of the system's
    available memory and what a container's limit leaves; None where neither can be read."""
    known = [value for value in (_meminfo_available(), _cgroup_available()) if value is not None]
    if not known and hasattr(os, "sysconf"):
        try:
            known = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (ValueError, OSError):
            pass
    return min(known) if known else None


def workers_that_fit(wanted: int, started: int, per_worker: int, available: int) -> int:
    """How many of ``wanted`` workers run when ``started`` already run, each holds ``per_worker``
    bytes and ``available`` bytes are free (at least the ones started)."""
    more = int(available * WORKER_SHARE) // max(1, per_worker)
    return max(started, min(wanted, started + more))


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB"
