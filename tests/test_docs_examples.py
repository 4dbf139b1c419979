"""The documentation is tested: the command's help lists its sub-commands, and the examples run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_subcommand_with_one_line():
    from inspyrenet_lite.cli import SUBCOMMANDS

    proc = subprocess.run(
        [sys.executable, "-m", "inspyrenet_lite", "--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in SUBCOMMANDS:
        described = [line for line in lines if line.split()[:1] == [name] and len(line.split()) > 2]
        assert described, f"--help does not describe the sub-command {name!r}:\n{proc.stdout}"
