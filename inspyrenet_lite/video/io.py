"""Reading and writing video with PyAV (FFmpeg's libraries, no system FFmpeg).

Reading: :class:`VideoReader` demuxes a file once, in order, and yields
decoded RGB frames with their own timestamps (variable frame rate kept) and
the audio packets between them, so the audio can be copied or re-encoded
into the output without a second pass. Anything that cannot be read raises
:class:`VideoLoadError`, a ``ValueError`` that names the file.

Writing: :func:`open_writer` returns a writer for one of
:data:`OUTPUT_FORMATS`, into a temporary name that the caller renames when
complete (:func:`inspyrenet_lite._atomic.atomic_write`; :func:`atomic_folder`
for a PNG sequence), so an interrupted run leaves nothing that looks finished.

========  =========================================  ===============================
format    with alpha (``type="rgba"``)                without alpha (maps, composites)
========  =========================================  ===============================
``webm``  VP9 ``yuva420p`` (browsers)                 VP9 ``yuv420p``
``mov``   ProRes 4444 ``yuva444p10le`` (editors)     ProRes 4444 ``yuv444p10le``
``mp4``   refused (H.264 has no alpha)               H.264 ``yuv420p``, CRF
``png``   a folder of RGBA PNGs                       a folder of RGB / grey PNGs
========  =========================================  ===============================
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from inspyrenet_lite._atomic import new_temporary_folder
from inspyrenet_lite.checks import check_options

from .formats import DEFAULT_CRF, OUTPUT_FORMATS

logger = logging.getLogger(__name__)

# Audio codecs each container takes as they are; others are re-encoded to the first codec named.
_AUDIO_COPY = {
    "webm": ("libopus", {"opus", "vorbis"}),
    "mp4": ("aac", {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}),
    "mov": ("aac", {"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"}),
}
_AUDIO_RATES = {"libopus": 48000}


class VideoLoadError(ValueError):
    """A video input could not be read; the message names the file and says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"cannot read video {source}: {reason}")


def require_av() -> Any:
    """Import PyAV, or explain which extra installs it."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - CI installs the extra
        raise ImportError(
            'video needs PyAV: pip install "inspyrenet-lite[video]" (or pip install av)'
        ) from exc
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What a video input is: size of the stored frames, timing and metadata."""

    width: int
    height: int
    time_base: Fraction
    rate: Fraction  # average frame rate (nominal for variable frame rate)
    frames: int | None  # from the header, when it says
    duration: float | None  # seconds, when known
    rotation: int  # display rotation, degrees counter-clockwise
    sample_aspect_ratio: Fraction | None
    codec: str
    has_audio: bool


@dataclass
class Frame:
    """One decoded frame: ``rgb`` HxWx3 uint8, ``pts`` in the stream's time base."""

    rgb: np.ndarray
    pts: int
    duration: int
    time: float
    rotation: int = 0  # display rotation, degrees counter-clockwise


