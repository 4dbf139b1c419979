"""Video background removal: decode, predict, stabilise, composite, encode.

>>> from inspyrenet_lite import Remover
>>> from inspyrenet_lite.video import process_video
>>> process_video(Remover(), "clip.mp4", "clip.webm")      # VP9 with alpha, sound kept

Needs the ``video`` extra (``pip install "inspyrenet-lite[video]"``: PyAV).
PyAV is imported only when a video is read or written, so importing this
package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from .formats import DEFAULT_CRF, OUTPUT_FORMATS, VIDEO_SUFFIXES

# Everything else is imported on first use, so the CLI can read the constants cheaply.
_LAZY = {
    "VideoInfo": "io",
    "VideoLoadError": "io",
    "probe_video": "io",
    "read_frames": "io",
    "VideoResult": "pipeline",
    "VideoTooLongError": "pipeline",
    "output_suffix": "pipeline",
    "process_video": "pipeline",
    "Stabilizer": "stability",
    "flicker": "stability",
    "lag": "stability",
}

__all__ = ["DEFAULT_CRF", "OUTPUT_FORMATS", "VIDEO_SUFFIXES", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
