"""InSPyReNet background removal: the Gradio web demo (a Hugging Face Space).

Run it locally with ``python space/app.py``; Gradio's ``GRADIO_SERVER_NAME``
and ``GRADIO_SERVER_PORT`` choose where it listens. ``INSPYRENET_LITE_CKPT``
(read by ``Remover``) points every mode at a local checkpoint, so nothing is
downloaded.

The click on "Remove background" is also the API endpoint
``/remove_background``; its first output is the full-resolution PNG. The
REST routes of ``inspyrenet-lite serve`` (``POST /v1/remove``, the
remove.bg-compatible ``POST /v1.0/removebg``, ...) are served beside it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Offline by default: no usage analytics, no update check, no share link.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from inspyrenet_lite import Remover, WeightsUnavailableError  # noqa: E402
from inspyrenet_lite.checks import check_options as check_library_options  # noqa: E402
from inspyrenet_lite.compositing import parse_colour  # noqa: E402
from inspyrenet_lite.image_io import ImageLoadError, TooManyPixelsError, load_image, save_image  # noqa: E402
from inspyrenet_lite.registry import MODELS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # space/video_tab.py, also when imported by path
import video_tab  # noqa: E402

logger = logging.getLogger("inspyrenet_space")

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"

MODES = tuple(MODELS)  # every registry model; `fast` first
# (label shown on the page, value used by the API)
OUTPUT_CHOICES: tuple[tuple[str, str], ...] = (
    ("Transparent cut-out", "transparent"),
    ("Mask", "mask"),
    ("Solid colour", "color"),
    ("Blurred background", "blur"),
    ("Overlay", "overlay"),
    ("Custom background image", "background"),
)
OUTPUTS = tuple(value for _, value in OUTPUT_CHOICES)

MAX_FILE_SIZE = "20mb"
MAX_MEGAPIXELS = 40
PREVIEW_SIDE = 1024
QUEUE_SIZE = 32
# One inference at a time: a forward pass already uses every core.
CONCURRENCY_LIMIT = 1
OUTPUT_MAX_AGE_S = 3600

RESULT_DIR = Path(tempfile.gettempdir()) / "inspyrenet-space"

INTRO = """
# InSPyReNet background removal