class VideoReader:
    """One pass over a video file: :meth:`items` yields :class:`Frame` objects
    and, between them in file order, the audio packets of the first audio
    stream (``av.Packet``)."""

    def __init__(self, path: str | os.PathLike, max_pixels: int | None = None) -> None:
        av = require_av()
        self.path = Path(path)
        self.name = repr(str(path))
        if not self.path.is_file():
            raise VideoLoadError(self.name, "no such file")
        try:
            self._container = av.open(str(self.path), "r")
        except av.error.FFmpegError as exc:
            raise VideoLoadError(self.name, f"not a video FFmpeg can read ({exc.strerror or exc})") from None
        try:
            self.info = self._probe(av, max_pixels)
        except BaseException:
            self._container.close()
            raise

    def _probe(self, av: Any, max_pixels: int | None) -> VideoInfo:
        container = self._container
        if not container.streams.video:
            raise VideoLoadError(self.name, "the file has no video stream")
        self._video = container.streams.video[0]
        ctx = self._video.codec_context
        if ctx is None or not ctx.codec.is_decoder:
            raise VideoLoadError(
                self.name, "unsupported video codec (this FFmpeg build has no decoder for it); convert it to H.264 first"
            )
        self._video.thread_type = "AUTO"
        width, height = ctx.width, ctx.height
        if width <= 0 or height <= 0:
            raise VideoLoadError(self.name, f"unsupported video codec {ctx.name!r} (no frame size)")
        if max_pixels is not None and width * height > max_pixels:
            raise VideoLoadError(self.name, f"{width}x{height} frames exceed the limit of {max_pixels} pixels")
        self._audio = container.streams.audio[0] if container.streams.audio else None
        tb = self._video.time_base or Fraction(1, 90000)
        rate = self._video.average_rate or self._video.guessed_rate or Fraction(25)
        duration = None
        if self._video.duration is not None:
            duration = float(self._video.duration * tb)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return VideoInfo(
            width=width,
            height=height,
            time_base=Fraction(tb),
            rate=Fraction(rate),
            frames=self._video.frames or None,
            duration=duration,
            rotation=0,  # known from the first decoded frame: see ``items``
            sample_aspect_ratio=ctx.sample_aspect_ratio or None,
            codec=ctx.name,
            has_audio=self._audio is not None,
        )

    @property
    def audio_stream(self) -> Any:
        """The first audio stream (``av.AudioStream``) or ``None``."""
        return self._audio

    def items(self) -> Iterator[Frame | Any]:
        """Frames and audio packets in file order; ``VideoLoadError`` if no frame decodes, or
        if fewer frames decode than the header lists (a truncated file), after the last one."""
        av = require_av()
        streams = [self._video] + ([self._audio] if self._audio is not None else [])
        frame_step = max(1, round(1 / (self.info.rate * self.info.time_base)))
        last_pts: int | None = None
        count = 0
        try:
            for packet in self._container.demux(streams):
                if packet.stream is self._audio:
                    if packet.size:
                        yield packet
                    continue
                for frame in packet.decode():
                    pts = frame.pts if frame.pts is not None else (last_pts + frame_step if last_pts is not None else 0)
                    if last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1  # encoders need strictly increasing timestamps
                    last_pts = pts
                    count += 1
                    yield Frame(
                        rgb=frame.to_ndarray(format="rgb24"),
                        pts=pts,
                        duration=frame.duration or frame_step,
                        time=float(pts * self.info.time_base),
                        rotation=int(round(frame.rotation or 0)),
                    )
        except av.error.FFmpegError as exc:
            of = f" of the {self.info.frames} its header lists" if self.info.frames else ""
            raise VideoLoadError(
                self.name, f"decoding failed after {count} frames{of} ({exc.strerror or exc}); it may be truncated"
            ) from None
        if count == 0:
            raise VideoLoadError(self.name, "the video stream has no frames")
        if self.info.frames and count < self.info.frames:
            # MP4/MOV list every frame in their index: fewer decoded means the data stops early (an
            # interrupted download or copy), not a shorter video; the output would be cut without a word.
            raise VideoLoadError(
                self.name,
                f"it ends after {count} of the {self.info.frames} frames its header lists: the file is truncated "
                "(an interrupted download or copy?); get the whole file and try again",
            )

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header, and its first frame for the display rotation."""
    with VideoReader(path) as reader:
        first = next(item for item in reader.items() if isinstance(item, Frame))
        return replace(reader.info, rotation=first.rotation)


def read_frames(path: str | os.PathLike, format: str = "rgb24") -> Iterator[tuple[np.ndarray, float]]:
    """Decode every frame of a video as (HxWxC uint8 array, time in seconds).

    ``format="rgba"`` keeps the alpha channel of VP9 WebM (decoded with
    libvpx, which reads the alpha layer FFmpeg's own VP9 decoder skips) and of
    ProRes 4444.
    """
    av = require_av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoder = None
        if format == "rgba" and stream.codec_context.name == "vp9":
            decoder = av.CodecContext.create("libvpx-vp9", "r")
        for packet in container.demux(stream):
            if decoder is None:
                frames = packet.decode()
            else:  # the demuxer ends with an empty packet: flush the decoder once
                frames = decoder.decode(packet if packet.size else None)
            for frame in frames:
                time = float(frame.pts * stream.time_base) if frame.pts is not None else float("nan")
                yield frame.to_ndarray(format=format), time


# ------------------------------------------------------------------- writing
def atomic_folder(
    path: str | os.PathLike, write: Callable[[Path], None], check_old: Callable[[Path], None] | None = None
) -> Path:
    """Call ``write(tmp_folder)`` to fill a temporary folder beside ``path``,
    then swap it in for ``path`` (an older folder there is removed only once
    the new one is complete, and after ``check_old(path)`` has not raised:
    the caller's last word on whether it may go). The folder's counterpart of
    :func:`inspyrenet_lite._atomic.atomic_write`."""
    path = Path(path)
    tmp = new_temporary_folder(path.parent, ".tmp")
    try:
        write(tmp)
        old = None
        if check_old is not None and os.path.lexists(path):
            check_old(path)
        if path.exists():
            old = new_temporary_folder(path.parent, ".old")
            os.replace(path, old / "previous")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


class _AudioSink:
    """Copies audio packets into ``out`` when its container takes the codec,
    else decodes and re-encodes them (Opus in WebM, AAC in MP4/MOV)."""

    def __init__(self, av: Any, out: Any, fmt: str, source: Any) -> None:
        self._out = out
        target, copyable = _AUDIO_COPY[fmt]
        self._source = source
        name = source.codec_context.name
        if name in copyable:
            self._stream = out.add_stream_from_template(source)
            self._encoder = None
            logger.info("audio: copying %s", name)
        else:
            rate = _AUDIO_RATES.get(target, source.codec_context.sample_rate or 48000)
            layout = source.codec_context.layout.name if source.codec_context.layout else "stereo"
            if source.codec_context.channels > 2:
                layout = "stereo"
            self._stream = out.add_stream(target, rate=rate, layout=layout)
            codec = self._stream.codec_context.codec
            fmt_name = codec.audio_formats[0].name if codec.audio_formats else "fltp"
            self._resampler = av.AudioResampler(format=fmt_name, layout=layout, rate=rate)
            self._encoder = self._stream
            self._rate = rate
            self._next_pts: int | None = None  # in samples at ``rate``, from the first decoded sample's time
            logger.info("audio: re-encoding %s to %s", name, target)

    def write(self, packet: Any) -> None:
        if self._encoder is None:
            packet.stream = self._stream
            self._out.mux(packet)
            return
        for frame in packet.decode():
            self._encode(frame)

    def _encode(self, frame: Any) -> None:
        if self._next_pts is None and frame is not None:
            start = frame.time if frame.time is not None else 0.0
            self._next_pts = round(start * self._rate)
        for resampled in self._resampler.resample(frame):
            self._mux(resampled)

    def _mux(self, resampled: Any) -> None:
        # Timestamps in samples, not None: the encoder then dates its first packet before them by its
        # priming (AAC 1024 samples, Opus 312), which MP4/MOV signal in an edit list and WebM as
        # CodecDelay; without them the sound came 21 ms (AAC) or 6.5 ms (Opus) late.
        resampled.pts = self._next_pts or 0
        resampled.time_base = Fraction(1, self._rate)
        self._next_pts = resampled.pts + resampled.samples
        self._out.mux(self._encoder.encode(resampled))

    def flush(self) -> None:
        if self._encoder is not None:
            for frame in self._source.codec_context.decode(None) or []:
                self._encode(frame)
            for resampled in self._resampler.resample(None):
                self._mux(resampled)
            self._out.mux(self._encoder.encode(None))


class ContainerWriter:
    """Encodes frames into WebM (VP9), MOV (ProRes 4444) or MP4 (H.264)."""

    def __init__(
        self, path: Path, fmt: str, info: VideoInfo, alpha: bool, grey: bool, crf: int | None, audio: Any
    ) -> None:
        self._av = av = require_av()
        self._path, self._fmt, self._info = path, fmt, info
        self._alpha = alpha
        self._even = fmt == "mp4"  # H.264 4:2:0 needs even sides: the last row/column is repeated
        self._grey = grey
        # MP4 and MOV: the index goes first, so players and browsers start before the end has loaded.
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self._out = av.open(str(path), "w", format=OUTPUT_FORMATS[fmt], container_options=options)
        try:
            self._stream = self._add_video(fmt, info, crf)
            self._audio = _AudioSink(av, self._out, fmt, audio) if audio is not None else None
        except BaseException:
            self.abort()
            raise

    def _add_video(self, fmt: str, info: VideoInfo, crf: int | None) -> Any:
        tb = info.time_base
        if fmt == "webm":
            stream = self._out.add_stream("libvpx-vp9", rate=info.rate, time_base=tb)
            stream.pix_fmt = "yuva420p" if self._alpha else "yuv420p"
            stream.options = {
                "crf": str(DEFAULT_CRF["webm"] if crf is None else crf),
                "b": "0",
                "deadline": "good",
                "cpu-used": "5",
                "row-mt": "1",
            }
        elif fmt == "mov":
            stream = self._out.add_stream("prores_ks", rate=info.rate, time_base=tb)
            stream.pix_fmt = "yuva444p10le" if self._alpha else "yuv444p10le"
            stream.options = {"profile": "4444", "vendor": "apl0"}
        else:
            stream = self._out.add_stream("libx264", rate=info.rate, time_base=tb)
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(DEFAULT_CRF["mp4"] if crf is None else crf), "preset": "medium"}
        width, height = info.width, info.height
        if self._even:
            width, height = width + width % 2, height + height % 2
        stream.width, stream.height = width, height
        stream.thread_type = "AUTO"
        if info.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        return stream

    def write(self, image: np.ndarray, frame: Frame) -> None:
        """Encode one frame: HxWx4 (with alpha), HxWx3 or HxW (grey) uint8."""
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if self._even and (image.shape[0] % 2 or image.shape[1] % 2):
            image = np.pad(image, ((0, image.shape[0] % 2), (0, image.shape[1] % 2), (0, 0)), mode="edge")
        out = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgba" if self._alpha else "rgb24")
        out.pts = frame.pts
        out.duration = frame.duration
        out.time_base = self._stream.codec_context.time_base
        self._out.mux(self._stream.encode(out))

    def write_audio(self, packet: Any) -> None:
        if self._audio is not None:
            self._audio.write(packet)

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        self._out.mux(self._stream.encode(None))
        if self._audio is not None:
            self._audio.flush()
        self._out.close()
        sar = self._info.sample_aspect_ratio
        if self._fmt == "webm" and sar and sar != 1:
            from .webm_aspect import keep_pixel_aspect  # FFmpeg's Matroska muxer cannot be told it through PyAV

            keep_pixel_aspect(self._path, self._stream.width, self._stream.height, sar)

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        try:
            self._out.close()
        except Exception:  # noqa: BLE001 - nothing useful to do with a half-written file
            logger.debug("closing an aborted output failed", exc_info=True)


_PNG_SEQUENCE_FILES = re.compile(r"frame_\d{6,}\.png|timestamps\.txt|audio\.mka")


def foreign_entries(folder: str | os.PathLike) -> list[str]:
    """The names in ``folder`` that :class:`PngSequenceWriter` does not write
    (other files, subfolders, links), sorted; ``[]`` for a folder of ours."""
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if not (_PNG_SEQUENCE_FILES.fullmatch(entry.name) and entry.is_file(follow_symlinks=False))
    )


class PngSequenceWriter:
    """A folder of ``frame_000000.png`` files, ``timestamps.txt`` (frame file
    and time in seconds, one a line: the frame rate may vary) and the audio,
    copied as it is into ``audio.mka``. A PNG file cannot carry the display
    rotation, so the frames are stored turned as a player shows them."""

    def __init__(self, path: Path, info: VideoInfo, audio: Any) -> None:
        self._av = require_av()
        self._folder = path
        self._turns = round(info.rotation / 90) % 4  # counter-clockwise quarter turns, as np.rot90 counts
        if info.rotation % 90:
            logger.warning("display rotation %d degrees: PNG frames turned by the nearest quarter turn", info.rotation)
        if info.sample_aspect_ratio and info.sample_aspect_ratio != 1:
            logger.warning(
                "pixel aspect ratio %s: a PNG file cannot carry it, so the frames are stored with the source's "
                "non-square pixels as they are (scale their width by %s to show them as the video shows); "
                "use the webm, mov or mp4 format to keep it",
                info.sample_aspect_ratio,
                info.sample_aspect_ratio,
            )
        self._times: list[str] = []
        self._audio_out = None
        if audio is not None:
            # Timestamps kept as they are, negative ones too: an AAC track's priming is dated before 0
            # (MP4's edit list), and shifting it to 0 made the sound 21 ms late against the frames.
            self._audio_out = self._av.open(
                str(self._folder / "audio.mka"), "w", format="matroska", options={"avoid_negative_ts": "disabled"}
            )
            self._audio_stream = self._audio_out.add_stream_from_template(audio)

    def write(self, image: np.ndarray, frame: Frame) -> None:
        from PIL import Image

        from inspyrenet_lite.image_io import save_image

        name = f"frame_{len(self._times):06d}.png"
        if self._turns:
            image = np.ascontiguousarray(np.rot90(image, self._turns))
        save_image(Image.fromarray(image), self._folder / name, format="PNG")
        self._times.append(f"{name} {frame.time:.6f}\n")

    def write_audio(self, packet: Any) -> None:
        if self._audio_out is not None:
            packet.stream = self._audio_stream
            self._audio_out.mux(packet)

    def close(self) -> None:
        (self._folder / "timestamps.txt").write_text("".join(self._times))
        if self._audio_out is not None:
            self._audio_out.close()

    def abort(self) -> None:
        if self._audio_out is not None:
            try:
                self._audio_out.close()
            except Exception:  # noqa: BLE001
                logger.debug("closing an aborted audio file failed", exc_info=True)


def open_writer(
    path: str | os.PathLike,
    fmt: str,
    info: VideoInfo,
    *,
    alpha: bool,
    grey: bool = False,
    crf: int | None = None,
    audio: Any = None,
) -> ContainerWriter | PngSequenceWriter:
    """A writer for ``fmt`` (one of :data:`OUTPUT_FORMATS`) into ``path``
    (a file, or an existing folder for ``png``): meant to be a temporary name
    of :func:`~inspyrenet_lite._atomic.atomic_write` / :func:`atomic_folder`.

    Call ``write(image, frame)`` per frame, ``write_audio(packet)`` for
    audio packets, then ``close()`` to finish, or ``abort()`` on failure.
    """
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown video format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if alpha and fmt == "mp4":
        raise ValueError("mp4 (H.264) cannot store transparency; use webm or mov for type='rgba'")
    check_options(**{"crf_mp4" if fmt == "mp4" else "crf": crf})
    path = Path(path)
    if fmt == "png":
        return PngSequenceWriter(path, info, audio)
    return ContainerWriter(path, fmt, info, alpha, grey, crf, audio)
