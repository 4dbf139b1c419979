"""Helpers of the Ray tests: run a command where Ray can reach nothing but loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def in_loopback_namespace(argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``argv`` in a network namespace with only loopback (fails, not skips, where that cannot be made)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.fail("the Ray tests need root, unshare and ip (iproute2) to keep Ray on loopback")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), RAY_USAGE_STATS_ENABLED="0")
    command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
