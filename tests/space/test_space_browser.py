"""The Space in a real browser: Debian's headless Chromium driven by Playwright.

One visitor's session over both tabs: a sample photo (its result cached after
the first click), a photo fetched from an image address, an upload whose
cut-out and mask are downloaded and decoded back, both sliders, a model from
"More models", and a video in the Video tab with that same model.
Screenshots: test-artifacts/space-image-tab.png and
test-artifacts/space-video-tab.png.
"""

from __future__ import annotations

import functools
import http.server
import os
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("playwright", reason="needs the test extra: pip install -e '.[test,space]'")
    pytest.importorskip("gradio", reason="needs the space extra: pip install -e '.[test,space]'")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

from space_helpers import SpaceServer  # noqa: E402  (the server: tests/space/conftest.py)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
PHOTOS = REPO / "tests" / "data" / "photos"
RESULT_TIMEOUT_MS = 300_000
CACHED_TIMEOUT_MS = 15_000  # a cached sample's result is read from disk, not computed


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Over 512 px on both sides, so HR blending really runs its second pass."""
    path = tmp_path_factory.mktemp("space-browser") / "astronaut.png"
    with Image.open(PHOTOS / "astronaut.png") as astronaut:
        astronaut.convert("RGB").resize((576, 544), Image.Resampling.BILINEAR).save(path)
    return path


def _move_slider(page: Page, elem_id: str, fraction: float) -> float:
    """Click a slider's track at ``fraction`` of its width, as a visitor would; its new value."""
    track = page.locator(f"#{elem_id} input[type=range]")
    box = track.bounding_box()
    assert box is not None, f"slider #{elem_id} is not on screen"
    page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
    value = float(page.locator(f"#{elem_id} input[type=number]").input_value())
    assert value > 0, f"clicking slider #{elem_id} did not move it"
    return value


@pytest.fixture(scope="module")
def image_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A loopback HTTP server with a small photo, for the image address field."""
    folder = tmp_path_factory.mktemp("image-host")
    with Image.open(PHOTOS / "cat.png") as cat:
        cat.convert("RGB").resize((227, 151), Image.Resampling.BILINEAR).save(folder / "cat.jpg", quality=95)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-frame H.264 clip with sound."""
    from video_clips import make_clip

    path = tmp_path_factory.mktemp("space-browser-video") / "clip.mp4"
    with Image.open(PHOTOS / "cat.png") as cat:
        make_clip(path, cat.convert("RGB"), kind="pan", frames=4)
    return path


def _download(page: Page, elem_id: str, folder: Path) -> Image.Image:
    """Click the link of file component #elem_id as a visitor would; the saved file, decoded."""
    with page.expect_download(timeout=60_000) as info:
        page.locator(f"#{elem_id} a").first.click()
    saved = Path(tempfile.mkdtemp(dir=folder)) / info.value.suggested_filename
    info.value.save_as(saved)
    return _decoded(saved)


def _fetch(url: str, folder: Path) -> Image.Image:
    """The image at ``url``, decoded."""
    path = Path(tempfile.mkdtemp(dir=folder)) / "fetched"
    with urllib.request.urlopen(url, timeout=60) as response:
        path.write_bytes(response.read())
    return _decoded(path)


