"""Compositing: memory per megapixel, tiles that change nothing, one colour parser (issue 9, items 5, 23)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from inspyrenet_lite import compositing
from inspyrenet_lite.compositing import composite, parse_output_type


def _photo_and_alpha(width: int, height: int, seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    yy, xx = np.mgrid[0:height, 0:width]
    # A soft disc: a wide band of partial alpha, where foreground estimation works hardest.
    alpha = np.clip(1.3 - np.hypot(yy - height / 2, xx - width / 2) / (0.3 * min(height, width)), 0, 1)
    return img, alpha.astype(np.float32)


@pytest.mark.parametrize("type_", ["rgba", "white", (12, 200, 40), "blur", "background"])
@pytest.mark.parametrize("size", [(613, 407), (90, 1500)])
def test_row_tiles_give_the_same_pixels_as_one_tile(monkeypatch: pytest.MonkeyPatch, type_, size):
    img, alpha = _photo_and_alpha(*size)
    if type_ == "background":
        type_ = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 80, 3), dtype=np.uint8))
    spec = parse_output_type(type_)
    monkeypatch.setattr(compositing, "TILE_PIXELS", 1 << 30)  # the whole image at once
    whole = np.asarray(composite(img, alpha, spec))
    for tile_pixels in (4_000, 37_000):  # tiles of a few rows, not multiples of anything
        monkeypatch.setattr(compositing, "TILE_PIXELS", tile_pixels)
        assert np.array_equal(np.asarray(composite(img, alpha, spec)), whole)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_rgba_compositing_memory_per_megapixel_is_bounded():
    # 4 MP: the untiled float64/7-channel version peaked at about 150 MB per
    # megapixel (0.6 GB here); the tiled one holds about 12 bytes per pixel
    # (alpha and output) plus one tile's temporaries.
    img, alpha = _photo_and_alpha(2000, 2000)
    spec = parse_output_type("rgba")
    peak = _peak_bytes(lambda: composite(img, alpha, spec))
    assert peak / 4.0 < 60e6, f"{peak / 4e6:.0f} MB per megapixel"


# ------------------------------------------------------------ one colour parser (issue 9, item 23)
@pytest.mark.parametrize(
    "text, rgb",
    [
        ("#fff", (255, 255, 255)),
        ("#F80", (255, 136, 0)),
        ("#ff800080", (255, 128, 0)),
        ("rgb(0, 64.4, 255)", (0, 64, 255)),
        ("RGBA(255, 128, 0, 0.5)", (255, 128, 0)),
    ],
)
def test_colour_picker_forms_are_colours_in_the_library(text, rgb):
    spec = parse_output_type(text)
    assert (spec.kind, spec.colour) == ("colour", rgb)


def test_a_css_colour_out_of_range_is_refused():
    with pytest.raises(ValueError, match="0..255"):
        parse_output_type("rgb(300, 0, 0)")
