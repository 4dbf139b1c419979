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
from test_video import MemoRemover
from video_clips import make_clip

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
