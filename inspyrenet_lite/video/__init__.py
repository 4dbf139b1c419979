"""Video background removal: decode, predict, stabilise, composite, encode.

>>> from inspyrenet_lite import Remover
>>> from inspyrenet_lite.video import process_video
>>> process_video(Remover(), "clip.mp4", "clip.webm")      # VP9 with alpha, sound kept

Needs the ``video`` extra (``pip install "inspyrenet-lite[video]"``: PyAV).
PyAV is imported only when a video is read or written, so importing this
package stays cheap.
"""

from __future__ import annotations

from .io import OUTPUT_FORMATS, VIDEO_SUFFIXES, VideoInfo, VideoLoadError, probe_video, read_frames
from .pipeline import VideoResult, output_suffix, process_video
from .stability import Stabilizer, flicker, lag

__all__ = [
    "OUTPUT_FORMATS",
    "VIDEO_SUFFIXES",
    "Stabilizer",
    "VideoInfo",
    "VideoLoadError",
    "VideoResult",
    "flicker",
    "lag",
    "output_suffix",
    "probe_video",
    "process_video",
    "read_frames",
]
