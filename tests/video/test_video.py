"""Video: every output format decodes back right, alpha equals the map,
sound kept, stability measured, no half outputs, clear errors, bounded memory.

Clips are made here with PyAV (tests/video_clips.py) from the sample photos
and processed with the full-size random checkpoint (conftest ``remover``) at
160x96. The network sees 384x384 whatever the clip size, so frames cost
seconds on a CPU: ``maps`` below remembers the map of each distinct decoded
frame, and the same frames (the pan clip) serve several formats.
"""

from __future__ import annotations

import logging
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from video_helpers import GreyRemover, MemoRemover
from video_clips import (
    AUDIO_RATE,
    displayed_frames,
    lie_about_duration,
    make_click_clip,
    make_clip,
    retime_clip,
    sound_onset,
    stream_facts,
    truncated_copy,
)

from inspyrenet_lite.predictor import MapRequest
from inspyrenet_lite.video import Stabilizer, VideoLoadError, VideoTooLongError, flicker, lag, process_video
from inspyrenet_lite.video.io import read_frames

SIZE = (160, 96)
FRAMES = 4  # the network costs seconds per frame on a CPU


@pytest.fixture(scope="module")
def maps(remover) -> MemoRemover:
    return MemoRemover(remover)


@pytest.fixture(scope="module")
def full_size_cat(images_dir: Path) -> Image.Image:
    with Image.open(images_dir / "cat.png") as img:
        return img.convert("RGB")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, full_size_cat) -> dict[str, tuple[Path, list[float]]]:
    folder = tmp_path_factory.mktemp("clips")
    specs = {"pan": dict(kind="pan"), "still": dict(kind="still", frames=6, noise=4.0), "zoom": dict(kind="zoom")}
    out = {}
    for name, kw in specs.items():
        kw.setdefault("frames", FRAMES)
        out[name] = (folder / f"{name}.mp4", make_clip(folder / f"{name}.mp4", full_size_cat, size=SIZE, **kw))
    # The same frames (same pixels, so the maps are computed once) with rotation or variable timing.
    pan = out["pan"][0]
    out["rotated"] = (folder / "rotated.mkv", retime_clip(pan, folder / "rotated.mkv", rotation=90))
    out["vfr"] = (folder / "vfr.mkv", retime_clip(pan, folder / "vfr.mkv", vfr=True))
    return out


def decoded_rgb(path: Path) -> list[np.ndarray]:
    """The source frames as PyAV decodes them (what the pipeline sees)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def png_sequence(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("frame_*.png"))]


def assert_same_timing(out: Path, src: Path, times: list[float]) -> dict:
    facts, source = stream_facts(out), stream_facts(src)
    assert facts["frames"] == len(times)
    assert facts["size"] == SIZE
    assert facts["times"] == pytest.approx(times, abs=1e-3)
    assert facts["rotation"] == source["rotation"]
    # Audio: present, as long as the source's (within one Opus/AAC frame of padding).
    assert facts["audio_seconds"] == pytest.approx(source["audio_seconds"], abs=0.03)
    assert facts["container_seconds"] == pytest.approx(source["container_seconds"], abs=0.05)
    return facts


# ------------------------------------------------------------------ formats
@pytest.mark.parametrize(
    ("name", "type", "codec", "audio"),
    [
        ("cut.webm", "rgba", "vp9", "opus"),  # AAC cannot go in WebM: re-encoded
        ("cut.mov", "rgba", "prores", "aac"),  # copied
        ("green.mp4", "green", "h264", "aac"),
        ("matte.mp4", "map", "h264", "aac"),
    ],
)
def test_container_formats_decode_back(tmp_path, clips, maps, name, type, codec, audio):
    src, times = clips["pan"]
    result = process_video(maps, src, tmp_path / name, type=type)
    facts = assert_same_timing(tmp_path / name, src, times)
    assert (facts["video_codec"], facts["audio_codec"]) == (codec, audio)
    assert result.frames == FRAMES and result.audio
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("in.mp4", "cut.webm"),  # AAC re-encoded to Opus: was 6.5 ms late
        ("in.mp4", "cut.mov"),  # copied
        ("in.mp4", "cut_frames"),  # copied into audio.mka: was 21 ms late
        ("in.webm", "cut.mov"),  # Opus re-encoded to AAC: was 21 ms late
        ("in.webm", "cut.webm"),  # copied
    ],
)
def test_the_sound_stays_where_it_was_against_the_frames(tmp_path, source, name):
    """Each encoder's priming (AAC 1024 samples, Opus 312) is signalled, so a player starts the
    sound where the input's plays: within a millisecond (an audio frame is 20-21 ms)."""
    src = tmp_path / source
    make_click_clip(src, src.suffix[1:], "aac" if source.endswith("mp4") else "libopus")
    out = tmp_path / name
    process_video(GreyRemover(), src, out, type="rgba" if name != "cut_frames" else "map")
    produced = sound_onset(out / "audio.mka" if name == "cut_frames" else out)
    assert produced == pytest.approx(sound_onset(src), abs=1e-3)


