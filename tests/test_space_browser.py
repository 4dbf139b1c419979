"""The Space in a real browser: Debian's headless Chromium driven by Playwright.

A visitor's path: open the page, upload a photo, move both sliders, wait for
each result, download the PNG. A screenshot is saved as
test-artifacts/space-browser.png.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("playwright", reason="needs the test extra: pip install -e '.[test,space]'")
    pytest.importorskip("gradio", reason="needs the space extra: pip install -e '.[test,space]'")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

try:  # the server is shared with test_space.py (one per session)
    from test_space import SpaceServer, space_server  # noqa: F401
except ImportError:  # tests/ imported as a package
    from tests.test_space import SpaceServer, space_server  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
PHOTOS = REPO / "tests" / "data" / "photos"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# No sandbox (root in CI), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RESULT_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def browser() -> Browser:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is needed: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


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


def _fetch_result(page: Page, path: Path) -> Image.Image:
    """The PNG the download link points at now."""
    href = page.locator("#download a").get_attribute("href")
    with urllib.request.urlopen(href, timeout=60) as response:
        path.write_bytes(response.read())
    return Image.open(path)


def test_a_visitor_gets_a_cutout_and_both_sliders_redo_it(
    browser: Browser, space_server: SpaceServer, photo: Path, tmp_path: Path
):
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    try:
        page.goto(space_server.url, wait_until="domcontentloaded", timeout=60_000)
        page.locator("#photo input[type=file]").set_input_files(str(photo))

        status = page.locator("#status")
        expect(status).to_contain_text(
            "576×544 px, fast mode, threshold 0.00, HR blending 0.00", timeout=RESULT_TIMEOUT_MS
        )
        expect(page.locator("#comparison img")).to_have_count(2)
        expect(page.locator("#download a")).to_have_attribute("download", "astronaut-transparent.png")

        soft = _fetch_result(page, tmp_path / "soft.png")
        hr_blend = _move_slider(page, "hr_blend", 0.99)
        expect(status).to_contain_text(
            f"threshold 0.00, HR blending {hr_blend:.2f}", timeout=RESULT_TIMEOUT_MS
        )
        blended = _fetch_result(page, tmp_path / "blended.png")
        threshold = _move_slider(page, "threshold", 0.6)
        expect(status).to_contain_text(
            f"threshold {threshold:.2f}, HR blending {hr_blend:.2f}", timeout=RESULT_TIMEOUT_MS
        )
        expect(page.locator("#comparison img")).to_have_count(2)

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "space-browser.png"), full_page=True)

        with page.expect_download(timeout=60_000) as download_info:
            page.locator("#download a").click()
        saved = tmp_path / download_info.value.suggested_filename
        download_info.value.save_as(saved)
    finally:
        page.close()

    result = Image.open(saved)
    assert result.format == "PNG"
    assert result.mode == "RGBA"
    assert result.size == Image.open(photo).size
    soft_alpha, blended_alpha, hard_alpha = (
        np.asarray(image.getchannel("A")).astype(int) for image in (soft, blended, result)
    )
    # Each slider visibly changed the cut-out.
    assert len(np.unique(soft_alpha)) > 16
    changed = np.abs(blended_alpha - soft_alpha) > 2
    assert changed.mean() > 0.01, "HR blending left the cut-out as it was"
    assert set(np.unique(hard_alpha)) == {0, 255}, "the threshold did not harden the mask"
