"""load_image on the odd inputs a hostile but realistic user has (issue 9, items 18, 21, 22)."""

from __future__ import annotations

import io
import logging
import threading

import numpy as np
import pytest
from PIL import Image

from inspyrenet_lite.image_io import ImageLoadError, load_image


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def noise(width: int = 64, height: int = 48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


# ------------------------------------------------------------ item 18
def test_a_lazily_opened_truncated_image_is_an_image_load_error():
    data = encode(noise())
    lazy = Image.open(io.BytesIO(data[: len(data) // 2]))  # header fine, pixels cut off
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(lazy)


@pytest.mark.parametrize("loaded_first", [False, True])
def test_a_closed_image_is_an_image_load_error(loaded_first: bool):
    img = Image.open(io.BytesIO(encode(noise())))
    if loaded_first:
        img.load()
    img.close()
    with pytest.raises(ImageLoadError, match="closed"):
        load_image(img)


def test_an_empty_path_is_called_empty_not_a_folder():
    with pytest.raises(ImageLoadError, match="path is empty"):
        load_image("")


def test_mode_i_with_8_bit_values_keeps_its_grey_levels():
    grey = np.array([[0, 17, 128, 255]], dtype=np.int32)
    img = Image.fromarray(grey, mode="I")
    assert np.asarray(load_image(img).rgb)[0, :, 0].tolist() == [0, 17, 128, 255]


def test_mode_i_with_16_bit_values_is_scaled_like_16_bit():
    img = Image.fromarray(np.array([[0, 257, 32896, 65535]], dtype=np.int32), mode="I")
    assert np.asarray(load_image(img).rgb)[0, :, 0].tolist() == [0, 1, 128, 255]


# Every mode Pillow can create: README says any mode is accepted.
ALL_MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV",
             "I", "F", "I;16", "I;16L", "I;16B", "I;16N"]


@pytest.mark.parametrize("mode", ALL_MODES)
def test_every_pillow_mode_loads_as_rgb(mode: str):
    loaded = load_image(Image.new(mode, (5, 3)))
    assert loaded.rgb.mode == "RGB" and loaded.size == (5, 3)


def test_premultiplied_la_keeps_its_grey_level():
    # Fully opaque: premultiplied and straight values are the same.
    img = Image.new("La", (2, 2), (90, 255))
    assert np.asarray(load_image(img).rgb)[0, 0].tolist() == [90, 90, 90]


# ------------------------------------------------------------ item 21
def test_our_limit_is_the_only_one_when_it_is_above_pillows(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow refuses above 2000 pixels
    data = encode(noise(100, 60))  # 6000 pixels
    assert load_image(data, max_pixels=6_000).size == (100, 60)
    with pytest.raises(ImageLoadError, match="above the limit of 5999"):
        load_image(data, max_pixels=5_999)
    assert load_image(data, max_pixels=None).size == (100, 60)


def test_pillows_guard_only_widens_once_and_is_never_toggled_per_decode(monkeypatch: pytest.MonkeyPatch):
    """The guard is process-wide: decodes must not move it under other threads (issue 17)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    small = encode(noise(10, 10))
    load_image(small, max_pixels=2_000)  # a limit within Pillow's own guard (2x its value) changes nothing
    assert Image.MAX_IMAGE_PIXELS == 1_000
    data = encode(noise(100, 60))
    seen: set[int | None] = set()
    failures: list[BaseException] = []

    def work(limit: int | None) -> None:
        try:
            for _ in range(20):
                load_image(data, max_pixels=limit)
                seen.add(Image.MAX_IMAGE_PIXELS)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(limit,)) for limit in (8_000, 8_000, 6_000, 6_000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert Image.MAX_IMAGE_PIXELS == 4_000  # half the widest limit asked for (Pillow refuses above twice it)
    load_image(data, max_pixels=6_000)
    assert Image.MAX_IMAGE_PIXELS == 4_000  # a narrower limit later never narrows it


def test_the_message_says_how_to_lift_the_limit_without_python_globals():
    with pytest.raises(ImageLoadError) as info:
        load_image(np.zeros((10, 10), np.uint8), max_pixels=99)
    assert "--max-pixels" in str(info.value) and "0 for no limit" in str(info.value)
    assert "MAX_IMAGE_PIXELS" not in str(info.value)


# ------------------------------------------------------------ item 22
@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF"])
def test_only_the_first_frame_is_used_and_a_warning_says_so(fmt: str, caplog: pytest.LogCaptureFixture):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **({"lossless": True} if fmt == "WEBP" else {}))
    with caplog.at_level(logging.WARNING, logger="inspyrenet_lite.image_io"):
        rgb = np.asarray(load_image(data).rgb)
    assert tuple(rgb[8, 8]) == (255, 0, 0)
    assert any("3 frames" in r.getMessage() and "only the first" in r.getMessage() for r in caplog.records)


def test_a_still_image_gives_no_frame_warning(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="inspyrenet_lite.image_io"):
        load_image(encode(noise(), "GIF"))
    assert not caplog.records
