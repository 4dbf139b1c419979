"""``process_video``: decode -> batches -> Remover -> stabilise -> composite -> encode.

Three stages overlap: a thread decodes (and demuxes the audio), the calling
thread runs the network on batches of frames and stabilises the maps, and a
thread composites and encodes. Bounded queues between them keep at most a
few batches of frames in memory whatever the length of the video.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from inspyrenet_lite._atomic import atomic_write
from inspyrenet_lite.compositing import OutputSpec, apply_threshold_reverse, composite, parse_output_type

from .formats import OUTPUT_FORMATS, is_video
from .io import Frame, VideoInfo, VideoReader, atomic_folder, open_writer
from .stability import Stabilizer

if TYPE_CHECKING:
    from inspyrenet_lite.remover import Remover

logger = logging.getLogger(__name__)

_END = object()
_POLL = 0.1  # seconds between checks for a stop request while waiting on a queue


@dataclass(frozen=True)
class VideoResult:
    """What :func:`process_video` did."""

    path: Path
    format: str
    frames: int
    seconds: float
    audio: bool
    peak_frames_in_flight: int

    @property
    def fps(self) -> float:
        """Frames per second, decoding to the renamed output."""
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def output_suffix(type: Any = "rgba", format: str | None = None) -> str:
    """The suffix an output gets: ``.webm`` for ``rgba``, ``.mp4`` for other
    types, ``.<format>`` when one is chosen, ``_frames`` (a folder) for ``png``."""
    fmt = format or default_format(type)
    return "_frames" if fmt == "png" else f".{fmt}"


def default_format(type: Any) -> str:
    """``webm`` (alpha) for ``rgba``, ``mp4`` for maps and composites."""
    kind = type.kind if isinstance(type, OutputSpec) else str(type).strip().lower() if isinstance(type, str) else ""
    return "webm" if kind == "rgba" else "mp4"


def _format_of(dst: Path, format: str | None, type: Any) -> str:
    if format is not None:
        if format not in OUTPUT_FORMATS:
            raise ValueError(f"unknown video format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        return format
    suffix = dst.suffix.lower().lstrip(".")
    if suffix in OUTPUT_FORMATS:
        return suffix
    if suffix == "":
        return "png"  # a folder name: a PNG sequence
    raise ValueError(f"cannot tell the video format from {str(dst)!r}; use .webm, .mov, .mp4, or pass format=")


class _Stop(Exception):
    """Another stage failed or the run was interrupted."""


class _Backgrounds:
    """Frames of a background video, looped, as composite specs."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path
        VideoReader(path).close()  # fail early, naming the file
        self._frames: Iterator[Frame] = iter(())

    def next_spec(self) -> OutputSpec:
        for _ in range(2):
            frame = next(self._frames, None)
            if frame is not None:
                return OutputSpec("image", background=Image.fromarray(frame.rgb))
            self._frames = self._iter()
        raise RuntimeError(f"background video {self.path} has no frames")  # pragma: no cover

    def _iter(self) -> Iterator[Frame]:
        with VideoReader(self.path) as reader:
            for item in reader.items():
                if isinstance(item, Frame):
                    yield item


