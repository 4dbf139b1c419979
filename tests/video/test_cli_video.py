"""Video files among the default command's inputs.

The command's Remover is the session's random-checkpoint one (wrapped to
remember the maps of frames already seen), so these runs cost encoding, not
network passes.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from video_helpers import GreyRemover, MemoRemover
from video_clips import make_clip, truncated_copy

import inspyrenet_lite.remover
from inspyrenet_lite.cli import main


@pytest.fixture(scope="module")
def memo(remover) -> MemoRemover:
    return MemoRemover(remover)


@pytest.fixture()
def cli_remover(monkeypatch, memo):
    monkeypatch.setattr(inspyrenet_lite.remover, "Remover", lambda **kwargs: memo)
    return memo


@pytest.fixture(scope="module")
def clip(tmp_path_factory, images_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("cli_clips")
    with Image.open(images_dir / "cat.png") as photo:
        make_clip(folder / "clip.mp4", photo.convert("RGB"), kind="pan", frames=4)  # the frames of test_video's pan clip: maps remembered
    return folder / "clip.mp4"


def _decode(path: Path, fmt: str = "rgb24") -> list[np.ndarray]:
    with av.open(str(path)) as container:
        ctx = None
        if fmt == "rgba" and container.streams.video[0].codec_context.name == "vp9":
            ctx = av.CodecContext.create("libvpx-vp9", "r")
        frames = []
        for packet in container.demux(video=0):
            decoded = ctx.decode(packet if packet.size else None) if ctx else packet.decode()
            frames.extend(f.to_ndarray(format=fmt) for f in decoded)
        return frames


def test_video_input_gives_webm_with_alpha_then_skips(tmp_path, clip, cli_remover, capsys):
    out = tmp_path / "out"
    assert main([str(clip), "-o", str(out), "-q"]) == 0
    frames = _decode(out / "clip.webm", "rgba")
    assert len(frames) == 4 and frames[0].shape == (96, 160, 4)
    assert frames[0][:, :, 3].std() > 10  # the map, not an opaque frame
    assert "1 done, 0 skipped, 0 failed" in capsys.readouterr().err
    before = (out / "clip.webm").stat().st_mtime_ns
    assert main([str(clip), "-o", str(out), "-q", "--skip-existing"]) == 0
    assert "0 done, 1 skipped, 0 failed" in capsys.readouterr().err
    assert (out / "clip.webm").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("options", "name", "codec"),
    [(["--video-format", "mov"], "clip.mov", "prores"), (["--type", "white", "--crf", "28"], "clip.mp4", "h264")],
)
def test_video_format_and_type_choose_the_output(tmp_path, clip, cli_remover, options, name, codec):
    assert main([str(clip), "-o", str(tmp_path), "-q", "--stability", "off", *options]) == 0
    with av.open(str(tmp_path / name)) as container:
        assert container.streams.video[0].codec_context.name == codec
        assert container.streams.audio[0].codec_context.name == "aac"


def test_folder_run_counts_a_broken_video_and_keeps_going(tmp_path, clip, cli_remover, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    (folder / "broken.mov").write_bytes(b"\x00" * 4096)
    out = tmp_path / "out"
    assert main([str(folder), "-o", str(out), "-q", "--video-format", "png", "--type", "map"]) == 1
    err = capsys.readouterr().err
    assert "broken.mov" in err and "cannot read video" in err
    assert "1 done, 0 skipped, 1 failed" in err
    # the hidden manifest is the only other entry: it records the video done and the broken one failed
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["clip_frames"]
    assert (out / ".inspyrenet-lite-manifest.jsonl").is_file()
    assert len(list((out / "clip_frames").glob("frame_*.png"))) == 4


def test_alpha_in_mp4_is_refused_before_work(tmp_path, clip, cli_remover, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(clip), "-o", str(tmp_path / "out"), "--video-format", "mp4"])
    assert exc.value.code == 2
    assert "cannot store transparency" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_truncated_mp4_is_counted_failed_with_the_frames_decoded_and_expected(tmp_path, clip, grey_remover, capsys):
    listed, whole = truncated_copy(clip, tmp_path / "half.mp4")
    out = tmp_path / "out"
    assert main([str(tmp_path / "half.mp4"), "-o", str(out), "-q", "--type", "map"]) == 1
    err = capsys.readouterr().err
    assert f"ends after {whole} of the {listed} frames" in err and "truncated" in err
    assert "0 done, 0 skipped, 1 failed" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []


@pytest.fixture()
def grey_remover(monkeypatch):
    """Instant maps: these runs are about files, not the network."""
    monkeypatch.setattr(inspyrenet_lite.remover, "Remover", lambda **kwargs: GreyRemover())


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_overwrite_never_deletes_a_frames_folder_holding_other_files(tmp_path, clip, grey_remover, capsys):
    """--overwrite replaces files that have an output's name, nothing else: a
    <stem>_frames folder holding the user's files (and a subfolder) is refused
    with one clear line and a failing exit, and left exactly as it was."""
    out = tmp_path / "out"
    frames = out / "clip_frames"
    (frames / "edits").mkdir(parents=True)
    (frames / "notes.txt").write_text("the user's notes")
    (frames / "frame_000000.png").write_bytes(b"the user's own frame")
    (frames / "edits" / "take2.png").write_bytes(b"more work")
    before = _tree(frames)
    assert main([str(clip), "-o", str(out), "-q", "--overwrite", "--video-format", "png", "--type", "map"]) == 1
    err = capsys.readouterr().err
    assert "clip_frames" in err and "did not write (edits, notes.txt)" in err and "Traceback" not in err
    assert "0 done, 0 skipped, 1 failed" in err
    assert _tree(frames) == before
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["clip_frames"]


def test_overwrite_replaces_a_frames_folder_of_ours(tmp_path, clip, grey_remover, capsys):
    """A frames folder holding only what the tool writes (here from a run into
    another folder, copied over) is an output's name: --overwrite replaces it."""
    assert main([str(clip), "-o", str(tmp_path / "first"), "-q", "--video-format", "png", "--type", "map"]) == 0
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "first" / "clip_frames").rename(out / "clip_frames")
    (out / "clip_frames" / "frame_000009.png").write_bytes((out / "clip_frames" / "frame_000000.png").read_bytes())
    assert main([str(clip), "-o", str(out), "-q", "--overwrite", "--video-format", "png", "--type", "map"]) == 0
    assert sorted(p.name for p in (out / "clip_frames").iterdir()) == [
        "audio.mka", *(f"frame_00000{i}.png" for i in range(4)), "timestamps.txt",
    ]  # replaced whole: the stale frame 9 is gone
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["clip_frames"]


@pytest.mark.parametrize(("options", "message"), [
    (["--type", "white", "--crf", "52"], "--crf must be an integer in 0..51 for mp4 (H.264), got 52"),
    (["--crf", "64"], "--crf must be an integer in 0..63, got 64"),
    (["--video-format", "mov", "--crf", "20"], "--crf sets the quality of webm and mp4 only; mov"),
])
def test_crf_out_of_range_is_refused_before_work(tmp_path, clip, options, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(clip), "-o", str(tmp_path / "out"), *options])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
