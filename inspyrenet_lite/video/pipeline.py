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
from inspyrenet_lite.checks import check_options
from inspyrenet_lite import pipeline as road
from inspyrenet_lite.compositing import OutputSpec, parse_output_type
from inspyrenet_lite.options import OutputOptions

from .formats import DEFAULT_CRF, OUTPUT_FORMATS, crf_not_applicable, is_video, same_file
from .io import Frame, VideoInfo, VideoReader, atomic_folder, foreign_entries, open_writer
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
        """Processing speed: frames per second of wall time, decoding to the renamed output (not the clip's rate)."""
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


class VideoTooLongError(ValueError):
    """A video has more frames, or lasts longer, than ``process_video``'s
    ``max_frames`` / ``max_seconds`` (counted on the decoded frames, not the
    file's header); the message names the file and the limit."""

    def __init__(self, source: str, limit: str) -> None:
        self.source = source
        self.limit = limit
        super().__init__(f"video {source} {limit}, the limit here; trim it (or raise the limit) and try again")


@dataclass(frozen=True)
class _Limits:
    """``max_frames`` / ``max_seconds`` of one run (``None``: no limit)."""

    source: str
    max_frames: int | None = None
    max_seconds: float | None = None

    def check(self, count: int, elapsed: float) -> None:
        """Raise if the ``count``-th frame, ``elapsed`` seconds after the first, is past a limit."""
        if self.max_frames is not None and count > self.max_frames:
            raise VideoTooLongError(self.source, f"has more than {self.max_frames} frames")
        if self.max_seconds is not None and elapsed >= self.max_seconds:
            raise VideoTooLongError(self.source, f"is longer than {self.max_seconds:g} s")


def _checked_options(fmt: str, spec: OutputSpec, **options: Any) -> dict[str, Any]:
    """``options`` checked by :func:`inspyrenet_lite.checks.check_options`
    (crf by ``fmt``'s codec; ``hr_blend=None`` is the Remover's own)."""
    if spec.has_alpha and fmt == "mp4":
        raise ValueError("mp4 (H.264) cannot store transparency; use webm or mov for type='rgba', or a composited type")
    if options.get("crf") is not None and fmt not in DEFAULT_CRF:
        raise ValueError(crf_not_applicable(fmt))
    crf_rule = "crf_mp4" if fmt == "mp4" else "crf"
    options[crf_rule] = options.pop("crf")
    hr_blend = options.pop("hr_blend")
    checked = check_options(**options)
    checked["crf"] = checked.pop(crf_rule)
    checked["hr_blend"] = None if hr_blend is None else check_options(hr_blend=hr_blend)["hr_blend"]
    return checked


def _check_destination(src: str | os.PathLike, dst: Path, fmt: str, background: _Backgrounds | None) -> None:
    """Refuse an output that would destroy something: the source itself (any
    path to it: links, hard links), the background video, a folder for a
    video file, or a frames folder holding files this tool did not write."""
    if same_file(src, dst):
        raise ValueError(
            f"the output {str(dst)!r} is the source video {str(src)!r} (the same file): "
            "writing it would lose the clip; choose another output name"
        )
    if background is not None and same_file(background.path, dst):
        raise ValueError(f"the output {str(dst)!r} is the background video; choose another output name")
    if not dst.parent.is_dir():
        raise ValueError(f"output folder {str(dst.parent)!r} does not exist")
    if fmt != "png" and dst.is_dir():
        raise ValueError(f"the output {str(dst)!r} is a folder, and a {fmt} video is a file; choose another name")
    if fmt == "png" and dst.is_dir():
        _refuse_foreign_folder(dst)


def _refuse_foreign_folder(folder: Path) -> None:
    """A PNG-sequence output replaces its whole folder: refuse one holding anything else."""
    if not folder.is_dir():
        return
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ValueError(
            f"the output folder {str(folder)!r} holds files this tool did not write ({shown}); a PNG sequence "
            "replaces its whole folder: choose another output name, or move them out first"
        )


