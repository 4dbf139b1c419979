"""The Space's video tab (space/video_tab.py), called in-process.

Its model is the session's random-checkpoint Remover (remembering the maps
of frames already seen); the clips are made with PyAV.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("gradio", reason="needs the space extra: pip install -e '.[test,space]'")
import av  # noqa: E402
import gradio as gr  # noqa: E402
from PIL import Image
from video_helpers import GreyRemover, MemoRemover
from video_clips import lie_about_duration, make_clip, retime_clip

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "space"))
import video_tab  # noqa: E402


@pytest.fixture(scope="module")
def photo(images_dir: Path) -> Image.Image:
    with Image.open(images_dir / "cat.png") as img:
        return img.convert("RGB")


def test_video_tab_gives_a_webm_with_alpha_and_sound(tmp_path, photo, remover, monkeypatch):
    monkeypatch.setattr(video_tab, "RESULT_DIR", tmp_path / "results")
    clip = tmp_path / "clip.mp4"
    make_clip(clip, photo, kind="pan", frames=4)  # the frames of test_video's pan clip: maps remembered
    memo = MemoRemover(remover)
    path, status = video_tab.remove_video_background(
        str(clip), "fast", "rgba", True, get_remover=lambda mode: memo, progress=lambda *a, **k: None
    )
    assert path.endswith(".webm") and "4 frames" in status and "sound kept" in status
    with av.open(path) as container:
        assert container.streams.video[0].metadata.get("alpha_mode") == "1"
        assert container.streams.audio[0].codec_context.name == "opus"


def test_video_tab_refuses_a_clip_over_the_limits(tmp_path, photo, monkeypatch):
    monkeypatch.setattr(video_tab, "MAX_VIDEO_SECONDS", 0.1)
    clip = tmp_path / "clip.mp4"
    make_clip(clip, photo, frames=5)  # 0.2 s
    with pytest.raises(gr.Error, match="at most"):
        video_tab.remove_video_background(str(clip), get_remover=pytest.fail, progress=lambda *a, **k: None)
    (tmp_path / "photo.mp4").write_bytes(b"not a video")
    with pytest.raises(gr.Error, match="cannot be read as a video"):
        video_tab.remove_video_background(
            str(tmp_path / "photo.mp4"), get_remover=pytest.fail, progress=lambda *a, **k: None
        )


def test_video_tab_counts_frames_whatever_the_header_says(tmp_path, photo, monkeypatch):
    """A clip whose header claims 0.04 s but holds 6 frames passes the quick
    header check, then is stopped at the frame limit while decoding: a clear
    "Too long" on the page and no file or folder left in the results."""
    monkeypatch.setattr(video_tab, "RESULT_DIR", tmp_path / "results")
    monkeypatch.setattr(video_tab, "MAX_VIDEO_FRAMES", 3)
    make_clip(tmp_path / "clip.mp4", photo, frames=6)
    clip = tmp_path / "clip.mkv"
    retime_clip(tmp_path / "clip.mp4", clip)
    lie_about_duration(clip, 0.04)
    assert video_tab.check_video(str(clip)).duration == pytest.approx(0.04)  # the header lies
    with pytest.raises(gr.Error, match="has more than 3 frames.*at most 20 s and 3 frames"):
        video_tab.remove_video_background(
            str(clip), "fast", "map", True, get_remover=lambda mode: GreyRemover(), progress=lambda *a, **k: None
        )
    assert list((tmp_path / "results").iterdir()) == []
