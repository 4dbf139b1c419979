"""InSPyReNet background removal: the Gradio web demo (a Hugging Face Space).

One page, two tabs (Image and Video) under one model menu (space/model_menu.py).
Run it locally with ``python space/app.py``; Gradio's ``GRADIO_SERVER_NAME``
and ``GRADIO_SERVER_PORT`` choose where it listens. ``INSPYRENET_LITE_CKPT``
(read by ``Remover``) points every model at a local checkpoint, so nothing is
downloaded. Models come from the library's shared cache
(``inspyrenet_lite.cached.cached_remover``), the one ``inspyrenet_lite.remove()`` uses.

The click on "Remove background" is also the API endpoint
``/remove_background``; its outputs are the full-resolution result PNG, the
mask PNG, a (before, after) preview pair and a status line. The REST routes of
``inspyrenet-lite serve`` (``POST /v1/remove``, the remove.bg-compatible
``POST /v1.0/removebg``, ...) are served beside it.

Environment: ``INSPYRENET_SPACE_IMAGE_URL=0`` hides the image URL field (a Space
without network access); ``INSPYRENET_SPACE_URL_ALLOW_NETWORKS`` exempts CIDRs from
its private-address refusal; ``GRADIO_CACHE_MODE=eager`` computes the sample
photos' results at start instead of on their first click.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Offline by default: no usage analytics, no update check, no share link.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The sample photos' cached results live in a fresh folder per start (Gradio's default, ./.gradio in the
# working folder, would serve results of an earlier run's model or checkpoint after a restart).
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", tempfile.mkdtemp(prefix="inspyrenet-space-examples-"))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from inspyrenet_lite import WeightsUnavailableError  # noqa: E402
from inspyrenet_lite.cached import cached_remover  # noqa: E402
from inspyrenet_lite.checks import check_options as check_library_options  # noqa: E402
from inspyrenet_lite.compositing import OutputSpec, parse_colour, parse_output_type  # noqa: E402
from inspyrenet_lite.image_io import ImageLoadError, TooManyPixelsError, load_image, save_image  # noqa: E402
from inspyrenet_lite.pipeline import OutputOptions, render  # noqa: E402
from inspyrenet_lite.registry import MODELS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # space/*.py, also when imported by path
import model_menu  # noqa: E402
import url_input  # noqa: E402
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
CHECKER_SQUARE = 12  # px of the preview
CHECKER_GREYS = (255, 217)  # white and #d9d9d9
QUEUE_SIZE = 32
# One inference at a time: a forward pass already uses every core.
CONCURRENCY_LIMIT = 1
OUTPUT_MAX_AGE_S = 3600
# The sample photos' results are cached on first click by default: computing them at start
# would load the model (about 350 MiB) before the page serves. GRADIO_CACHE_MODE=eager does.
EXAMPLES_CACHE_MODE = "eager" if os.environ.get("GRADIO_CACHE_MODE", "").lower() == "eager" else "lazy"

#: How a change of a setting re-runs the removal: off the API, the newest change only, one inference at a time.
RERUN_EVENT = {"api_visibility": "private", "trigger_mode": "always_last", "concurrency_limit": CONCURRENCY_LIMIT,
               "concurrency_id": "inference"}
RESULT_DIR = Path(tempfile.gettempdir()) / "inspyrenet-space"

INTRO = """
# InSPyReNet background removal

