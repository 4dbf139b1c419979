"""Decoding inputs people really have, refusing bad ones clearly, writing safely."""

from __future__ import annotations

import functools
import io
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from inspyrenet_lite.image_io import ImageLoadError, load_image, save_image, to_kind


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes | None) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB). ``raw_rows=None``
    writes the header only, with no pixel data at all."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", header)
    if raw_rows is not None:
        body += chunk(b"IDAT", zlib.compress(raw_rows))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def rgb16_png(pixels: np.ndarray) -> bytes:
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))
    return png_bytes(width, height, 16, 2, rows)


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def rgb_of(source, **kwargs) -> np.ndarray:
    return np.asarray(load_image(source, **kwargs).rgb)


# ------------------------------------------------------------------ kinds
def test_each_input_kind_decodes_to_the_same_rgb_pixels(tmp_path: Path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    path = tmp_path / "small.png"
    img.save(path)
    data = path.read_bytes()
    cases = {
        "pil": img,
        "array": arr,
        "path": path,
        "str": str(path),
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
    }
    expected_kind = {"pil": "pil", "array": "array", "path": "path", "str": "path"}
    for label, source in cases.items():
        loaded = load_image(source)
        assert loaded.rgb.mode == "RGB", label
        assert loaded.size == (5, 7), label
        np.testing.assert_array_equal(np.asarray(loaded.rgb), arr, err_msg=label)
        assert loaded.kind == expected_kind.get(label, "bytes"), label


@pytest.mark.parametrize(
    "arr, expected",
    [
        (np.full((2, 3), 77, np.uint8), (77, 77, 77)),
        (np.full((2, 3, 1), 77, np.uint8), (77, 77, 77)),
        (np.full((2, 3, 4), (10, 20, 30, 0), np.uint8), (10, 20, 30)),
    ],
    ids=["HxW", "HxWx1", "HxWx4-alpha-ignored"],
)
def test_array_shapes_people_have(arr: np.ndarray, expected):
    rgb = rgb_of(arr)
    assert rgb.shape == (2, 3, 3)
    assert tuple(rgb[1, 2]) == expected


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4, 2), np.uint8), "HxWx3"),
        (np.zeros((16,), np.uint8), "HxWx3"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
    ],
    ids=["float", "two-channels", "1-D", "empty"],
)
def test_bad_arrays_get_an_error_that_says_what_to_pass(arr: np.ndarray, message: str):
    with pytest.raises(ImageLoadError, match=message) as info:
        load_image(arr)
    assert "numpy array" in str(info.value)


def test_an_unsupported_object_is_a_type_error_listing_the_kinds():
    with pytest.raises(TypeError, match="PIL image"):
        load_image(42)


# ------------------------------------------------------------------ modes
def test_pillow_modes_become_rgb_with_the_right_colours(tmp_path: Path):
    palette = Image.new("P", (2, 2))
    palette.putpalette([200, 100, 50] + [0, 0, 0] * 255)
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 0
    cases = {
        "L": (Image.new("L", (2, 2), 77), (77, 77, 77)),
        "LA": (Image.new("LA", (2, 2), (77, 0)), (77, 77, 77)),
        "P": (palette, (200, 100, 50)),
        "P-transparent": (transparent_palette, (200, 100, 50)),
        "RGBA": (Image.new("RGBA", (2, 2), (10, 20, 30, 0)), (10, 20, 30)),
        "CMYK": (Image.new("CMYK", (2, 2), (0, 255, 255, 0)), (255, 0, 0)),
        "1": (Image.new("1", (2, 2), 1), (255, 255, 255)),
    }
    for label, (img, expected) in cases.items():
        fmt = "JPEG" if label == "CMYK" else "PNG"
        for source in (img, encode(img, fmt, **({"quality": 100} if fmt == "JPEG" else {}))):
            rgb = rgb_of(source)
            tolerance = 3 if fmt == "JPEG" and not isinstance(source, Image.Image) else 0
            assert np.abs(rgb[0, 0].astype(int) - expected).max() <= tolerance, (label, rgb[0, 0])


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped():
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    for source in (img, encode(img)):
        rgb = rgb_of(source)
        assert rgb[0, :, 0].tolist() == [0, 128, 255]
        assert (rgb[..., 0] == rgb[..., 2]).all()


