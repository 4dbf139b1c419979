"""Small test clips made with PyAV from the sample photos (tests/data/photos).

``make_clip`` renders a still shot (per-frame sensor noise, then H.264
compression), a pan or a zoom over a photo, optionally with a sine-tone audio
track, display-rotation metadata or a variable frame rate. Frame times are
returned so tests compare against what was written, not what was read.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

TONE_HZ = 440.0
AUDIO_RATE = 48000


def render_frames(photo: Image.Image, kind: str, frames: int, size: tuple[int, int], noise: float, seed: int = 0):
    """``frames`` HxWx3 uint8 arrays of ``photo`` (``size`` is (W, H))."""
    rng = np.random.default_rng(seed)
    width, height = size
    src_w, src_h = photo.size
    out = []
    for t in range(frames):
        if kind == "still":
            box = (0, 0, src_w, src_h)
        elif kind == "pan":  # a window 70 % wide sliding left to right
            win = int(src_w * 0.7)
            x0 = round((src_w - win) * t / max(1, frames - 1))
            box = (x0, 0, x0 + win, src_h)
        elif kind == "zoom":  # closing in on the centre to half the field
            f = 1.0 - 0.5 * t / max(1, frames - 1)
            w, h = src_w * f, src_h * f
            box = ((src_w - w) / 2, (src_h - h) / 2, (src_w + w) / 2, (src_h + h) / 2)
        else:
            raise ValueError(kind)
        img = np.asarray(photo.resize(size, Image.Resampling.BILINEAR, box=box), dtype=np.float32)
        if noise:
            img = img + rng.normal(0.0, noise, img.shape)
        out.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    assert out[0].shape == (height, width, 3)
    return out


def make_clip(
    path: Path,
    photo: Image.Image,
    kind: str = "still",
    frames: int = 6,
    size: tuple[int, int] = (160, 96),
    fps: int = 25,
    audio: bool = True,
    rotation: int = 0,
    vfr: bool = False,
    noise: float = 3.0,
    container_format: str | None = None,
    pixel_aspect: Fraction | None = None,
) -> list[float]:
    """Write the clip (H.264 yuv420p, crf 23; AAC tone) and return its frame times in seconds.

    ``pixel_aspect``: the sample (pixel) aspect ratio the file declares (anamorphic video).

    With ``vfr`` frames last alternately 40 and 80 ms (time base 1/1000).
    """
    images = render_frames(photo, kind, frames, size, noise)
    times = []
    with av.open(str(path), "w", format=container_format) as out:
        tb = Fraction(1, 1000) if vfr else Fraction(1, fps)
        stream = out.add_stream("libx264", rate=fps, time_base=tb)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        if pixel_aspect is not None:
            stream.codec_context.sample_aspect_ratio = pixel_aspect
        astream = out.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio else None
        pts = 0
        for i, img in enumerate(images):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            step = (40 if i % 2 == 0 else 80) if vfr else 1
            frame.pts, frame.time_base, frame.duration = pts, tb, step
            times.append(float(pts * tb))
            out.mux(stream.encode(frame))
            pts += step
        out.mux(stream.encode(None))
        if astream is not None:
            seconds = float(pts * tb)
            n = int(round(seconds * AUDIO_RATE))
            tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * np.arange(n) / AUDIO_RATE)).astype(np.float32)
            step = 1024
            for start in range(0, n, step):
                chunk = tone[start : start + step]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                frame.sample_rate = AUDIO_RATE
                frame.pts = start
                out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    return times


def retime_clip(src: Path, dst: Path, rotation: int = 0, vfr: bool = False) -> list[float]:
    """Copy ``src``'s packets into ``dst`` (Matroska) with display rotation
    and/or variable frame timing (frames lasting 40 and 80 ms in turn), so
    the decoded pixels stay exactly those of ``src``. Returns the frame times
    as PyAV decodes them from ``dst`` (Matroska shifts them by the audio's
    priming delay, which MP4 hides in an edit list).

    ``src`` must have no B-frames (``make_clip``'s ultrafast preset has none).
    """
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="matroska") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        if rotation:
            vout.set_display_rotation(rotation)
        streams = {vin.index: vout}
        if inp.streams.audio:
            streams[inp.streams.audio[0].index] = out.add_stream_from_template(inp.streams.audio[0])
        index, ms = 0, 0
        for packet in inp.demux():
            if packet.size == 0:
                continue
            if packet.stream.index == vin.index and vfr:
                packet.time_base = Fraction(1, 1000)
                packet.pts = packet.dts = ms
                packet.duration = 40 if index % 2 == 0 else 80
                ms += packet.duration
                index += 1
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return stream_facts(dst)["times"]


def stream_facts(path: Path) -> dict:
    """Frame count, size, frame times, rotation, durations and audio facts of a file, decoded back."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        times, rotation, size = [], None, None
        for frame in container.decode(video):
            times.append(float(frame.pts * video.time_base))
            rotation = frame.rotation if rotation is None else rotation
            size = (frame.width, frame.height)
        facts = {
            "frames": len(times),
            "times": times,
            "size": size,
            "rotation": rotation,
            "video_codec": video.codec_context.name,
            "audio_codec": None,
            "audio_seconds": None,
            "container_seconds": container.duration / 1e6 if container.duration else None,
        }
    with av.open(str(path)) as container:
        if container.streams.audio:
            astream = container.streams.audio[0]
            samples, rate = 0, astream.codec_context.sample_rate
            for frame in container.decode(astream):
                samples += frame.samples
            facts["audio_codec"] = astream.codec_context.name
            facts["audio_seconds"] = samples / rate
    return facts


def displayed_frames(path: Path) -> list[np.ndarray]:
    """The frames of ``path`` as a player shows them: decoded by PyAV and turned
    by FFmpeg's own filters the way its command line autorotates (display
    rotation +90 -> ``transpose=cclock``, -90 -> ``transpose=clock``, 180 ->
    ``hflip,vflip``), independent of the library's code."""
    filters = {0: [], 90: [("transpose", "cclock")], -90: [("transpose", "clock")], 180: [("hflip", ""), ("vflip", "")]}
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = None
        for frame in container.decode(stream):
            if graph is None:
                rotation = int(round(frame.rotation or 0))
                rotation = 180 if rotation == -180 else rotation
                graph = av.filter.Graph()
                node = graph.add_buffer(template=stream)
                for name, arg in [("format", "rgb24"), *filters[rotation], ("buffersink", "")]:
                    step = graph.add(name, arg) if arg else graph.add(name)
                    node.link_to(step)
                    node = step
                graph.configure()
            graph.push(frame)
            out.append(graph.pull().to_ndarray(format="rgb24"))
    return out


def lie_about_duration(path: Path, seconds: float) -> None:
    """Make a Matroska file's header claim it lasts ``seconds`` (segment
    Duration and the track's DURATION tag), whatever its frames say: what a
    hostile upload can do. Millisecond timecode scale, as PyAV writes it."""
    import struct

    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Duration element, an 8-byte float, in ms
    assert at > 0, "no segment Duration element"
    data[at + 3 : at + 11] = struct.pack(">d", seconds * 1000.0)
    start = data.find(b"00:00:")  # the DURATION tag, "HH:MM:SS.nnnnnnnnn"
    assert start > 0, "no DURATION tag"
    data[start : start + 18] = f"00:00:{seconds:012.9f}".encode()
    path.write_bytes(bytes(data))


def truncated_copy(src: Path, dst: Path) -> tuple[int, int]:
    """``src`` remuxed into an MP4 with its index first (``+faststart``, as phones and the web write
    them) and then cut at the start of its middle video packet: what an interrupted download leaves.
    Returns (frames the index lists, frames left whole)."""
    whole = dst.with_name(dst.stem + "_whole.mp4")
    with av.open(str(src)) as inp, av.open(str(whole), "w", options={"movflags": "+faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in (*inp.streams.video, *inp.streams.audio)}
        for packet in inp.demux():
            if packet.size and packet.stream.index in streams:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    with av.open(str(whole)) as container:
        video = container.streams.video[0]
        listed = video.frames
        starts = [packet.pos for packet in container.demux(video) if packet.size]
    data = whole.read_bytes()
    whole.unlink()
    assert data.find(b"moov") < data.find(b"mdat"), "the index must come first"
    dst.write_bytes(data[: starts[len(starts) // 2]])
    return listed, len(starts) // 2


#: Where the tone burst of ``make_click_clip`` starts, in seconds.
CLICK_AT = 0.3


def make_click_clip(path: Path, container_format: str, audio_codec: str) -> None:
    """One second of grey frames (H.264 in MP4, VP9 in WebM) with a sound that is silent but for a
    50 ms tone burst at ``CLICK_AT``: a mark whose time says whether the audio moved."""
    video_codec = "libvpx-vp9" if container_format == "webm" else "libx264"
    with av.open(str(path), "w", format=container_format) as out:
        video = out.add_stream(video_codec, rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream(audio_codec, rate=AUDIO_RATE, layout="mono")
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 128, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        sound = np.zeros(AUDIO_RATE, np.float32)
        burst = np.arange(AUDIO_RATE // 20)
        start = int(CLICK_AT * AUDIO_RATE)
        sound[start : start + burst.size] = 0.8 * np.sin(2 * np.pi * 1000.0 * burst / AUDIO_RATE)
        step = audio.codec_context.frame_size or 1024
        sample_format = "fltp" if audio_codec == "aac" else "flt"
        for at in range(0, sound.size, step):
            frame = av.AudioFrame.from_ndarray(sound[None, at : at + step], format=sample_format, layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, at
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


def sound_onset(path: Path) -> float:
    """When the first loud sample of ``path``'s audio plays, in seconds, as FFmpeg decodes it
    (priming dropped as the container signals it)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        start, rate, chunks = None, stream.codec_context.sample_rate, []
        for frame in container.decode(stream):
            if start is None:
                start = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
            chunks.append(frame.to_ndarray()[0].astype(np.float32))
    sound = np.concatenate(chunks)
    return start + int(np.argmax(np.abs(sound) > 0.2)) / rate