def process_video(
    remover: Remover,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    type: Any = "rgba",
    format: str | None = None,
    threshold: float | None = None,
    hr_blend: float | None = None,
    reverse: bool = False,
    batch_size: int = 1,
    stability: bool = True,
    crf: int | None = None,
    progress: Callable[[int], None] | None = None,
    queue_batches: int = 2,
) -> VideoResult:
    """Remove the background of every frame of ``src`` and write ``dst``.

    Args:
        remover: the :class:`~inspyrenet_lite.Remover` to run.
        src: a video file (anything FFmpeg decodes).
        dst: the output: ``.webm`` (VP9, alpha), ``.mov`` (ProRes 4444,
            alpha), ``.mp4`` (H.264, no alpha) or a folder name (PNG sequence).
        type: as in ``Remover.process`` (``rgba``, ``map``, ``green``, ...,
            a background image), or the path of a background video (looped).
        format: ``webm``, ``mov``, ``mp4`` or ``png``, overriding ``dst``'s suffix.
        threshold, hr_blend, reverse: as in ``Remover.process`` (``hr_blend=None``: the Remover's own).
        batch_size: frames per network pass.
        stability: smooth the map over time on still parts (:class:`Stabilizer`).
        crf: quality for ``mp4`` (H.264, default 18) and ``webm`` (VP9, default 30).
        progress: called with the number of frames written since the last call.
        queue_batches: batches of frames each queue holds (memory bound).

    Frame timestamps (variable frame rate too), rotation and pixel aspect
    are kept; the first audio stream is copied, or re-encoded when the
    container cannot hold it (Opus in WebM, AAC in MP4/MOV; a PNG sequence
    gets it as ``audio.mka``).

    Raises:
        VideoLoadError: ``src`` (or a background video) cannot be read, has
            no video stream or no frames, or its codec is unsupported.
        ValueError: a bad argument (before any work).
    """
    dst = Path(dst)
    background = _Backgrounds(type) if is_video(type) else None
    spec = OutputSpec("image") if background is not None else parse_output_type(type, max_pixels=remover.max_pixels)
    fmt = _format_of(dst, format, spec)
    if spec.has_alpha and fmt == "mp4":
        raise ValueError("mp4 (H.264) cannot store transparency; use webm or mov for type='rgba', or a composited type")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    if hr_blend is not None and not 0.0 <= float(hr_blend) <= 1.0:
        raise ValueError(f"hr_blend must be in [0, 1], got {hr_blend!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if crf is not None and not 0 <= crf <= (51 if fmt == "mp4" else 63):
        raise ValueError(f"crf must be in 0..51 for mp4 and 0..63 for webm, got {crf!r}")
    if not dst.parent.is_dir():
        raise ValueError(f"output folder {str(dst.parent)!r} does not exist")

    started = time.perf_counter()
    reader = VideoReader(src, max_pixels=remover.max_pixels)
    run = _Run(reader, dst, fmt, spec, background, threshold, reverse, crf, progress, max(1, queue_batches) * batch_size)
    try:
        run.start()
        stabilizer = Stabilizer() if stability else None
        for batch in run.batches(batch_size):
            frames = [item for item in batch if isinstance(item, Frame)]
            maps = remover.process([f.rgb for f in frames], type="map", hr_blend=hr_blend, batch_size=batch_size)
            maps_iter = iter(maps)
            for item in batch:
                if isinstance(item, Frame):
                    saliency = next(maps_iter).astype(np.float32) / 255.0
                    if stabilizer is not None:
                        saliency = stabilizer(item.rgb, saliency)
                    run.put_out((item, saliency))
                else:
                    run.put_out((item, None))
        run.finish()
    except BaseException:
        run.stop()
        raise
    finally:
        run.join()
        reader.close()
    return VideoResult(
        path=dst,
        format=fmt,
        frames=run.written,
        seconds=time.perf_counter() - started,
        audio=reader.audio_stream is not None,
        peak_frames_in_flight=run.peak,
    )


class _Run:
    """The decode and encode threads of one :func:`process_video` call."""

    def __init__(
        self,
        reader: VideoReader,
        dst: Path,
        fmt: str,
        spec: OutputSpec,
        background: _Backgrounds | None,
        threshold: float | None,
        reverse: bool,
        crf: int | None,
        progress: Callable[[int], None] | None,
        depth: int,
    ) -> None:
        self.reader, self.dst, self.fmt, self.spec = reader, dst, fmt, spec
        self.background, self.threshold, self.reverse, self.crf = background, threshold, reverse, crf
        self.progress = progress
        self.inbox: queue.Queue = queue.Queue(maxsize=depth)
        self.outbox: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self.in_flight = self.peak = self.written = 0
        self._threads = [
            threading.Thread(target=self._guard, args=(self._decode,), name="video-decode", daemon=True),
            threading.Thread(target=self._guard, args=(self._encode,), name="video-encode", daemon=True),
        ]

    # -------------------------------------------------------------- plumbing
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except _Stop:
            pass
        except BaseException as exc:  # handed to the calling thread
            self.errors.append(exc)
            self.stopped.set()

    def _put(self, box: queue.Queue, item: Any) -> None:
        while True:
            if self.stopped.is_set():
                raise _Stop
            try:
                box.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def _get(self, box: queue.Queue) -> Any:
        while True:
            if self.stopped.is_set():
                raise _Stop
            try:
                return box.get(timeout=_POLL)
            except queue.Empty:
                continue

    def _raise_errors(self) -> None:
        if self.errors:
            raise self.errors[0]

    def _count(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.peak = max(self.peak, self.in_flight)

    # ---------------------------------------------------------------- stages
    def _decode(self) -> None:
        for item in self.reader.items():
            if isinstance(item, Frame):
                self._count(1)
            self._put(self.inbox, item)
        self._put(self.inbox, _END)

    def batches(self, batch_size: int) -> Iterator[list]:
        """Items from the decoder, cut after every ``batch_size`` frames."""
        batch: list = []
        frames = 0
        while True:
            try:
                item = self._get(self.inbox)
            except _Stop:
                self._raise_errors()
                raise
            if item is _END:
                break
            batch.append(item)
            if isinstance(item, Frame):
                frames += 1
                if frames == batch_size:
                    yield batch
                    batch, frames = [], 0
        if batch:
            yield batch

    def put_out(self, item: tuple) -> None:
        try:
            self._put(self.outbox, item)
        except _Stop:
            self._raise_errors()
            raise

    def finish(self) -> None:
        """Wait until the encoder has renamed the output into place."""
        self.put_out((_END, None))
        self._threads[1].join()
        self._raise_errors()

    def _encode(self) -> None:
        early_audio: list = []  # audio packets demuxed before the first frame
        while True:
            item, saliency = self._get(self.outbox)
            if item is _END:  # pragma: no cover - the reader raises on zero frames
                raise RuntimeError("no frame was decoded")
            if saliency is not None:
                break
            early_audio.append(item)
        # The first frame tells the display rotation; then everything goes under a temporary name.
        info = replace(self.reader.info, rotation=item.rotation)
        first = (item, saliency)
        if self.fmt == "png":
            atomic_folder(self.dst, lambda tmp: self._encode_into(Path(tmp), info, early_audio, first))
        else:
            atomic_write(self.dst, lambda tmp: self._encode_into(Path(tmp), info, early_audio, first))

    def _encode_into(self, path: Path, info: VideoInfo, early_audio: list, first: tuple) -> None:
        writer = open_writer(
            path,
            self.fmt,
            info,
            alpha=self.spec.has_alpha,
            grey=self.spec.kind == "map",
            crf=self.crf,
            audio=self.reader.audio_stream,
        )
        try:
            for packet in early_audio:
                writer.write_audio(packet)
            item, saliency = first
            while item is not _END:
                if saliency is None:  # an audio packet
                    writer.write_audio(item)
                else:
                    writer.write(self._composite(item, saliency), item)
                    self._count(-1)
                    self.written += 1
                    if self.progress is not None:
                        self.progress(1)
                item, saliency = self._get(self.outbox)
            writer.close()
        except BaseException:
            writer.abort()
            raise

    def _composite(self, frame: Frame, saliency: np.ndarray) -> np.ndarray:
        alpha = apply_threshold_reverse(saliency, self.threshold, self.reverse)
        spec = self.background.next_spec() if self.background is not None else self.spec
        return np.asarray(composite(Image.fromarray(frame.rgb), alpha, spec))