@pytest.mark.parametrize("clip", ["rotated", "vfr"])
def test_rotation_and_variable_frame_rate_kept(tmp_path, clips, maps, clip):
    src, times = clips[clip]
    process_video(maps, src, tmp_path / "cut.webm")
    facts = assert_same_timing(tmp_path / "cut.webm", src, times)
    if clip == "rotated":
        assert facts["rotation"] == 90
    else:
        assert np.diff(facts["times"]) == pytest.approx([0.04 if i % 2 == 0 else 0.08 for i in range(FRAMES - 1)], abs=1e-3)


@pytest.mark.parametrize(("name", "tolerance"), [("cut.webm", 6.0), ("cut.mov", 1.0), ("cut_frames", 0.0)])
def test_alpha_equals_the_per_frame_map(tmp_path, clips, maps, name, tolerance):
    src, _ = clips["pan"]
    process_video(maps, src, tmp_path / name, stability=False)
    # The Predictor's float map of each decoded source frame (remembered by ``maps``), in grey levels
    # (truncated, as the outputs store it).
    expected = [np.floor(m * 255) for m in maps.predict_maps([MapRequest(f) for f in decoded_rgb(src)])]
    if name.endswith("_frames"):
        decoded = png_sequence(tmp_path / name)
        assert (tmp_path / name / "audio.mka").is_file()
        lines = (tmp_path / name / "timestamps.txt").read_text().splitlines()
        assert [float(line.split()[1]) for line in lines] == pytest.approx(clips["pan"][1], abs=1e-6)
    else:
        decoded = [f for f, _ in read_frames(tmp_path / name, format="rgba")]
    assert len(decoded) == FRAMES
    for frame, want in zip(decoded, expected):
        assert frame.shape == (SIZE[1], SIZE[0], 4)
        alpha = frame[:, :, 3].astype(np.float32)
        assert alpha.std() > 3  # a real map, not a constant (random weights: low contrast on some frames)
        # Mean error in grey levels: VP9 codes alpha lossily (crf 30), ProRes in 10 bits, PNG exactly.
        assert np.abs(alpha - want).mean() <= tolerance


def test_background_video_composite(tmp_path, clips, maps):
    src, times = clips["pan"]
    background, _ = clips["zoom"]
    process_video(maps, src, tmp_path / "over.mp4", type=str(background), stability=False)
    assert_same_timing(tmp_path / "over.mp4", src, times)
    # Where the map is 0 the output shows the background video's frame.
    cut = [f for f, _ in read_frames(tmp_path / "over.mp4")]
    back = decoded_rgb(background)
    matte = [np.floor(m * 255) for m in maps.predict_maps([MapRequest(f) for f in decoded_rgb(src)])]
    for out, bg, m in zip(cut, back, matte):
        clear = m < 8
        assert clear.sum() > 50
        assert np.abs(out[clear].astype(float) - bg[clear]).mean() < 12


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_png_sequence_of_a_rotated_clip_is_stored_upright(tmp_path, clips, rotation):
    """A PNG file has no container to carry the display rotation: the frames
    are stored turned, as a player shows the clip (FFmpeg's autorotation)."""
    src = tmp_path / "rotated.mkv"
    retime_clip(clips["pan"][0], src, rotation=rotation)
    process_video(GreyRemover(), src, tmp_path / "cut_frames", type="map", stability=False)
    shown = displayed_frames(src)
    assert shown[0].shape[:2] == ((SIZE[0], SIZE[1]) if rotation != 180 else (SIZE[1], SIZE[0]))
    got = png_sequence(tmp_path / "cut_frames")
    assert len(got) == len(shown) == FRAMES
    for png, frame in zip(got, shown):
        np.testing.assert_array_equal(png, frame[:, :, 1])  # GreyRemover's map: the green channel


