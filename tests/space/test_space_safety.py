"""The Space against hostile uploads (issue 9, items 4, 7, 23).

In-process checks use space/app.py's functions; the end-to-end ones share the
`python space/app.py` server of tests/test_space.py.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("gradio", reason="needs the space extra: pip install -e '.[test,space]'")
from gradio_client.exceptions import AppError  # noqa: E402

from inspyrenet_lite.compositing import parse_output_type  # noqa: E402
from inspyrenet_lite.image_io import load_image  # noqa: E402

from space_helpers import call, load_app_module  # noqa: E402


def _header_only_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, with no pixel data."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ------------------------------------------------------------ item 7
def test_16_bit_and_float_uploads_are_decoded_as_the_library_does(tmp_path: Path):
    app = load_app_module()
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((20, 30), 20_000, np.uint16)).save(grey16)  # I;16: 20000/65535 -> grey 78
    float_tiff = tmp_path / "float.tif"
    Image.fromarray(np.full((20, 30), 0.5, np.float32), mode="F").save(float_tiff)  # 0.5 -> grey 128
    for path, grey in ((grey16, 78), (float_tiff, 128)):
        photo = app.load_photo(str(path))
        assert photo.mode == "RGB" and photo.size == (30, 20)
        assert np.array_equal(np.asarray(photo), np.asarray(load_image(path).rgb))
        assert np.asarray(photo)[0, 0].tolist() == [grey] * 3


# ------------------------------------------------------------ item 23
@pytest.mark.parametrize("text", ["#fff", "#00ff00", "rgb(10, 20, 30)", "rgba(10, 20, 30, 0.4)", "12,34,56"])
def test_the_space_and_the_library_read_colours_alike(text: str):
    assert load_app_module().parse_color(text) == parse_output_type(text).colour


@pytest.mark.parametrize("text", ["rgb(300, 0, 0)", "reddish", "#12345"])
def test_colours_the_library_refuses_are_refused_by_the_space(text: str):
    import gradio as gr

    with pytest.raises(ValueError):
        spec = parse_output_type(text)
        assert spec.kind == "colour"
    with pytest.raises(gr.Error):
        load_app_module().parse_color(text)


def test_oversized_uploads_say_too_many_pixels_and_log_one_line(space_server, tmp_path: Path):
    client = space_server.client()
    log_start = len(space_server.log_path.read_text(errors="replace"))
    over_ours = tmp_path / "over_40mp.png"
    over_ours.write_bytes(_header_only_png(9000, 5000))  # 45 MP: above the Space's 40
    over_pillow = tmp_path / "over_pillow.png"
    over_pillow.write_bytes(_header_only_png(20000, 10000))  # 200 MP: above Pillow's guard too
    words = tmp_path / "words.png"
    words.write_text("not pixels")
    for path in (over_ours, over_pillow):
        with pytest.raises(AppError, match="too many pixels"):
            call(client, path)
    with pytest.raises(AppError, match="not an image"):
        call(client, words)
    log = space_server.log_path.read_text(errors="replace")[log_start:]
    assert "Traceback" not in log
    assert log.count("rejected:") == 3


# ------------------------------------------------------------ item 4
def test_a_panorama_gets_the_base_pass_and_the_visitor_is_told(space_server, tmp_path: Path):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (3000, 100), (200, 120, 40)).save(strip)  # a 3008x96 pass: over the 2560 long side
    _, _, _, status = call(space_server.client(), strip, hr_blend=1.0)
    assert "hr_long_side" in status and "base-size pass" in status


# ------------------------------------------------------------ the image URL field
def _fetch(app, url: str):
    import asyncio

    return asyncio.run(app.fetch_photo(url))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9/photo.png", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/photo.png", "private"),
        ("file:///etc/passwd", "only http and https"),
    ],
)
def test_the_url_field_refuses_addresses_the_server_must_not_reach(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, why: str
):
    import gradio as gr

    app = load_app_module()
    monkeypatch.delenv("INSPYRENET_SPACE_URL_ALLOW_NETWORKS", raising=False)
    monkeypatch.setattr(app, "RESULT_DIR", tmp_path / "results")
    with pytest.raises(gr.Error, match=why) as raised:
        _fetch(app, url)
    assert "upload the file" in raised.value.message
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.*"))


def test_the_url_field_fetches_a_photo_from_an_allowed_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small_photo: Path
):
    import functools
    import http.server
    import threading

    import gradio as gr

    app = load_app_module()
    monkeypatch.setenv("INSPYRENET_SPACE_URL_ALLOW_NETWORKS", "127.0.0.1/32")
    monkeypatch.setattr(app, "RESULT_DIR", tmp_path / "results")
    (tmp_path / "www").mkdir()
    Image.open(small_photo).save(tmp_path / "www" / "cat photo.jpg", quality=95)
    (tmp_path / "www" / "words.png").write_text("not pixels")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        path = Path(_fetch(app, f"{base}/cat%20photo.jpg"))
        with pytest.raises(gr.Error, match="could not be read as an image"):
            _fetch(app, f"{base}/words.png")
    finally:
        server.shutdown()
        server.server_close()
    assert path.name == "cat-photo.jpg"
    assert [p.name for p in (tmp_path / "results").rglob("*.*")] == [path.name], "the refused file is not kept"
    with Image.open(path) as fetched, Image.open(tmp_path / "www" / "cat photo.jpg") as served:
        assert fetched.format == "JPEG"
        np.testing.assert_array_equal(np.asarray(fetched), np.asarray(served))


def test_the_url_field_is_switched_off_by_its_environment_variable(monkeypatch: pytest.MonkeyPatch):
    app = load_app_module()

    def element_ids() -> set[str]:
        return {block.elem_id for block in app.build_demo().blocks.values() if block.elem_id}

    monkeypatch.setenv("INSPYRENET_SPACE_IMAGE_URL", "0")
    assert "image_url" not in element_ids() and "photo" in element_ids()
    monkeypatch.setenv("INSPYRENET_SPACE_IMAGE_URL", "1")
    assert {"image_url", "fetch_url"} <= element_ids()
    monkeypatch.setenv("INSPYRENET_SPACE_IMAGE_URL", "maybe")
    with pytest.raises(ValueError, match="INSPYRENET_SPACE_IMAGE_URL='maybe'.*1 \\(on\\) or 0 \\(off\\)"):
        app.build_demo()
