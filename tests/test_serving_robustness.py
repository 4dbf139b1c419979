"""The service under hostile input (issue 30): no 500s, usable connections, client disconnects."""

from __future__ import annotations

import base64
import io
import logging
import socket
import time

import httpx
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from serving_helpers import BoxPredictor, photo, png_bytes, running  # noqa: E402

from inspyrenet_lite.serving import ServeSettings, app as app_module, create_app  # noqa: E402


@pytest.fixture(scope="module")
def base():
    with running(create_app(BoxPredictor(), ServeSettings())) as url:
        yield url


def png_with_exif(size: int) -> bytes:
    """A PNG whose EXIF is ``size`` bytes of description (JPEG's EXIF segment holds at most 64 KiB)."""
    exif = Image.Exif()
    exif[0x010E] = "x" * size
    buffer = io.BytesIO()
    photo(64, 48).save(buffer, format="PNG", exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_too_long_for_jpeg_still_gives_the_image(base: str) -> None:
    data = png_with_exif(100_000)
    native = httpx.post(f"{base}/v1/remove", params={"type": "map", "format": "jpg"}, content=data, timeout=30)
    removebg = httpx.post(f"{base}/v1.0/removebg", data={"format": "jpg"},
                          files={"image_file": ("a.png", data, "image/png")}, timeout=30)
    for response in (native, removebg):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(response.content)).size == (64, 48)


def test_image_file_b64_as_a_file_part_is_read_as_its_text(base: str) -> None:
    encoded = base64.b64encode(png_bytes(photo(64, 48)))
    response = httpx.post(f"{base}/v1.0/removebg", files={"image_file_b64": ("b64.txt", encoded, "text/plain")},
                          timeout=30)
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (64, 48)


def test_a_deeply_nested_json_body_is_a_400(base: str) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = httpx.post(f"{base}/v1.0/removebg", content=body, headers={"Content-Type": "application/json"},
                          timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["source"] == {"parameter": "body"}