def test_16_bit_rgb_png_keeps_its_colours():
    pixels = np.array([[[65535, 32896, 0], [0, 0, 65535]]], dtype=np.uint16)
    rgb = rgb_of(rgb16_png(pixels))
    assert rgb.tolist() == [[[255, 128, 0], [0, 0, 255]]]


def test_a_one_pixel_image_loads():
    assert rgb_of(encode(Image.new("RGB", (1, 1), (1, 2, 3)))).tolist() == [[[1, 2, 3]]]


# ------------------------------------------------------------------- EXIF
def _oriented_jpeg() -> bytes:
    """40x20 stored pixels, left half red, right half blue, EXIF orientation 6
    (the viewer turns it 90 degrees clockwise: red ends up on top)."""
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied_to_files_and_bytes(tmp_path: Path):
    data = _oriented_jpeg()
    path = tmp_path / "turned.jpg"
    path.write_bytes(data)
    for source in (data, path):
        rgb = rgb_of(source).astype(int)
        assert rgb.shape == (40, 20, 3)
        assert rgb[2, 10, 0] > 200 and rgb[2, 10, 2] < 60  # top: red
        assert rgb[37, 10, 2] > 200 and rgb[37, 10, 0] < 60  # bottom: blue


def test_a_pil_image_keeps_its_pixel_grid():
    with Image.open(io.BytesIO(_oriented_jpeg())) as img:
        assert load_image(img).size == (40, 20)


# ------------------------------------------------------------ bad inputs
def test_bad_files_raise_one_documented_error_naming_the_file(tmp_path: Path):
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    png = encode(noise)
    jpeg = encode(noise, "JPEG")
    files = {
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "notes.png": (b"this is not an image\n" * 10, "not an image"),
        "empty.png": (b"", "empty"),
    }
    for name, (data, reason) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageLoadError, match=reason) as info:
            load_image(path)
        assert isinstance(info.value, ValueError)
        assert str(path) in str(info.value)
        assert info.value.source == repr(str(path))


def test_missing_paths_and_folders_are_named(tmp_path: Path):
    with pytest.raises(ImageLoadError, match="no such file") as info:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(info.value)
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)


def test_bad_bytes_are_named_by_their_length():
    with pytest.raises(ImageLoadError, match=r"<5 bytes>.*not an image"):
        load_image(b"hello")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


def test_the_pixel_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch):
    data = encode(Image.new("RGB", (200, 100)))

    def no_decoding(self):  # the refusal must come from the header alone
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageLoadError, match=r"200x100 = 20000 pixels is above the limit of 19999"):
        load_image(data, max_pixels=19_999)


def test_a_header_only_bomb_is_refused_under_the_default_limit():
    # 12000 x 12000 = 144 M pixels: above the default 100 M, with no pixel data at all.
    with pytest.raises(ImageLoadError, match="above the limit"):
        load_image(png_bytes(12_000, 12_000, 8, 0, raw_rows=None))
    # Far above Pillow's own guard too.
    with pytest.raises(ImageLoadError):
        load_image(png_bytes(100_000, 100_000, 8, 0, raw_rows=None))


def test_the_pixel_limit_applies_to_arrays_and_can_be_raised_or_disabled():
    arr = np.zeros((100, 200, 3), np.uint8)
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(arr, max_pixels=19_999)
    assert load_image(arr, max_pixels=20_000).size == (200, 100)
    assert load_image(arr, max_pixels=None).size == (200, 100)


# --------------------------------------------------------------- outputs
def test_results_come_back_as_the_kind_of_input():
    result = Image.new("RGBA", (3, 2), (1, 2, 3, 4))
    assert to_kind(result, "pil") is result
    assert to_kind(result, "path") is result
    arr = to_kind(result, "array")
    assert isinstance(arr, np.ndarray) and arr.shape == (2, 3, 4) and arr.flags.writeable
    data = to_kind(result, "bytes")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as back:
        assert back.mode == "RGBA" and back.getpixel((0, 0)) == (1, 2, 3, 4)


def test_save_image_writes_the_file(tmp_path: Path):
    target = save_image(Image.new("RGB", (4, 3), (9, 8, 7)), tmp_path / "out.png")
    with Image.open(target) as back:
        assert back.size == (4, 3) and back.getpixel((0, 0)) == (9, 8, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path: Path, monkeypatch, failure):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def half_then_fail(self, fp, format=None, **params):
        fp.write(b"\x89PNG half an image")
        raise failure

    monkeypatch.setattr(Image.Image, "save", half_then_fail)
    with pytest.raises(type(failure)):
        save_image(Image.new("RGB", (4, 4)), target)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_save_image_needs_a_known_format(tmp_path: Path):
    with pytest.raises(ValueError, match="format"):
        save_image(Image.new("RGB", (2, 2)), tmp_path / "out.unknown")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------- writing files (issue 9)
