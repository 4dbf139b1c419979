"""Names the CLI needs without importing numpy or PyAV."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..constants import VIDEO_SUFFIXES  # noqa: F401  (suffixes recognised as video inputs; defined once)

#: Output formats: name -> FFmpeg container (``None``: a folder of PNG files).
OUTPUT_FORMATS: dict[str, str | None] = {"webm": "webm", "mov": "mov", "mp4": "mp4", "png": None}
#: Default constant-rate factor per codec (lower is better quality, bigger files); the formats
#: without one (ProRes, PNG frames) take no CRF.
DEFAULT_CRF = {"mp4": 18, "webm": 30}


def crf_not_applicable(fmt: str) -> str:
    """The error for a CRF given with a format that has none."""
    return f"crf sets the quality of webm and mp4 only; {fmt} (ProRes or PNG frames) has none: leave it out"


def is_video(value: Any) -> bool:
    """Whether ``value`` is a path (str or PathLike) whose suffix names a video."""
    return isinstance(value, (str, os.PathLike)) and Path(value).suffix.lower() in VIDEO_SUFFIXES


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once links and
    ``.``/``..`` are resolved, or the same file on disk (a hard link, a
    case-insensitive file system). ``False`` when either does not exist."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be read): not the same file
        return False