Cut out the main subject of a photo or a short video with
[InSPyReNet](https://arxiv.org/abs/2209.09475) (Kim et al., ACCV 2022).
Drag the handle on the result to compare before and after.
"""


def get_remover(mode: str) -> Any:
    """The process's ``Remover`` for model ``mode``, from the library's shared cache
    (the one ``inspyrenet_lite.remove()`` uses): built on first use, then shared."""
    return cached_remover(mode)


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
        raise rejected(f"Unknown model {mode!r}: choose one of {', '.join(MODES)}.", f"model {mode!r}")
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


def on_checkerboard(image: Image.Image) -> Image.Image:
    """``image`` over a grey-and-white checkerboard (RGB), so what became transparent shows.

    Painted into the preview rather than set as a CSS background: the slider
    letterboxes its images inside a box of the container's size, so a CSS
    background fills the letterbox beside a portrait photo instead of lying
    behind the picture alone. An image without alpha is returned as it is.
    """
    if image.mode not in ("RGBA", "LA", "PA"):
        return image
    width, height = image.size
    rows, cols = np.indices((height, width)) // CHECKER_SQUARE
    board = np.where((rows + cols) % 2 == 0, CHECKER_GREYS[0], CHECKER_GREYS[1]).astype(np.uint8)
    backdrop = Image.fromarray(board, mode="L").convert("RGBA")
    backdrop.alpha_composite(image.convert("RGBA"))
    return backdrop.convert("RGB")


def load_model(mode: str, progress: Any) -> Any:
    """The model for ``mode``, or a ``gr.Error`` saying its weights cannot be had."""
    progress(0.0, desc=f"Preparing the {mode} model (the first use loads it)")
    try:
        return get_remover(mode)
    except (WeightsUnavailableError, OSError, ValueError) as err:
        # OSError/ValueError: a bad INSPYRENET_LITE_CKPT or an unreadable file.
        logger.error("the %s model could not be loaded: %s", mode, err)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise gr.Error(
            f"The weights of the {mode} model could not be fetched or loaded, so "
            f"this model cannot run right now ({reason}). The server log has the details.",
            title="Model unavailable",
            duration=None,
        ) from err


def video_model(mode: str) -> Any:
    """The video tab's model: a registry name only (API callers may send anything), errors as on the Image tab."""
    if mode not in MODES:
        raise rejected(f"Unknown model {mode!r}: choose one of {', '.join(MODES)}.", f"model {mode!r}")
    return load_model(mode, progress=lambda *args, **kwargs: None)


def remove_background(
    image: str | None,
    mode: str = "fast",
    threshold: float = 0.0,
    hr_blend: float = 0.0,
    output: str = "transparent",
    color: str = "#00ff00",
    background: str | None = None,
    progress: gr.Progress = gr.Progress(),
) -> tuple[str, str, tuple[Image.Image, Image.Image], str]:
    """Remove the background of ``image`` with model ``mode``.

    Returns the full-resolution result PNG (RGBA for the transparent output, at
    the photo's size), the mask PNG (greyscale, same size), a (before, after)
    preview pair and a line saying which settings made the result.
    """
    check_options(mode, threshold, hr_blend, output)
    photo = load_photo(image)
    spec = parse_output_type(process_type(output, color, background))
    remover = load_model(mode, progress)
    notice = remover.high_resolution_notice(photo.size, float(hr_blend))
    if notice is not None:
        gr.Warning(notice)
    progress(0.5, desc="Removing the background")
    started = time.perf_counter()
    # One prediction makes both files: the chosen output and the mask, by the library's render step.
    pred = remover.predict(photo, hr_blend=float(hr_blend))
    hard = float(threshold) if threshold > 0 else None
    result = render(photo, pred, OutputOptions(spec, threshold=hard))
    mask = render(photo, pred, OutputOptions(OutputSpec("map"), threshold=hard))
    seconds = time.perf_counter() - started
    logger.info(
        "%dx%d model=%s threshold=%.2f hr_blend=%.2f output=%s: %.1f s",
        *photo.size, mode, threshold, hr_blend, output, seconds,
    )
    stem = Path(image).stem
    path = save_png(result, stem, output)
    mask_path = path if output == "mask" else save_png(mask, stem, "mask")
    width, height = photo.size
    status = (
        f"{width}×{height} px, {mode} model, threshold {threshold:.2f}, "
        f"HR blending {hr_blend:.2f}: done in {seconds:.1f} s"
    )
    if notice is not None:
        status += f"\n\n**Note:** {notice}"
    return str(path), str(mask_path), (preview(photo), on_checkerboard(preview(result))), status


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
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return remove_background(
        image, mode, threshold, hr_blend, output, color, background, progress
    )


def run_example(
    image: str, common: str | None, mode: str, threshold: float, hr_blend: float, output: str
) -> tuple[str, str, tuple[Image.Image, Image.Image], str]:
    """A sample photo's result (cached by Gradio; the example also resets the menus and sliders)."""
    return remove_background(image, mode, threshold, hr_blend, output, progress=lambda *a, **k: None)


async def fetch_photo(url: str | None) -> str:
    """The image at ``url`` as a local file for the photo field, or a ``gr.Error`` saying why not."""
    try:
        path = await url_input.fetch_to_file(url, RESULT_DIR)
    except url_input.UrlRefused as err:
        raise gr.Error(str(err), title="Address refused", print_exception=False) from None
    try:
        load_photo(str(path), what="image at that address")  # a clear error now rather than a broken preview
    except gr.Error:
        shutil.rmtree(path.parent, ignore_errors=True)
        raise
    return str(path)


def example_photos() -> list[str]:
    """The sample photos shipped beside the app."""
    suffixes = {".png", ".jpg", ".jpeg", ".webp"}
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in suffixes)


def show_output_options(choice: str) -> tuple[dict, dict]:
    """The colour picker for a solid colour, the background field for a custom background."""
    return gr.update(visible=choice == "color"), gr.update(visible=choice == "background")