def test_a_final_name_of_255_bytes_can_be_written(tmp_path: Path):
    # The temporary name used to be ".<final name>.XXXXXXXX.part": 15 bytes over the limit.
    target = tmp_path / ("n" * 251 + ".png")
    save_image(Image.new("RGB", (4, 3), (9, 8, 7)), target)
    with Image.open(target) as back:
        assert back.getpixel((0, 0)) == (9, 8, 7)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_user_s_normal_permissions(tmp_path: Path, umask: int):
    old = os.umask(umask)
    try:
        target = save_image(Image.new("RGB", (4, 3)), tmp_path / "out.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def _noise(mode: str, size=(64, 48), seed=0) -> Image.Image:
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode=mode)


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_webp_is_lossless_by_default(tmp_path: Path, mode: str):
    img = _noise(mode)
    save_image(img, tmp_path / "out.webp")
    with Image.open(tmp_path / "out.webp") as back:
        assert np.array_equal(np.asarray(back.convert(mode)), np.asarray(img))


def test_a_quality_makes_webp_lossy_and_sets_jpeg_quality(tmp_path: Path):
    img = _noise("RGB")
    save_image(img, tmp_path / "lossy.webp", quality=50)
    with Image.open(tmp_path / "lossy.webp") as back:
        assert not np.array_equal(np.asarray(back.convert("RGB")), np.asarray(img))
    high = save_image(img, tmp_path / "high.jpg").stat().st_size
    low = save_image(img, tmp_path / "low.jpg", quality=20).stat().st_size
    assert low < high / 2
    with pytest.raises(ValueError, match="quality"):
        save_image(img, tmp_path / "bad.jpg", quality=0)


@functools.cache
def _modified_srgb_profile() -> bytes:
    """An RGB profile that is not Pillow's sRGB: its bytes must come through unchanged.

    Cached: the header holds its creation time."""
    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    assert data[16:20] == b"RGB "
    data[48:52] = b"TEST"  # device model field of the ICC header
    return bytes(data)


_DATE, _MAKE = "2024:05:06 07:08:09", "TestCam"


@pytest.fixture(scope="module")
def cutout_with_metadata(tmp_path_factory: pytest.TempPathFactory, remover) -> Image.Image:
    """One network pass on a rotated JPEG with a non-sRGB profile, EXIF and DPI."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: decoding applies it
    exif[0x0132] = _DATE
    exif[0x010F] = _MAKE
    photo = tmp_path_factory.mktemp("metadata") / "photo.jpg"
    Image.new("RGB", (40, 24), (200, 60, 40)).save(
        photo, icc_profile=_modified_srgb_profile(), exif=exif.tobytes(), dpi=(300, 300)
    )
    return remover.process(str(photo))


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tiff"), ("JPEG", "jpg")])
def test_icc_profile_exif_and_dpi_reach_the_output_file(tmp_path: Path, cutout_with_metadata, fmt: str, suffix: str):
    result = cutout_with_metadata.convert("RGB") if fmt == "JPEG" else cutout_with_metadata
    target = save_image(result, tmp_path / f"out.{suffix}", format=fmt)
    with Image.open(target) as back:
        assert back.size == (24, 40)  # orientation was applied ...
        assert back.info.get("icc_profile") == _modified_srgb_profile()
        written = back.getexif()
        assert written.get(0x0112, 1) == 1  # ... so it is not applied twice
        assert written.get(0x0132) == _DATE and written.get(0x010F) == _MAKE
        if fmt != "WEBP":  # WebP has no resolution field
            assert tuple(round(float(v)) for v in back.info["dpi"]) == (300, 300)


def test_a_map_does_not_carry_a_colour_profile(tmp_path: Path, remover):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 24), (200, 60, 40)).save(photo, icc_profile=_modified_srgb_profile())
    target = save_image(remover.process(str(photo), type="map"), tmp_path / "map.png")
    with Image.open(target) as back:
        assert back.mode == "L" and "icc_profile" not in back.info
