"""Output types, threshold/reverse and foreground colour estimation (no network needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspyrenet_lite.compositing import (
    OutputSpec,
    alpha_to_uint8,
    apply_threshold_reverse,
    box_blur,
    composite,
    estimate_foreground,
    parse_output_type,
    smooth_box_blur,
)

H, W = 24, 32


@pytest.fixture(scope="module")
def noisy() -> Image.Image:
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def half_alpha() -> np.ndarray:
    """Left half background (0), right half foreground (1)."""
    alpha = np.zeros((H, W), np.float32)
    alpha[:, W // 2 :] = 1.0
    return alpha


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "type_, kind, colour",
    [
        ("rgba", "rgba", None),
        ("MAP", "map", None),
        ("blur", "blur", None),
        ("overlay", "overlay", None),
        ("green", "colour", (0, 255, 0)),
        ("white", "colour", (255, 255, 255)),
        ("#FF8000", "colour", (255, 128, 0)),
        ("255, 0, 10", "colour", (255, 0, 10)),
        ("[255, 0, 10]", "colour", (255, 0, 10)),
        ((1, 2, 3), "colour", (1, 2, 3)),
        ([1, 2, 3], "colour", (1, 2, 3)),
    ],
)
def test_output_types_parse(type_, kind, colour):
    spec = parse_output_type(type_)
    assert (spec.kind, spec.colour) == (kind, colour)
    assert parse_output_type(spec) is spec


@pytest.mark.parametrize("bad", ["purple", "#12345", (256, 0, 0), (1, 2), (1.5, 2, 3), 7, "no/such/background.png"])
def test_unknown_output_types_list_the_choices(bad):
    with pytest.raises(ValueError, match="rgba|three integers"):
        parse_output_type(bad)


def test_a_missing_background_image_is_named_as_such(tmp_path: Path):
    with pytest.raises(ValueError, match=r"background image '.*beach.jpg' not found"):
        parse_output_type(str(tmp_path / "beach.jpg"))


def test_a_background_image_parses_from_a_path_or_pil(tmp_path: Path):
    path = tmp_path / "bg.png"
    Image.new("RGB", (5, 5), (1, 2, 3)).save(path)
    for source in (path, str(path), Image.open(path)):
        spec = parse_output_type(source)
        assert spec.kind == "image" and spec.background.getpixel((0, 0)) == (1, 2, 3)


# ------------------------------------------------------- threshold/reverse
def test_threshold_makes_a_hard_mask_above_the_value_and_reverse_inverts():
    alpha = np.array([[0.0, 0.3, 0.5, 0.51, 1.0]], np.float32)
    assert apply_threshold_reverse(alpha, 0.5, False).tolist() == [[0, 0, 0, 1, 1]]
    assert apply_threshold_reverse(alpha, 0.5, True).tolist() == [[1, 1, 1, 0, 0]]
    np.testing.assert_allclose(apply_threshold_reverse(alpha, None, True), 1.0 - alpha)
    np.testing.assert_array_equal(apply_threshold_reverse(alpha, None, False), alpha)
    with pytest.raises(ValueError, match="threshold"):
        apply_threshold_reverse(alpha, 1.5, False)


def test_the_grey_map_truncates_like_the_reference():
    assert alpha_to_uint8(np.array([0.0, 0.5, 0.999, 1.0], np.float32)).tolist() == [0, 127, 254, 255]


# ---------------------------------------------------------------- blurs
@pytest.mark.parametrize("radius", [0, 1, 3, 40])
def test_box_blur_is_the_mean_over_the_window_inside_the_image(radius: int):
    x = np.random.default_rng(radius).random((9, 13, 2)).astype(np.float32)
    expected = np.empty_like(x)
    for i in range(9):
        for j in range(13):
            expected[i, j] = x[max(0, i - radius) : i + radius + 1, max(0, j - radius) : j + radius + 1].mean(
                axis=(0, 1)
            )
    np.testing.assert_allclose(box_blur(x, radius), expected, atol=1e-5)


def test_the_shrunk_wide_blur_stays_close_to_the_exact_one():
    yy, xx = np.mgrid[0:300, 0:400]
    disc = np.clip((100 - np.hypot(yy - 150, xx - 200)) / 4, 0, 1).astype(np.float32)[..., None]
    exact = box_blur(disc, 45)
    fast = smooth_box_blur(disc, 45)
    assert fast.shape == exact.shape
    assert np.abs(fast - exact).max() < 0.02
    assert np.abs(fast - exact).mean() < 0.002


def test_foreground_estimation_removes_the_old_background_colour_from_soft_edges():
    # A red object over a blue background with an 8-pixel soft edge (hair-like
    # widths; the approximation is meant for edges, not for wide gradients).
    h, w = 40, 200
    alpha = np.tile(np.clip((np.arange(w) - 90) / 8.0, 0, 1), (h, 1)).astype(np.float32)
    red, blue = np.array([1.0, 0, 0]), np.array([0, 0, 1.0])
    observed = alpha[..., None] * red + (1 - alpha[..., None]) * blue
    image = np.rint(observed * 255).astype(np.uint8)
    fg = estimate_foreground(image, alpha)
    soft = (alpha > 0.1) & (alpha < 0.9)
    raw_error = np.abs(observed[soft] - red).mean()
    est_error = np.abs(fg[soft] - red).mean()
    assert raw_error > 0.25
    assert est_error < 0.03
    np.testing.assert_allclose(fg[alpha == 1.0], observed[alpha == 1.0], atol=1 / 255)


# -------------------------------------------------------------- composites
def test_map_and_rgba_share_the_same_alpha(noisy: Image.Image):
    alpha = np.random.default_rng(4).random((H, W)).astype(np.float32)
    grey = composite(noisy, alpha, OutputSpec("map"))
    assert grey.mode == "L" and grey.size == (W, H)
    np.testing.assert_array_equal(np.asarray(grey), alpha_to_uint8(alpha))
    rgba = composite(noisy, alpha, OutputSpec("rgba"))
    assert rgba.mode == "RGBA" and rgba.size == (W, H)
    np.testing.assert_array_equal(np.asarray(rgba)[..., 3], np.asarray(grey))


def test_rgba_keeps_the_colours_of_the_solid_foreground(noisy: Image.Image, half_alpha: np.ndarray):
    rgba = np.asarray(composite(noisy, half_alpha, OutputSpec("rgba")))
    np.testing.assert_array_equal(rgba[:, W // 2 :, :3], np.asarray(noisy)[:, W // 2 :])
    assert (rgba[:, : W // 2, 3] == 0).all()


@pytest.mark.parametrize(
    "type_, colour",
    [("green", (0, 255, 0)), ("white", (255, 255, 255)), ("#102030", (16, 32, 48)), ((9, 8, 7), (9, 8, 7))],
)
def test_colour_backgrounds_replace_what_was_removed(noisy, half_alpha, type_, colour):
    out = composite(noisy, half_alpha, parse_output_type(type_))
    assert out.mode == "RGB" and out.size == (W, H)
    arr = np.asarray(out)
    assert (arr[:, : W // 2] == colour).all()
    np.testing.assert_array_equal(arr[:, W // 2 :], np.asarray(noisy)[:, W // 2 :])


def test_a_background_image_covers_the_frame_without_stretching(noisy, half_alpha):
    # 2:1 background, left half red, right half blue; the frame is 4:3, so the
    # background is scaled to cover and centre-cropped: both colours remain.
    bg = Image.new("RGB", (200, 100), (255, 0, 0))
    bg.paste((0, 0, 255), (100, 0, 200, 100))
    alpha = np.zeros((H, W), np.float32)
    out = np.asarray(composite(noisy, alpha, parse_output_type(bg)))
    assert tuple(out[H // 2, 0]) == (255, 0, 0)
    assert tuple(out[H // 2, W - 1]) == (0, 0, 255)
    kept = np.asarray(composite(noisy, half_alpha, parse_output_type(bg)))
    np.testing.assert_array_equal(kept[:, W // 2 :], np.asarray(noisy)[:, W // 2 :])


def test_blur_blurs_only_the_background(noisy, half_alpha):
    out = np.asarray(composite(noisy, half_alpha, OutputSpec("blur"))).astype(float)
    original = np.asarray(noisy).astype(float)
    np.testing.assert_array_equal(out[:, W // 2 :], original[:, W // 2 :])
    background = out[:, : W // 2]
    assert background.std() < 0.5 * original[:, : W // 2].std()


def test_overlay_tints_the_object_green_and_outlines_it(noisy, half_alpha):
    out = np.asarray(composite(noisy, half_alpha, OutputSpec("overlay"))).astype(int)
    original = np.asarray(noisy).astype(int)
    np.testing.assert_array_equal(out[:, :4], original[:, :4])  # far background untouched
    inside = out[:, W // 2 + 3 :]
    assert (inside[..., 1] >= original[:, W // 2 + 3 :, 1]).all()
    assert (inside[..., 1] >= 127).all()
    assert (out[:, W // 2 - 1 : W // 2 + 1] == (255, 0, 0)).all()  # the outline


def test_composite_refuses_a_mask_of_another_size(noisy):
    with pytest.raises(ValueError, match="does not match"):
        composite(noisy, np.zeros((H + 1, W), np.float32), OutputSpec("map"))


@pytest.mark.parametrize("kind", ["rgba", "colour", "blur", "image"])
def test_between_tiles_runs_before_each_tile_and_can_stop_the_work(kind: str) -> None:
    """A service stops compositing that outlived its deadline at the next row tile, not at the end."""
    from inspyrenet_lite.compositing import TILE_PIXELS

    rng = np.random.default_rng(0)
    width = 512
    height = 3 * TILE_PIXELS // width + 7  # four row tiles
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    alpha = rng.random((height, width), dtype=np.float32)
    spec = {"rgba": OutputSpec("rgba"), "colour": OutputSpec("colour", colour=(255, 0, 0)), "blur": OutputSpec("blur"),
            "image": OutputSpec("image", background=Image.new("RGB", (40, 30), (0, 0, 255)))}[kind]
    calls = []
    whole = composite(image, alpha, spec)
    tiled = composite(image, alpha, spec, between_tiles=lambda: calls.append(1))
    assert np.array_equal(np.asarray(whole), np.asarray(tiled)) and len(calls) >= 4

    def stop_at_the_second() -> None:
        if len(calls) == 1:
            raise TimeoutError("deadline")
        calls.append(1)

    calls.clear()
    with pytest.raises(TimeoutError):
        composite(image, alpha, spec, between_tiles=stop_at_the_second)
    assert len(calls) == 1  # one tile composed, then stopped