def _decoded(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def _line_count(element) -> int:
    """How many lines a label's text takes on screen."""
    return element.evaluate("e => e.getClientRects().length")


@pytest.mark.slow  # about 1.5 min: six photos and a 4-frame video through a full-size network
def test_a_visitor_uses_both_tabs_and_downloads_the_cutout_and_the_mask(
    browser: Browser, space_server: SpaceServer, photo: Path, image_host: str, clip: Path, tmp_path: Path
):
    log_start = len(space_server.log_path.read_text(errors="replace"))
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    status = page.locator("#status")
    try:
        page.goto(space_server.url, wait_until="domcontentloaded", timeout=60_000)
        expect(page.get_by_role("tab")).to_have_text(["Image", "Video"], timeout=60_000)
        # The two common models' labels fit on one line each.
        common = page.locator("#model_common label span")
        expect(common).to_have_count(2)
        assert [_line_count(label) for label in common.all()] == [1, 1]
        assert common.first.inner_text().startswith("fast")

        # A sample photo: computed on its first click, then read from the cache.
        sample = page.locator("#examples .gallery-item, #examples button.gallery").first
        sample.click()
        expect(status).to_contain_text("512×512 px, fast model, threshold 0.00", timeout=RESULT_TIMEOUT_MS)
        page.locator("#image_url input, #image_url textarea").first.fill(f"{image_host}/cat.jpg")
        page.locator("#fetch_url").click()
        expect(status).to_contain_text("227×151 px, fast model", timeout=RESULT_TIMEOUT_MS)
        sample.click()
        expect(status).to_contain_text("512×512 px, fast model", timeout=CACHED_TIMEOUT_MS)

        # An upload, and both downloads.
        page.locator("#photo input[type=file]").set_input_files(str(photo))
        expect(status).to_contain_text(
            "576×544 px, fast model, threshold 0.00, HR blending 0.00", timeout=RESULT_TIMEOUT_MS
        )
        expect(page.locator("#comparison img")).to_have_count(2)
        expect(page.locator("#download a").first).to_have_attribute("download", "astronaut-transparent.png")
        cutout = _download(page, "download", tmp_path)
        mask = _download(page, "mask_download", tmp_path)

        hr_blend = _move_slider(page, "hr_blend", 0.99)
        expect(status).to_contain_text(
            f"threshold 0.00, HR blending {hr_blend:.2f}", timeout=RESULT_TIMEOUT_MS
        )
        blended = _fetch(page.locator("#download a").first.get_attribute("href"), tmp_path)
        threshold = _move_slider(page, "threshold", 0.6)
        expect(status).to_contain_text(
            f"threshold {threshold:.2f}, HR blending {hr_blend:.2f}", timeout=RESULT_TIMEOUT_MS
        )
        expect(page.locator("#comparison img")).to_have_count(2)
        hard = _download(page, "download", tmp_path)
        after = _fetch(page.locator("#comparison img").nth(1).get_attribute("src"), tmp_path)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "space-image-tab.png"), full_page=True)

        # A model from "More models": the radio lets go of fast.
        page.get_by_text("More models").first.click()
        page.locator("#model_more input").click()
        page.get_by_role("option", name="swinb (384 px)").click()
        expect(status).to_contain_text("576×544 px, swinb model", timeout=RESULT_TIMEOUT_MS)
        expect(page.locator("#model_common input:checked")).to_have_count(0)

        # The Video tab runs with the model chosen above.
        page.get_by_role("tab", name="Video").click()
        page.locator("#video input[type=file]").set_input_files(str(clip))
        expect(page.locator("#video video")).to_have_count(1, timeout=60_000)  # uploaded: the player shows it
        page.locator("#video_run").click()
        video_status = page.locator("#video_status")
        expect(video_status).to_contain_text("4 frames, swinb model", timeout=RESULT_TIMEOUT_MS)
        video_src = page.locator("#video_result video").first.get_attribute("src")
        page.screenshot(path=str(ARTIFACTS / "space-video-tab.png"), full_page=True)
    finally:
        page.close()
    log = space_server.log_path.read_text(errors="replace")[log_start:]
    assert log.count("512x512 model=fast") == 1, "the sample's second click was computed again"

    size = Image.open(photo).size
    assert cutout.format == mask.format == "PNG"
    assert cutout.mode == "RGBA" and cutout.size == size
    assert mask.mode == "L" and mask.size == size
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(cutout.getchannel("A")))
    soft_alpha, blended_alpha, hard_alpha = (
        np.asarray(image.getchannel("A")).astype(int) for image in (cutout, blended, hard)
    )
    # Each slider visibly changed the cut-out.
    assert len(np.unique(soft_alpha)) > 16
    changed = np.abs(blended_alpha - soft_alpha) > 2
    assert changed.mean() > 0.01, "HR blending left the cut-out as it was"
    assert set(np.unique(hard_alpha)) == {0, 255}, "the threshold did not harden the mask"
    # The preview shows a checkerboard where the cut-out is transparent (WebP: a few levels off).
    assert after.size == size
    shown = np.asarray(after.convert("RGB")).astype(int)
    rows, cols = np.indices(hard_alpha.shape)
    board = np.where((rows // 12 + cols // 12) % 2 == 0, 255, 217)
    clear = hard_alpha == 0
    assert clear.mean() > 0.05
    assert np.median(np.abs(shown[clear] - board[clear][:, None])) <= 6

    import av

    webm = tmp_path / "result.webm"
    with urllib.request.urlopen(video_src, timeout=60) as response:
        webm.write_bytes(response.read())
    with av.open(str(webm)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    assert len(frames) == 4
    assert (frames[0].width, frames[0].height) == (160, 96)
