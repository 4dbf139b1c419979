"""The Space's video tab: a short clip in, the clip without its background out.

Kept apart from the photo UI of app.py; ``build(get_remover, model)`` adds the
tab inside the app's ``gr.Blocks``, reading the model in force from the page's
shared model menu (``model``, a component holding its name). The click is also the API endpoint
``/remove_video_background``. Limits keep one request from holding the
single inference slot for long: at most ``MAX_VIDEO_SECONDS`` of video,
``MAX_VIDEO_FRAMES`` frames and ``MAX_VIDEO_PIXELS`` per frame (and the
app's upload size limit). The header's length is checked first (a quick
refusal), then ``process_video`` counts the frames as they are decoded and
stops at the limits: a header that lies gains nothing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

logger = logging.getLogger("inspyrenet_space")

MAX_VIDEO_SECONDS = 20
MAX_VIDEO_FRAMES = 600
MAX_VIDEO_PIXELS = 1920 * 1080
# (label, value): transparent gives WebM with alpha (plays in browsers), the rest H.264 MP4.
VIDEO_OUTPUTS: tuple[tuple[str, str], ...] = (
    ("Transparent (WebM with alpha)", "rgba"),
    ("Mask (MP4)", "map"),
    ("Green screen (MP4)", "green"),
    ("White background (MP4)", "white"),
)
RESULT_DIR = Path(tempfile.gettempdir()) / "inspyrenet-space-video"


def check_video(path: str) -> Any:
    """The clip's facts, or a ``gr.Error`` saying which limit it breaks."""
    from inspyrenet_lite.video import VideoLoadError, probe_video

    try:
        info = probe_video(path)
    except VideoLoadError as err:
        raise gr.Error(f"This file cannot be read as a video: {err.reason}.", title="Unreadable video") from err
    if info.width * info.height > MAX_VIDEO_PIXELS:
        raise gr.Error(
            f"The video is {info.width}×{info.height}; this demo takes at most 1920×1080 frames.", title="Too large"
        )
    frames = info.frames or (round(info.duration * float(info.rate)) if info.duration else None)
    if (info.duration or 0) > MAX_VIDEO_SECONDS or (frames or 0) > MAX_VIDEO_FRAMES:
        raise _too_long(f"lasts {info.duration or 0:.1f} s ({frames} frames)")
    return info


def _too_long(detail: str) -> gr.Error:
    return gr.Error(
        f"The video {detail}; this demo takes at most {MAX_VIDEO_SECONDS} s and {MAX_VIDEO_FRAMES} frames. "
        "Trim it, or run inspyrenet-lite locally.",
        title="Too long",
    )


def remove_video_background(
    video: str | None,
    mode: str = "fast",
    output: str = "rgba",
    stability: bool = True,
    get_remover: Callable[[str], Any] | None = None,
    progress: gr.Progress = gr.Progress(),
) -> tuple[str, str]:
    """Process ``video``; returns the output file and a status line."""
    from inspyrenet_lite.video import VideoTooLongError, process_video

    if video is None:
        raise gr.Error("Upload a video first.", title="No video")
    if output not in dict((v, v) for _, v in VIDEO_OUTPUTS):
        raise gr.Error(f"Unknown output {output!r}.", title="Bad option")
    info = check_video(video)
    assert get_remover is not None
    remover = get_remover(mode)
    RESULT_DIR.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=RESULT_DIR))
    suffix = ".webm" if output == "rgba" else ".mp4"
    dst = folder / f"{Path(video).stem}-{output}{suffix}"
    total = info.frames or None
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        progress((done, total), desc="Removing the background", unit="frames")

    started = time.perf_counter()
    try:
        result = process_video(
            remover,
            video,
            dst,
            type=output,
            stability=stability,
            progress=step,
            max_frames=MAX_VIDEO_FRAMES,  # counted as decoded: the header may lie
            max_seconds=MAX_VIDEO_SECONDS,
        )
    except BaseException as err:
        shutil.rmtree(folder, ignore_errors=True)  # process_video left nothing in it; drop the folder too
        if isinstance(err, VideoTooLongError):
            logger.info("rejected: %s", err)
            raise _too_long(err.limit) from err
        raise
    seconds = time.perf_counter() - started
    logger.info("video %dx%d, %d frames, %s: %.1f s", info.width, info.height, result.frames, output, seconds)
    status = (
        f"{info.width}×{info.height}, {result.frames} frames, {mode} model, stability "
        f"{'on' if stability else 'off'}: {result.fps:.2f} frames/s"
        + (", sound kept" if result.audio else "")
    )
    return str(dst), status


def build(get_remover: Callable[[str], Any], model: gr.components.Component) -> None:
    """Add the video tab to the enclosing ``gr.Blocks``; ``model`` holds the name of the model in force."""
    with gr.Tab("Video", id="video", elem_id="video_tab"):
        gr.Markdown(
            f"Up to {MAX_VIDEO_SECONDS} s of video, frames up to 1920×1080. The transparent output is a "
            "WebM with an alpha channel (Chrome, Firefox and Edge play it); sound is kept. "
            "The model is the one chosen above."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload"], elem_id="video")
                output = gr.Radio(
                    list(VIDEO_OUTPUTS), value="rgba", label="Output",
                    info="Transparent plays in browsers; the others are MP4 for any player or editor.",
                    elem_id="video_output",
                )
                stability = gr.Checkbox(
                    value=True, label="Temporal stability",
                    info="Keeps the mask steady where the picture is still (no flicker).",
                    elem_id="video_stability",
                )
                run = gr.Button("Remove video background", variant="primary", elem_id="video_run")
            with gr.Column():
                result = gr.Video(label="Result", interactive=False, elem_id="video_result")
                status = gr.Markdown(elem_id="video_status")

        def handler(video, mode, output, stability, progress=gr.Progress()):
            return remove_video_background(video, mode, output, stability, get_remover, progress)

        run.click(
            handler,
            inputs=[video, model, output, stability],
            outputs=[result, status],
            api_name="remove_video_background",
            concurrency_id="inference",
        )