Upload a photo to cut out its main subject with
[InSPyReNet](https://arxiv.org/abs/2209.09475) (Kim et al., ACCV 2022).
Drag the handle on the result to compare before and after; download the
full-resolution PNG below it.
"""

SLIDER_HELP = """
**Threshold**: 0 keeps the soft mask (smooth hair and edges); above 0 every
pixel becomes fully kept or fully removed, cut at that confidence.
**HR blending**: 0 uses one pass at the model's base size; towards 1 a second,
full-resolution pass adds fine detail along the edges (the paper's pyramid
blending at 1; only for photos larger than 512 px on both sides, and slower).
**Mode**: *fast* runs at 384 px, *base* at 1024 px (slower, often cleaner).
"""

_removers: dict[str, Remover] = {}
_removers_lock = threading.Lock()


def get_remover(mode: str) -> Remover:
    """The shared ``Remover`` for ``mode``, built on first use."""
    with _removers_lock:
        remover = _removers.get(mode)
        if remover is None:
            logger.info("loading the %s model", mode)
            remover = Remover(mode=mode)
            _removers[mode] = remover
        return remover


def rejected(message: str, reason: str) -> gr.Error:
    """A ``gr.Error`` for a visitor's bad input: one log line, no traceback."""
    logger.info("rejected: %s", reason)
    return gr.Error(message, print_exception=False)


def too_many_pixels(name: str) -> gr.Error:
    return rejected(
        f"{name} has too many pixels: this demo takes at most {MAX_MEGAPIXELS} megapixels. "
        "Scale it down and try again.",
        f"{name}: too many pixels",
    )


def load_photo(path: str | os.PathLike[str] | None, what: str = "photo") -> Image.Image:
    """Decode an upload as the library does (EXIF orientation, 16-bit and
    float images scaled), as an RGB image, or raise ``gr.Error``."""
    if path is None:
        raise rejected(f"No {what} given: upload an image first.", f"no {what}")
    name = Path(path).name
    try:
        return load_image(path, max_pixels=MAX_MEGAPIXELS * 1_000_000).rgb
    except TooManyPixelsError as err:
        raise too_many_pixels(name) from err
    except ImageLoadError as err:
        raise rejected(
            f"{name} could not be read as an image. Upload a PNG, JPEG or WebP photo.",
            f"unreadable {what} {name}: {err.reason}",
        ) from err


def report_unreadable_uploads(component: gr.Image) -> gr.Image:
    """Make ``component`` tell the visitor when an upload is not an image.

    Gradio opens uploads with Pillow before the handler runs and reports a
    bare "Error" when that fails. (A subclass of ``gr.Image`` could do this
    too, but Gradio then writes a ``.pyi`` copy of this file beside it.)
    """
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except gr.Error:
            raise
        except Image.DecompressionBombError as err:
            name = getattr(payload, "orig_name", None) or "The upload"
            raise too_many_pixels(name) from err
        except Exception as err:
            name = getattr(payload, "orig_name", None) or "The upload"
            raise rejected(
                f"{name} is not an image that can be read. "
                "Upload a PNG, JPEG or WebP photo.",
                f"unreadable upload {name}: {type(err).__name__}: {err}",
            ) from err

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def parse_color(color: str | None) -> tuple[int, int, int]:
    """The picker's colour as an RGB tuple, by the library's own colour parser."""
    try:
        rgb = parse_colour(color or "")
    except ValueError as err:
        raise rejected(f"Colour {color!r} is not understood: {err}.", f"bad colour {color!r}") from err
    if rgb is None:
        raise rejected(f"Colour {color!r} is not understood: give it as '#rrggbb'.", f"bad colour {color!r}")
    return rgb


def check_options(mode: str, threshold: float, hr_blend: float, output: str) -> None:
    """Refuse option values the page cannot produce (API callers may send anything)."""
    if mode not in MODES:
        raise rejected(f"Unknown mode {mode!r}: choose one of {', '.join(MODES)}.", f"mode {mode!r}")
    if output not in OUTPUTS:
        raise rejected(f"Unknown output {output!r}: choose one of {', '.join(OUTPUTS)}.", f"output {output!r}")
    try:
        if threshold is None:  # the page's 0 means a soft mask; None is not a slider value
            raise ValueError("threshold must be a number, got None")
        check_library_options(threshold=threshold, hr_blend=hr_blend)
    except ValueError as err:
        raise rejected(f"{err}.", str(err)) from err


def process_type(output: str, color: str | None, background: str | None) -> Any:
    """The ``type=`` argument of ``Remover.process`` for an output choice."""
    if output == "transparent":
        return "rgba"
    if output == "mask":
        return "map"
    if output == "color":
        return parse_color(color)
    if output == "background":
        if background is None:
            raise rejected("Choose a background image for the custom background output.", "no background image")
        return load_photo(background, what="background image")
    return output  # "blur" and "overlay" have the same name in Remover


def save_png(image: Image.Image, stem: str, output: str) -> Path:
    """Write ``image`` as ``<stem>-<output>.png`` in a fresh folder, atomically."""
    RESULT_DIR.mkdir(parents=True, exist_ok=True)
    prune_old_results()
    folder = Path(tempfile.mkdtemp(dir=RESULT_DIR))
    return save_image(image, folder / f"{stem}-{output}.png", format="PNG")


def prune_old_results(max_age_s: float = OUTPUT_MAX_AGE_S) -> None:
    """Delete result folders older than ``max_age_s`` (Gradio serves its own copy)."""
    cutoff = time.time() - max_age_s
    for folder in RESULT_DIR.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:
            pass  # another request pruned it first


def preview(image: Image.Image) -> Image.Image:
    """A copy no larger than ``PREVIEW_SIDE`` for the before/after view."""
    small = image.copy()
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return small


def remove_background(
    image: str | None,
    mode: str = "fast",
    threshold: float = 0.0,
    hr_blend: float = 0.0,
    output: str = "transparent",
    color: str = "#00ff00",
    background: str | None = None,
    progress: gr.Progress = gr.Progress(),
) -> tuple[str, tuple[Image.Image, Image.Image], str]:
    """Remove the background of ``image``.

    Returns the full-resolution PNG (RGBA for the transparent output, at the
    photo's size), a (before, after) preview pair and a line saying which
    settings made the result.
    """
    check_options(mode, threshold, hr_blend, output)
    photo = load_photo(image)
    kind = process_type(output, color, background)
    if mode not in _removers:
        progress(0.0, desc=f"Loading the {mode} model (first use only)")
    try:
        remover = get_remover(mode)
    except (WeightsUnavailableError, OSError, ValueError) as err:
        # OSError/ValueError: a bad INSPYRENET_LITE_CKPT or an unreadable file.
        logger.error("the %s model could not be loaded: %s", mode, err)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise gr.Error(
            f"The weights of the {mode} model could not be fetched or loaded, so "
            f"this mode cannot run right now ({reason}). The server log has the details.",
            title="Model unavailable",
            duration=None,
        ) from err
    notice = remover.high_resolution_notice(photo.size, float(hr_blend))
    if notice is not None:
        gr.Warning(notice)
    progress(0.5, desc="Removing the background")
    started = time.perf_counter()
    result = remover.process(
        photo,
        type=kind,
        threshold=float(threshold) if threshold > 0 else None,
        hr_blend=float(hr_blend),
    )
    seconds = time.perf_counter() - started
    logger.info(
        "%dx%d mode=%s threshold=%.2f hr_blend=%.2f output=%s: %.1f s",
        *photo.size, mode, threshold, hr_blend, output, seconds,
    )
    path = save_png(result, Path(image).stem, output)
    width, height = photo.size
    status = (
        f"{width}×{height} px, {mode} mode, threshold {threshold:.2f}, "
        f"HR blending {hr_blend:.2f}: done in {seconds:.1f} s"
    )
    if notice is not None:
        status += f"\n\n**Note:** {notice}"
    return str(path), (preview(photo), preview(result)), status


def rerun(
    image: str | None,
    mode: str,
    threshold: float,
    hr_blend: float,
    output: str,
    color: str,
    background: str | None,
    progress: gr.Progress = gr.Progress(),
) -> Any:
    """Redo the result after a setting changed, once a photo is there."""
    if image is None or (output == "background" and background is None):
        return gr.skip(), gr.skip(), gr.skip()
    return remove_background(
        image, mode, threshold, hr_blend, output, color, background, progress
    )


def example_photos() -> list[str]:
    """The sample photos shipped beside the app."""
    suffixes = {".png", ".jpg", ".jpeg", ".webp"}
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in suffixes)


