"""The Space mounts the service's routes (issue 19): a deployed Space is also a REST endpoint."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("fastapi")

from serving_helpers import BoxPredictor, photo, png_bytes, running  # noqa: E402

APP = Path(__file__).resolve().parents[2] / "space" / "app.py"


def load_space():
    spec = importlib.util.spec_from_file_location("inspyrenet_space_app_rest", APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_space_serves_v1_remove_and_its_page(monkeypatch: pytest.MonkeyPatch) -> None:
    space = load_space()
    model = BoxPredictor()
    monkeypatch.setattr(space, "get_remover", lambda name: model)  # the Space's model, shared with its page
    with running(space.build_app()) as base:
        response = httpx.post(f"{base}/v1/remove", content=png_bytes(photo(80, 60)), timeout=30)
        removebg = httpx.post(f"{base}/v1.0/removebg", files={"image_file": ("a.png", png_bytes(photo(80, 60)))})
        page = httpx.get(f"{base}/", timeout=30)
    assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).size == (80, 60)
    assert removebg.status_code == 200 and removebg.headers["x-width"] == "80"
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert model.batches  # the request went through the Space's model


def test_the_space_applies_the_api_key_of_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPYRENET_LITE_API_KEY", "s3cret")
    space = load_space()
    monkeypatch.setattr(space, "get_remover", lambda name: BoxPredictor())
    data = png_bytes(photo(40, 30))
    with running(space.build_app()) as base:
        missing = httpx.post(f"{base}/v1/remove", content=data, timeout=30)
        wrong = httpx.post(f"{base}/v1/remove", content=data, headers={"X-Api-Key": "nope"}, timeout=30)
        right = httpx.post(f"{base}/v1/remove", content=data, headers={"X-Api-Key": "s3cret"}, timeout=30)
        removebg = httpx.post(f"{base}/v1.0/removebg", files={"image_file": ("a.png", data)}, timeout=30)
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert removebg.status_code == 403