def _naming_the_output(exc: OSError, dst: Path) -> OSError:
    """``exc`` as the user should read it: a failure on one of our temporary names beside ``dst``
    (which the user never gave) is told as a failure to write ``dst``."""
    filename = getattr(exc, "filename", None)
    if filename is None or Path(os.fsdecode(filename)) == dst:
        return exc
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OSError(exc.errno, f"cannot write the output {str(dst)!r}: {reason}; choose a folder you can write to")


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
    max_frames: int | None = None,
    max_seconds: float | None = None,
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
        max_frames, max_seconds: refuse a longer video (``None``: no limit),
            counted on the frames as they are decoded, whatever the file's
            header claims; the run stops at the first frame past the limit.

    Frame timestamps (variable frame rate too), rotation and pixel aspect
    are kept; the first audio stream is copied, or re-encoded when the
    container cannot hold it (Opus in WebM, AAC in MP4/MOV; a PNG sequence
    gets it as ``audio.mka``). A PNG sequence has no container to carry the
    display rotation: its frames are stored turned, as players show them.

    ``dst`` is never the source (by any path) and an existing PNG-sequence
    folder is replaced only if it holds nothing but files this function
    writes (``frame_NNNNNN.png``, ``timestamps.txt``, ``audio.mka``).

    Raises:
        VideoLoadError: ``src`` (or a background video) cannot be read, has
            no video stream or no frames, or its codec is unsupported.
        VideoTooLongError: ``src`` is past ``max_frames`` or ``max_seconds``
            (nothing is written).
        ValueError: a bad argument or destination (before any work).
    """
    from inspyrenet_lite.predictor import MapRequest  # torch: only once there is work

    dst = Path(dst)
    background = _Backgrounds(type) if is_video(type) else None
    spec = OutputSpec("image") if background is not None else parse_output_type(type, max_pixels=remover.max_pixels)
    fmt = _format_of(dst, format, spec)
    options = _checked_options(
        fmt,
        spec,
        threshold=threshold,
        hr_blend=hr_blend,
        reverse=reverse,
        batch_size=batch_size,
        crf=crf,
        max_frames=max_frames,
        max_seconds=max_seconds,
        stability=stability,
    )
    threshold, hr_blend, reverse, batch_size = (options[k] for k in ("threshold", "hr_blend", "reverse", "batch_size"))
    stability = options["stability"]
    _check_destination(src, dst, fmt, background)
    limits = _Limits(repr(str(src)), options["max_frames"], options["max_seconds"])

    started = time.perf_counter()
    reader = VideoReader(src, max_pixels=remover.max_pixels)
    depth = max(1, queue_batches) * batch_size
    run = _Run(reader, dst, fmt, spec, background, threshold, reverse, options["crf"], progress, depth, limits)
    try:
        run.start()
        stabilizer = Stabilizer() if stability else None
        for batch in run.batches(batch_size):
            frames = [item for item in batch if isinstance(item, Frame)]
            # Float maps straight from the engine: no uint8 round trip before compositing.
            requests = [MapRequest(f.rgb, hr_blend=hr_blend, name=f"frame at {f.time:.3f} s") for f in frames]
            maps_iter = iter(remover.predictor.predict_maps(requests, batch_size=batch_size))
            for item in batch:
                if isinstance(item, Frame):
                    saliency = next(maps_iter)
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
        limits: _Limits,
    ) -> None:
        self.reader, self.dst, self.fmt, self.spec = reader, dst, fmt, spec
        self.background, self.threshold, self.reverse, self.crf = background, threshold, reverse, crf
        self.progress, self.limits = progress, limits
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
        frames, first = 0, 0.0
        for item in self.reader.items():
            if isinstance(item, Frame):
                frames += 1
                first = item.time if frames == 1 else first
                self.limits.check(frames, item.time - first)  # decoded frames, whatever the header says
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
        try:
            if self.fmt == "png":
                atomic_folder(
                    self.dst,
                    lambda tmp: self._encode_into(Path(tmp), info, early_audio, first),
                    check_old=_refuse_foreign_folder,  # again at the swap: the folder may have changed meanwhile
                )
            else:
                atomic_write(self.dst, lambda tmp: self._encode_into(Path(tmp), info, early_audio, first))
        except OSError as exc:
            raise _naming_the_output(exc, self.dst) from None

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
        spec = self.background.next_spec() if self.background is not None else self.spec
        options = OutputOptions(spec=spec, threshold=self.threshold, reverse=self.reverse)
        return np.asarray(road.render(Image.fromarray(frame.rgb), saliency, options))