def build_image_tab(menu: model_menu.ModelMenu) -> None:
    """The Image tab: a photo (upload, paste or URL) in, the result, its mask and a before/after view out."""
    with gr.Tab("Image", id="image", elem_id="image_tab"):
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
                if url_input.url_input_enabled():
                    with gr.Row(equal_height=True):
                        url = gr.Textbox(
                            label="Or an image address",
                            placeholder="https://example.com/photo.jpg",
                            info="Fetched by the server; public addresses only, up to 20 MB.",
                            elem_id="image_url",
                            scale=4,
                        )
                        fetch = gr.Button("Fetch", elem_id="fetch_url", scale=1)
                else:
                    url = fetch = None
                threshold = gr.Slider(
                    0.0, 1.0, value=0.0, step=0.01, label="Threshold",
                    info="0 keeps the soft mask (smooth hair and edges); above 0 each pixel is kept "
                    "or removed, cut at that confidence.",
                    elem_id="threshold",
                )
                hr_blend = gr.Slider(
                    0.0, 1.0, value=0.0, step=0.05, label="HR blending",
                    info="0 is one pass at the model's size; towards 1 a full-resolution pass adds edge "
                    "detail (photos over 512 px on both sides; slower).",
                    elem_id="hr_blend",
                )
                output = gr.Radio(
                    list(OUTPUT_CHOICES), value="transparent", label="Output",
                    info="What the result file holds; the mask is always there to download too.",
                    elem_id="output",
                )
                color = gr.ColorPicker(
                    value="#00ff00", label="Background colour", info="The colour behind the subject.",
                    visible=False, elem_id="color",
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
                    label="Before / after",
                    interactive=False,
                    buttons=["fullscreen"],  # the files to keep are the PNGs below, not this preview
                    elem_id="comparison",
                )
                with gr.Row():
                    download = gr.File(label="Result (PNG)", interactive=False, elem_id="download")
                    mask_download = gr.File(label="Mask (PNG)", interactive=False, elem_id="mask_download")
                status = gr.Markdown(elem_id="status")
        outputs = [download, mask_download, comparison, status]
        # A sample's click also sets the model and the settings its cached result was made with.
        examples = gr.Examples(
            [[photo, model_menu.DEFAULT_MODEL, model_menu.DEFAULT_MODEL, 0.0, 0.0, "transparent"]
             for photo in example_photos()],
            inputs=[image, menu.common, menu.model, threshold, hr_blend, output],
            outputs=outputs,
            fn=run_example,
            cache_examples=True,
            cache_mode=EXAMPLES_CACHE_MODE,
            visible_columns=[0],
            label="Sample photos",
            elem_id="examples",
        )
        # (A column of None values would be dropped from the examples, so the other menu is cleared here.)
        examples.dataset.click(
            lambda: gr.update(value=None), outputs=menu.more, api_visibility="private", queue=False
        )

    output.change(
        show_output_options, inputs=output, outputs=[color, background], api_visibility="private", queue=False
    )
    inputs = [image, menu.model, threshold, hr_blend, output, color, background]
    run.click(
        remove_background,
        inputs=inputs,
        outputs=outputs,
        api_name="remove_background",
        concurrency_limit=CONCURRENCY_LIMIT,
        concurrency_id="inference",
    )
    # A visitor's own change redoes the result; a sample photo's click does not (its result is cached).
    gr.on(
        [
            image.upload,
            threshold.release,
            hr_blend.release,
            output.input,
            color.input,
            background.upload,
        ],
        rerun,
        inputs=inputs,
        outputs=outputs,
        **RERUN_EVENT,
    )
    for picked in menu.picked:  # a model picked in the shared menu, once the model in force is set
        picked.then(rerun, inputs=inputs, outputs=outputs, **RERUN_EVENT)
    if url is not None and fetch is not None:
        gr.on(
            [url.submit, fetch.click], fetch_photo, inputs=url, outputs=image, api_visibility="private",
            show_progress_on=fetch,  # a refused address marks the button: the photo and the typed address stay
        ).success(
            remove_background,
            inputs=inputs,
            outputs=outputs,
            api_visibility="private",
            concurrency_limit=CONCURRENCY_LIMIT,
            concurrency_id="inference",
        )


def build_demo() -> gr.Blocks:
    """The page (Image and Video tabs under one model menu) and its API endpoints."""
    with gr.Blocks(title="InSPyReNet background removal", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        menu = model_menu.build_model_menu()
        with gr.Tabs():
            build_image_tab(menu)
            video_tab.build(get_remover, menu.model)  # space/video_tab.py
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY_LIMIT)
    return demo


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
    return gr.mount_gradio_app(app, demo, path="/", max_file_size=MAX_FILE_SIZE, theme=THEME)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        import uvicorn

        rest_app = build_app()
    except ImportError:  # a library without the serving room: the page alone
        demo.launch(max_file_size=MAX_FILE_SIZE, theme=THEME)
    else:
        host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
        uvicorn.run(rest_app, host=host, port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