# ------------------------------------------------------------------ limits
def test_frame_limit_counts_decoded_frames_not_the_header(tmp_path, clips):
    """A clip whose header says it is short is still stopped at the limit,
    counted on the frames as they are decoded; nothing is left behind."""
    src = tmp_path / "liar.mkv"
    retime_clip(clips["still"][0], src)  # 6 frames
    lie_about_duration(src, 0.04)  # "one frame long"
    assert process_video(GreyRemover(), src, tmp_path / "ok.webm", max_frames=6).frames == 6
    (tmp_path / "ok.webm").unlink()
    decoded = []
    with pytest.raises(VideoTooLongError, match=r"liar\.mkv.*more than 3 frames") as info:
        process_video(GreyRemover(), src, tmp_path / "cut.webm", max_frames=3, progress=decoded.append)
    assert isinstance(info.value, ValueError)
    assert sum(decoded) <= 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["liar.mkv"]


@pytest.mark.parametrize("name", ["cut.mp4", "cut_frames"])
def test_duration_limit_counts_decoded_time(tmp_path, clips, name):
    src = tmp_path / "liar.mkv"
    retime_clip(clips["still"][0], src)  # 6 frames at 25 fps: the last starts at 0.2 s
    lie_about_duration(src, 0.04)
    with pytest.raises(VideoTooLongError, match=r"longer than 0\.1 s"):
        process_video(GreyRemover(), src, tmp_path / name, type="white", max_seconds=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["liar.mkv"]
    assert process_video(GreyRemover(), src, tmp_path / name, type="white", max_seconds=0.25).frames == 6


# ---------------------------------------------------------------- stability
class MovingSquareRemover:
    """Maps of a square that moves 12 pixels a frame, whatever the picture."""

    max_pixels = None

    def __init__(self) -> None:
        self.index = 0

    def map(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        out = np.zeros(shape[:2], np.uint8)
        x = 20 + 12 * index
        out[30:70, x : x + 40] = 230
        return out

    @property
    def predictor(self):
        return self

    def predict_maps(self, requests, batch_size=1, errors="raise"):
        maps = [self.map(self.index + i, np.shape(r.image)) / np.float32(255) for i, r in enumerate(requests)]
        self.index += len(requests)
        return maps


def test_stability_follows_a_subject_moving_over_a_flat_picture(tmp_path):
    """Where the picture does not change but the subject's map jumps (a subject
    moving over a flat background), the stabilised map follows the jump at once:
    no ghost of the square left where it was, no faint square where it went."""
    src = tmp_path / "flat.mp4"
    make_clip(src, Image.new("RGB", SIZE, (90, 120, 150)), frames=5, size=SIZE, audio=False, noise=0.0)
    process_video(MovingSquareRemover(), src, tmp_path / "on_frames", type="map", stability=True)
    got = png_sequence(tmp_path / "on_frames")
    reference = MovingSquareRemover()
    assert len(got) == 5
    for index, frame in enumerate(got):
        error = int(np.abs(frame.astype(int) - reference.map(index, frame.shape)).max())
        assert error <= 2, f"frame {index} trails the moving subject by up to {error} grey levels"


def test_stabilizer_still_smooths_small_wobbles_on_a_flat_picture():
    """The jump rule is for jumps: a small wobble of the map on the same flat
    picture is still smoothed (the flicker the stabiliser is there to remove)."""
    rgb = np.full((96, 160, 3), 128, np.uint8)
    stabilizer = Stabilizer()
    stabilizer(rgb, np.full((96, 160), 0.5, np.float32))
    out = stabilizer(rgb, np.full((96, 160), 0.55, np.float32))  # a 0.05 wobble
    assert out == pytest.approx(np.full((96, 160), 0.51), abs=1e-6)
    out = stabilizer(rgb, np.full((96, 160), 1.0, np.float32))  # a 0.49 jump: followed
    assert out == pytest.approx(np.ones((96, 160)), abs=1e-6)


# ---------------------------------------------------------------- stability (network maps)
def _maps_of(folder: Path) -> list[np.ndarray]:
    return [m.astype(np.float32) / 255.0 for m in png_sequence(folder)]


def test_stability_removes_flicker_on_a_still_shot(tmp_path, clips, maps):
    src, _ = clips["still"]
    frames = decoded_rgb(src)
    process_video(maps, src, tmp_path / "on_frames", type="map", stability=True)
    process_video(maps, src, tmp_path / "off_frames", type="map", stability=False)
    on, off = flicker(_maps_of(tmp_path / "on_frames"), frames), flicker(_maps_of(tmp_path / "off_frames"), frames)
    print(f"still: flicker off {255 * off:.2f}, on {255 * on:.2f} grey levels")
    assert off > 0.002  # the noisy still shot does flicker frame by frame
    assert on < 0.5 * off


@pytest.mark.parametrize("clip", ["pan", "zoom"])
def test_stability_does_not_ghost_on_motion(tmp_path, clips, maps, clip):
    src, _ = clips[clip]
    frames = decoded_rgb(src)
    process_video(maps, src, tmp_path / "on_frames", type="map", stability=True)
    process_video(maps, src, tmp_path / "off_frames", type="map", stability=False)
    on, off = _maps_of(tmp_path / "on_frames"), _maps_of(tmp_path / "off_frames")
    # Stated bound: where the image moved, the stabilised map trails the
    # per-frame map by at most 10 grey levels (4 %) on average.
    print(f"{clip}: flicker off {255 * flicker(off, frames):.2f}, on {255 * flicker(on, frames):.2f}; "
          f"lag on {255 * lag(on, off, frames):.2f} grey levels")
    assert lag(on, off, frames) <= 10 / 255
    assert lag(off, off, frames) == 0.0


# --------------------------------------------------------- never lose work
@pytest.mark.parametrize("name", ["cut.webm", "cut_frames"])
def test_interrupted_run_leaves_nothing(tmp_path, clips, name):
    src, _ = clips["pan"]
    seen = []

    def progress(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_video(GreyRemover(), src, tmp_path / name, progress=progress)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_replaced_only_when_complete(tmp_path, clips):
    src, _ = clips["pan"]
    longer, _ = clips["still"]  # 6 frames: more than the pan clip's
    process_video(GreyRemover(), longer, tmp_path / "cut_frames")
    process_video(GreyRemover(), src, tmp_path / "cut_frames", reverse=True)
    # The earlier run's folder (only files it wrote) is replaced as a whole: no stale frames 4 and 5.
    assert len(list((tmp_path / "cut_frames").glob("frame_*.png"))) == FRAMES
    assert len((tmp_path / "cut_frames" / "timestamps.txt").read_text().splitlines()) == FRAMES
    assert [p.name for p in tmp_path.iterdir()] == ["cut_frames"]


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("foreign", ["notes.txt", "edits/frame_000001.png", "frame_1.png"])
def test_frames_folder_holding_other_files_is_refused(tmp_path, clips, foreign):
    """A PNG-sequence output replaces its whole folder: one that holds anything
    the tool did not write (a file of another name, a subfolder) is refused
    before any work, and left exactly as it was."""
    src, _ = clips["pan"]
    folder = tmp_path / "cut_frames"
    process_video(GreyRemover(), src, folder)  # a folder of ours...
    (folder / foreign).parent.mkdir(exist_ok=True)
    (folder / foreign).write_text("the user's own work")  # ...where the user put something
    before = _tree(tmp_path)
    remover = GreyRemover()
    remover.predict_maps = lambda *a, **k: pytest.fail("refused only after work started")
    with pytest.raises(ValueError, match=r"cut_frames.*did not write.*" + foreign.split("/")[0]):
        process_video(remover, src, folder)
    assert _tree(tmp_path) == before


def test_frames_folder_filled_while_running_is_not_swapped(tmp_path, clips):
    """Checked again at the swap: a file put into the old folder during the run
    survives, the new frames are dropped, nothing temporary is left."""
    src, _ = clips["pan"]
    folder = tmp_path / "cut_frames"
    process_video(GreyRemover(), src, folder)

    def progress(n: int) -> None:
        (folder / "notes.txt").write_text("written during the run")

    with pytest.raises(ValueError, match="did not write"):
        process_video(GreyRemover(), src, folder, progress=progress)
    assert (folder / "notes.txt").read_text() == "written during the run"
    assert [p.name for p in tmp_path.iterdir()] == ["cut_frames"]


@pytest.mark.parametrize("how", ["same", "dot", "absolute", "symlink", "source-symlink", "hardlink", "png"])
def test_destination_that_is_the_source_is_refused(tmp_path, clips, monkeypatch, how):
    """Writing a video over its own source would lose the clip: refused before
    any work, whatever path names it (relative, ./, a link, a hard link)."""
    monkeypatch.chdir(tmp_path)
    clip = tmp_path / "a.mp4"
    clip.write_bytes(clips["pan"][0].read_bytes())
    src, dst, fmt = "a.mp4", "a.mp4", None
    if how == "dot":
        dst = "./a.mp4"
    elif how == "absolute":
        src, dst = "a.mp4", str(clip)
    elif how == "symlink":
        (tmp_path / "link.mp4").symlink_to(clip)
        dst = "link.mp4"
    elif how == "source-symlink":
        (tmp_path / "link.mp4").symlink_to(clip)
        src = "link.mp4"
    elif how == "hardlink":
        (tmp_path / "b.mp4").hardlink_to(clip)
        dst = "b.mp4"
    elif how == "png":
        fmt = "png"
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match="is the source"):
        process_video(GreyRemover(), src, dst, type="map", format=fmt)
    assert _tree(tmp_path) == before


def test_a_container_output_that_is_a_folder_is_refused(tmp_path, clips):
    src, _ = clips["pan"]
    (tmp_path / "cut.webm").mkdir()
    (tmp_path / "cut.webm" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="is a folder"):
        process_video(GreyRemover(), src, tmp_path / "cut.webm")
    assert _tree(tmp_path) == {"cut.webm": None, "cut.webm/keep.txt": b"x"}



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc takes no new files on Linux only")
@pytest.mark.parametrize("name", ["cut.webm", "cut_frames"])
def test_an_output_that_cannot_be_written_is_named_as_given_not_by_our_temporary(clips, name):
    src, _ = clips["pan"]
    dst = Path("/proc") / name  # the folder exists, but no file can be made in it
    with pytest.raises(OSError) as info:
        process_video(GreyRemover(), src, dst)
    message = str(info.value)
    assert f"cannot write the output {str(dst)!r}" in message
    assert ".part" not in message and ".tmp" not in message and "inspyrenet-" not in message



@pytest.mark.parametrize("name", ["cut.webm", "cut_frames"])
def test_a_truncated_mp4_fails_naming_the_frames_decoded_and_expected(tmp_path, clips, name):
    src = tmp_path / "half.mp4"
    listed, whole = truncated_copy(clips["still"][0], src)
    with pytest.raises(VideoLoadError, match=rf"half\.mp4.*ends after {whole} of the {listed} frames.*truncated"):
        process_video(GreyRemover(), src, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.mp4"]  # no shorter output passed off as done



# ------------------------------------------------------------ pixel aspect
@pytest.fixture(scope="module")
def anamorphic(tmp_path_factory, full_size_cat) -> Path:
    path = tmp_path_factory.mktemp("anamorphic") / "wide.mp4"
    make_clip(path, full_size_cat, frames=3, size=SIZE, pixel_aspect=Fraction(4, 3))
    return path


@pytest.mark.parametrize(("name", "type"), [("cut.webm", "rgba"), ("cut.webm", "map"), ("cut.mov", "rgba")])
def test_the_pixel_aspect_ratio_is_kept(tmp_path, anamorphic, name, type):
    out = tmp_path / name
    process_video(GreyRemover(), anamorphic, out, type=type)
    with av.open(str(out)) as container:
        ratio = container.streams.video[0].sample_aspect_ratio
    assert ratio is not None and abs(float(ratio) - 4 / 3) < 0.01, ratio  # WebM gave 1 (square pixels)
    assert len(list(read_frames(out, "rgba" if type == "rgba" else "rgb24"))) == 3  # the header edit breaks nothing


def test_a_png_sequence_says_it_drops_the_pixel_aspect_ratio(tmp_path, anamorphic, caplog):
    with caplog.at_level(logging.WARNING, logger="inspyrenet_lite.video"):
        process_video(GreyRemover(), anamorphic, tmp_path / "cut_frames", type="map")
    (line,) = [r.getMessage() for r in caplog.records if "pixel aspect ratio" in r.getMessage()]
    assert "4/3" in line and "PNG" in line


# ------------------------------------------------------------- bad inputs
def _no_frames(path: Path) -> None:
    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        _tone(out)


def _tone(out) -> None:
    audio = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    frame.sample_rate, frame.pts = AUDIO_RATE, 0
    out.mux(audio.encode(frame))
    out.mux(audio.encode(None))


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        _tone(out)


def _unknown_codec(path: Path, full_size_cat: Image.Image) -> None:
    make_clip(path, full_size_cat, frames=2, audio=False, container_format="matroska")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/AVC"))  # a codec id nobody decodes


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (None, "no such file"),
        (lambda p, full_size_cat: p.write_text("not a video at all\n" * 50), "not a video FFmpeg can read"),
        (lambda p, full_size_cat: _audio_only(p), "has no video stream"),
        (lambda p, full_size_cat: _no_frames(p), "has no frames"),
        (_unknown_codec, "unsupported video codec"),
    ],
    ids=["missing", "text", "audio-only", "zero-frames", "unknown-codec"],
)
def test_bad_inputs_give_one_clear_error(tmp_path, full_size_cat, make, reason):
    src = tmp_path / "input.mp4"
    if make is not None:
        make(src, full_size_cat)
    before = set(tmp_path.iterdir())
    with pytest.raises(VideoLoadError, match=reason) as info:
        process_video(GreyRemover(), src, tmp_path / "out.webm")
    assert "input.mp4" in str(info.value)
    assert set(tmp_path.iterdir()) == before  # nothing written


def test_bad_arguments_fail_before_work(tmp_path, clips):
    src, _ = clips["pan"]
    maps = GreyRemover()
    with pytest.raises(ValueError, match="cannot store transparency"):
        process_video(maps, src, tmp_path / "cut.mp4", type="rgba")
    with pytest.raises(ValueError, match="crf"):
        process_video(maps, src, tmp_path / "cut.mp4", type="white", crf=70)
    with pytest.raises(ValueError, match="video format"):
        process_video(maps, src, tmp_path / "cut.avi")
    with pytest.raises(ValueError, match="unknown output type"):
        process_video(maps, src, tmp_path / "cut.mp4", type="purple-ish")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(type="white", crf=52), r"crf must be an integer in 0\.\.51 for mp4 \(H\.264\), got 52"),
        (dict(crf=64, format="webm"), r"crf must be an integer in 0\.\.63, got 64"),
        (dict(crf=20.5, format="webm"), r"crf must be an integer"),
        (dict(crf=True, format="webm"), r"crf must be an integer"),
        (dict(threshold=float("nan")), r"threshold must be a finite number"),
        (dict(threshold="0.5"), r"threshold must be a number, got '0\.5'"),
        (dict(hr_blend=1.5), r"hr_blend must be in \[0, 1\]"),
        (dict(batch_size=0), r"batch_size must be an integer of at least 1"),
        (dict(batch_size=2.0), r"batch_size must be an integer"),
        (dict(reverse="no"), r"reverse must be True or False"),
        (dict(stability="off"), r"stability must be True or False"),  # a truthy string left it on
        (dict(crf=20, format="mov"), r"crf sets the quality of webm and mp4 only; mov"),  # was ignored
        (dict(crf=20, format="png"), r"crf sets the quality of webm and mp4 only; png"),
        (dict(max_frames=0), r"max_frames must be an integer of at least 1"),
        (dict(max_seconds=-1), r"max_seconds must be a positive number"),
        (dict(max_seconds=float("inf")), r"max_seconds must be a finite number"),
    ],
)
def test_options_checked_by_the_one_check(tmp_path, clips, options, message):
    """The same checks (and messages) as Remover's, from checks.check_options."""
    src, _ = clips["pan"]
    dst = tmp_path / ("cut.mp4" if options.get("type") == "white" else "cut.webm")
    with pytest.raises(ValueError, match=message):
        process_video(GreyRemover(), src, dst, **options)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ memory
def test_memory_stays_bounded_on_a_long_clip(tmp_path, full_size_cat):
    frames, size = 400, (96, 64)
    src = tmp_path / "long.mp4"
    make_clip(src, full_size_cat, kind="pan", frames=frames, size=size, audio=True, noise=0.0)
    one_frame = size[0] * size[1] * 3
    tracemalloc.start()
    try:
        result = process_video(GreyRemover(), src, tmp_path / "long.webm", batch_size=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.frames == frames
    # Queues hold 2 batches each: at most 2*8 + 4 frames plus the two in the threads' hands.
    assert result.peak_frames_in_flight <= 22
    # Holding every decoded frame would take 400 frames' worth of pixels (and
    # as much again in maps); the run peaks at frames in flight plus scratch.
    assert peak < 120 * one_frame, peak / one_frame