def build_demo() -> gr.Blocks:
    """The page and its API endpoint."""
    with gr.Blocks(title="InSPyReNet background removal", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                image = report_unreadable_uploads(
                    gr.Image(
                        label="Photo",
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "clipboard"],
                        elem_id="photo",
                    )
                )
                mode = gr.Dropdown(
                    [(f"{name}: {MODELS[name].summary}", name) for name in MODES],
                    value="fast", label="Model", elem_id="mode",
                )
                threshold = gr.Slider(
                    0.0, 1.0, value=0.0, step=0.01,
                    label="Threshold (0 = soft mask)", elem_id="threshold",
                )
                hr_blend = gr.Slider(
                    0.0, 1.0, value=0.0, step=0.05, label="HR blending",
                    info="How much full-resolution edge detail to blend in (0 = one fast pass).",
                    elem_id="hr_blend",
                )
                output = gr.Radio(
                    list(OUTPUT_CHOICES), value="transparent", label="Output", elem_id="output"
                )
                color = gr.ColorPicker(
                    value="#00ff00", label="Background colour", visible=False, elem_id="color"
                )
                background = report_unreadable_uploads(
                    gr.Image(
                        label="Background image", type="filepath", image_mode=None,
                        visible=False, elem_id="background",
                    )
                )
                run = gr.Button("Remove background", variant="primary", elem_id="run")
            with gr.Column():
                comparison = gr.ImageSlider(
                    label="Before / after", interactive=False, elem_id="comparison"
                )
                download = gr.File(
                    label="Full-resolution PNG", interactive=False, elem_id="download"
                )
                status = gr.Markdown(elem_id="status")
                gr.Markdown(SLIDER_HELP)
        gr.Examples(example_photos(), inputs=image, label="Sample photos")
        video_tab.build(get_remover, MODES)  # the video tab (space/video_tab.py)

        output.change(
            lambda choice: (
                gr.update(visible=choice == "color"),
                gr.update(visible=choice == "background"),
            ),
            inputs=output,
            outputs=[color, background],
            api_visibility="private",
            queue=False,
        )
        inputs = [image, mode, threshold, hr_blend, output, color, background]
        outputs = [download, comparison, status]
        run.click(
            remove_background,
            inputs=inputs,
            outputs=outputs,
            api_name="remove_background",
            concurrency_limit=CONCURRENCY_LIMIT,
            concurrency_id="inference",
        )
        gr.on(
            [
                image.change,
                mode.input,
                threshold.release,
                hr_blend.release,
                output.input,
                color.input,
                background.change,
            ],
            rerun,
            inputs=inputs,
            outputs=outputs,
            api_visibility="private",
            trigger_mode="always_last",
            concurrency_limit=CONCURRENCY_LIMIT,
            concurrency_id="inference",
        )
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY_LIMIT)
    return demo


# A checkerboard behind the result (the slider's overlaid "after" image, whose
# inline style sets a plain background) shows what became transparent.
CSS = """
#comparison img.fixed {
    background: conic-gradient(#d9d9d9 25%, #fff 0 50%, #d9d9d9 0 75%, #fff 0) 0 0 / 24px 24px !important;
}
"""

# System fonts only: the default theme would fetch web fonts, which hangs offline.
THEME = gr.themes.Soft(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "monospace"],
)

demo = build_demo()


def build_app() -> Any:
    """The REST service of ``inspyrenet-lite serve`` (``/v1/remove``, ``/v1.0/removebg``, ...) with this
    page mounted at ``/``: a deployed Space is also a REST endpoint. Shares the ``fast`` model above.
    With ``INSPYRENET_LITE_API_KEY`` set, the REST routes need it as ``serve``'s do."""
    from inspyrenet_lite.cli.serve import api_key_from_env
    from inspyrenet_lite.serving import ServeSettings, create_app

    settings = ServeSettings(max_upload_bytes=20 * 1024 * 1024, api_key=api_key_from_env())
    app = create_app({"fast": lambda: get_remover("fast")}, settings)
    return gr.mount_gradio_app(app, demo, path="/", max_file_size=MAX_FILE_SIZE, theme=THEME, css=CSS)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        import uvicorn

        rest_app = build_app()
    except ImportError:  # a library without the serving room: the page alone
        demo.launch(max_file_size=MAX_FILE_SIZE, theme=THEME, css=CSS)
    else:
        host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
        uvicorn.run(rest_app, host=host, port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
