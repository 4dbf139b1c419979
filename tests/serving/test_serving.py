"""The HTTP service (issue 19): /v1/remove, batching, backpressure, limits, key, probes, metrics."""

from __future__ import annotations

import asyncio
import io
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from serving_helpers import BoxPredictor, photo, png_bytes, running  # noqa: E402

from inspyrenet_lite import Remover  # noqa: E402
from inspyrenet_lite.predictor import Predictor  # noqa: E402
from inspyrenet_lite.serving import ServeSettings, create_app  # noqa: E402



def pixels(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body))).astype(np.int16)


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


# ------------------------------------------------------------------ results
def test_remove_multipart_and_raw_body_give_remover_pixels(tiny_folder: Path, tiny_remover: Remover) -> None:
    image = photo(90, 70, 1)
    data = png_bytes(image)
    app = create_app(Predictor.from_pretrained(str(tiny_folder), device="cpu"), ServeSettings(max_wait_ms=0))
    with running(app) as base:
        for kind in ("rgba", "map", "#ff8000", "blur", "overlay"):
            expected = np.asarray(tiny_remover.process(image, type=kind)).astype(np.int16)
            multipart = httpx.post(f"{base}/v1/remove", files={"image": ("a.png", data, "image/png")},
                                   data={"type": kind})
            raw = httpx.post(f"{base}/v1/remove", params={"type": kind}, content=data,
                             headers={"Content-Type": "image/png"})
            for response in (multipart, raw):
                assert response.status_code == 200, response.text
                assert response.headers["content-type"] == "image/png"
                assert (response.headers["x-width"], response.headers["x-height"]) == ("90", "70")
                assert float(response.headers["x-time-ms"]) > 0
                assert np.abs(pixels(response.content) - expected).max() <= 1, kind
        # `curl --data-binary @photo.png` without -H sends the image labelled as a urlencoded form.
        curl_default = httpx.post(f"{base}/v1/remove", content=data,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert curl_default.status_code == 200 and pixels(curl_default.content).shape == (70, 90, 4)
        threshold = httpx.post(f"{base}/v1/remove", params={"type": "map", "threshold": "0.5", "reverse": "true"},
                               content=data)
        expected = np.asarray(tiny_remover.process(image, type="map", threshold=0.5, reverse=True))
        assert np.abs(pixels(threshold.content) - expected.astype(np.int16)).max() <= 1
        webp = httpx.post(f"{base}/v1/remove", params={"format": "webp"}, content=data)
        assert webp.headers["content-type"] == "image/webp" and Image.open(io.BytesIO(webp.content)).mode == "RGBA"


def test_concurrent_requests_share_batches_and_each_gets_its_own(tiny_folder: Path, tiny_remover: Remover) -> None:
    images = [photo(90, 70, seed) for seed in range(6)]
    app = create_app(Predictor.from_pretrained(str(tiny_folder), device="cpu"),
                     ServeSettings(max_batch_size=6, max_wait_ms=300))

    async def send_all(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            # Different output options share a batch: they only change what is done with the map.
            return await asyncio.gather(*(client.post("/v1/remove", content=png_bytes(img),
                                                      params={"type": "map" if i % 2 else "green"})
                                          for i, img in enumerate(images)))

    with running(app) as base:
        responses = asyncio.run(send_all(base))
        text = httpx.get(f"{base}/metrics").text
    for i, (image, response) in enumerate(zip(images, responses)):
        assert response.status_code == 200
        expected = np.asarray(tiny_remover.process(image, type="map" if i % 2 else "green")).astype(np.int16)
        assert np.abs(pixels(response.content) - expected).max() <= 1
    forwards = metric(text, "inspyrenet_batch_size_count")
    assert forwards < len(images), text  # some requests went through the network together
    assert metric(text, "inspyrenet_batch_size_sum") == len(images)
    assert 'route="/v1/remove",status="200"} 6' in text


# -------------------------------------------------------------------- load
def test_full_queue_answers_503_with_retry_after_at_once() -> None:
    gate = threading.Event()
    predictor = BoxPredictor(gate)
    app = create_app(predictor, ServeSettings(queue_size=2, max_batch_size=1, max_wait_ms=0))
    data = png_bytes(photo(40, 30))
    with running(app) as base:
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(
            httpx.post(f"{base}/v1/remove", content=data, timeout=30).status_code)) for _ in range(2)]
        for thread in threads:
            thread.start()
        assert predictor.entered.wait(10)
        while "inspyrenet_queue_depth{model=\"box\"} 2" not in httpx.get(f"{base}/metrics").text:
            pass
        busy = httpx.post(f"{base}/v1/remove", content=data, timeout=5)
        gate.set()
        for thread in threads:
            thread.join(30)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["code"] == "busy"
    assert busy.elapsed.total_seconds() < 2
    assert results == [200, 200]


def test_deadline_gives_504_and_frees_the_slot() -> None:
    gate = threading.Event()
    app = create_app(BoxPredictor(gate), ServeSettings(queue_size=1, max_batch_size=1, timeout_s=0.5))
    data = png_bytes(photo(40, 30))
    with running(app) as base:
        late = httpx.post(f"{base}/v1/remove", content=data, timeout=10)
        depth = httpx.get(f"{base}/metrics").text
        gate.set()
        after = httpx.post(f"{base}/v1/remove", content=data, timeout=10)
    assert late.status_code == 504
    assert "0.5 s" in late.json()["error"]["message"]
    assert 'inspyrenet_queue_depth{model="box"} 0' in depth
    assert after.status_code == 200


# ------------------------------------------------------------------ limits
def test_bad_requests_get_the_right_4xx_without_internals() -> None:
    settings = ServeSettings(max_upload_bytes=50_000, max_pixels=100 * 100)
    app = create_app(BoxPredictor(), settings)
    small = png_bytes(photo(40, 30))
    with running(app) as base:
        cases = {
            "too many bytes": httpx.post(f"{base}/v1/remove", content=b"\0" * 60_000),
            "too many bytes, multipart": httpx.post(f"{base}/v1/remove", files={"image": ("a", b"\0" * 60_000)}),
            "too many pixels": httpx.post(f"{base}/v1/remove", content=png_bytes(Image.new("RGB", (200, 100)))),
            "not an image": httpx.post(f"{base}/v1/remove", content=b"hello, world",
                                       headers={"Content-Type": "application/octet-stream"}),
            "text media type": httpx.post(f"{base}/v1/remove", content=small, headers={"Content-Type": "text/plain"}),
            "text part": httpx.post(f"{base}/v1/remove", files={"image": ("a.txt", small, "text/plain")}),
            "threshold": httpx.post(f"{base}/v1/remove", params={"threshold": "2"}, content=small),
            "type": httpx.post(f"{base}/v1/remove", params={"type": "/etc/passwd"}, content=small),
            "format": httpx.post(f"{base}/v1/remove", params={"format": "jpg"}, content=small),
            "quality": httpx.post(f"{base}/v1/remove", params={"quality": "high", "format": "webp"}, content=small),
            "model": httpx.post(f"{base}/v1/remove", params={"model": "nope"}, content=small),
            "misspelt option": httpx.post(f"{base}/v1/remove", params={"type": "map", "treshold": "0.5"}, content=small),
            "no image": httpx.post(f"{base}/v1/remove", files={"other": ("a.png", small, "image/png")}),
            "misspelt file field": httpx.post(f"{base}/v1/remove", files={"image": ("a.png", small, "image/png"),
                                                                         "backgroud": ("b.png", small, "image/png")}),
            "type with a background": httpx.post(f"{base}/v1/remove", data={"type": "map"},
                                                 files={"image": ("a.png", small, "image/png"),
                                                        "background": ("b.png", small, "image/png")}),
            "a form, no image": httpx.post(f"{base}/v1/remove", data={"type": "map"}),
        }
    expected = {
        "too many bytes": (413, None), "too many bytes, multipart": (413, None), "too many pixels": (413, "image"),
        "not an image": (415, "image"), "text media type": (415, "image"), "text part": (415, "image"),
        "threshold": (422, "threshold"), "type": (422, "type"), "format": (422, "format"),
        "quality": (422, "quality"), "model": (422, "model"), "misspelt option": (422, "treshold"),
        "no image": (400, "image"), "misspelt file field": (422, "backgroud"), "type with a background": (422, "type"),
        "a form, no image": (400, "image"),
    }
    for name, response in cases.items():
        status, field = expected[name]
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert error["field"] == field, name
        assert "Traceback" not in response.text and "inspyrenet_lite/" not in response.text, name
        assert "\n" not in error["message"], name


def test_api_key_is_enforced_when_set() -> None:
    app = create_app(BoxPredictor(), ServeSettings(api_key="s3cret"))
    data = png_bytes(photo(40, 30))
    with running(app) as base:
        missing = httpx.post(f"{base}/v1/remove", content=data)
        wrong = httpx.post(f"{base}/v1/remove", content=data, headers={"X-Api-Key": "s3cre"})
        right = httpx.post(f"{base}/v1/remove", content=data, headers={"X-Api-Key": "s3cret"})
        removebg = httpx.post(f"{base}/v1.0/removebg", files={"image_file": ("a.png", data)})
        health = httpx.get(f"{base}/v1/health")
        models = httpx.get(f"{base}/v1/models")
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert removebg.status_code == 403 and removebg.json()["errors"][0]["code"] == "auth_failed"
    assert health.status_code == 200 and models.status_code == 401


def test_api_key_guards_every_route_and_alias() -> None:
    from fastapi.routing import APIRoute

    from inspyrenet_lite.serving.app import OPEN_PATHS

    app = create_app(BoxPredictor(), ServeSettings(api_key="s3cret"))
    routes = [(r.path, method) for r in app.routes if isinstance(r, APIRoute) for method in sorted(r.methods)]
    guarded = [(path, method) for path, method in routes if path not in OPEN_PATHS]
    expected = {("/v1/remove", "POST"), ("/v1/models", "GET"), ("/v1.0/removebg", "POST"),
                ("/api/removebg", "POST"), ("/v1.0/account", "GET")}
    assert expected <= set(guarded)
    removebg = {"/v1.0/removebg", "/api/removebg", "/v1.0/account"}
    data = png_bytes(photo(40, 30))
    with running(app) as base:
        for path, method in guarded:
            status = 403 if path in removebg else 401
            for headers in ({}, {"X-Api-Key": "s3cre"}, {"X-Api-Key": "s3cret-and-more"}):
                response = httpx.request(method, f"{base}{path}", content=data, headers=headers)
                assert response.status_code == status, (path, method, headers)
            right = httpx.request(method, f"{base}{path}", headers={"X-Api-Key": "s3cret"},
                                  files={"image_file" if path in removebg else "image": ("a.png", data)})
            assert right.status_code == 200, (path, method, right.text)
        for path in OPEN_PATHS - {"/docs/oauth2-redirect"}:
            assert httpx.get(f"{base}{path}").status_code == 200, path


def stripes(width: int, height: int, period: int = 40) -> Image.Image:
    """Vertical white stripes on black: fine detail that a high-resolution pass sees differently."""
    x = np.arange(width) % period < period // 2
    return Image.fromarray(np.repeat((x * 255).astype(np.uint8)[None, :, None], height, 0).repeat(3, 2))


def test_per_request_hr_blend_reaches_the_network(tiny_folder: Path, tiny_remover: Remover) -> None:
    image = stripes(600, 560)  # above 512 px: the high-resolution pass has a size of its own
    app = create_app(Predictor.from_pretrained(str(tiny_folder), device="cpu"), ServeSettings(max_wait_ms=0))
    data = png_bytes(image)
    with running(app) as base:
        plain = httpx.post(f"{base}/v1/remove", params={"type": "map"}, content=data, timeout=120)
        high = httpx.post(f"{base}/v1/remove", params={"type": "map", "hr_blend": "1"}, content=data, timeout=120)
    assert plain.status_code == high.status_code == 200
    expected = np.asarray(tiny_remover.process(image, type="map", hr_blend=1.0)).astype(np.int16)
    assert np.abs(pixels(high.content) - pixels(plain.content)).max() > 10
    assert np.abs(pixels(high.content) - expected).max() <= 1


def test_per_request_resize_reaches_the_network(tiny_folder: Path, tiny_remover: Remover) -> None:
    image = photo(600, 520, 3)
    app = create_app(Predictor.from_pretrained(str(tiny_folder), device="cpu"), ServeSettings(max_wait_ms=0))
    data = png_bytes(image)
    with running(app) as base:
        plain = httpx.post(f"{base}/v1/remove", params={"type": "map"}, content=data, timeout=120)
        dynamic = httpx.post(f"{base}/v1/remove", params={"type": "map", "resize": "dynamic"}, content=data,
                             timeout=120)
    assert plain.status_code == dynamic.status_code == 200
    with pytest.warns(UserWarning, match="dynamic"):
        dynamic_remover = Remover(model=str(tiny_folder), device="cpu", resize="dynamic")
    expected = np.asarray(dynamic_remover.process(image, type="map")).astype(np.int16)
    assert np.abs(pixels(dynamic.content) - pixels(plain.content)).max() > 10
    assert np.abs(pixels(dynamic.content) - expected).max() <= 1


def test_probes_models_metrics_and_no_cors_by_default() -> None:
    gate = threading.Event()

    def slow_loader() -> BoxPredictor:
        gate.wait(30)
        return BoxPredictor()

    app = create_app(slow_loader, ServeSettings())
    with running(app, wait_ready=False) as base:
        health = httpx.get(f"{base}/v1/health")
        loading = httpx.get(f"{base}/v1/ready")
        early = httpx.post(f"{base}/v1/remove", content=png_bytes(photo(40, 30)))
        gate.set()
        while httpx.get(f"{base}/v1/ready").status_code != 200:
            pass
        models = httpx.get(f"{base}/v1/models").json()
        response = httpx.post(f"{base}/v1/remove", content=png_bytes(photo(40, 30)),
                              headers={"Origin": "https://example.com"})
        text = httpx.get(f"{base}/metrics").text
        docs = httpx.get(f"{base}/openapi.json").json()
    assert health.json() == {"status": "ok"}
    assert loading.status_code == 503 and early.status_code == 503 and "retry-after" in early.headers
    assert models["default"] == "default" and models["models"][0]["ready"] is True
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    assert "# TYPE inspyrenet_request_duration_seconds histogram" in text
    assert 'inspyrenet_requests_total{method="POST",route="/v1/remove",status="503"} 1' in text
    assert "/v1/remove" in docs["paths"] and "/v1.0/removebg" in docs["paths"]
    assert docs["info"]["version"] == "v1"  # the API's version, not the library's


def test_cors_when_configured() -> None:
    app = create_app(BoxPredictor(), ServeSettings(cors_origins=("https://app.example",)))
    with running(app) as base:
        response = httpx.get(f"{base}/v1/health", headers={"Origin": "https://app.example"})
    assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        ServeSettings(queue_size=0)
    with pytest.raises(ValueError, match="api_key"):
        ServeSettings(api_key="")


def test_a_large_upload_gets_413_not_a_reset_connection() -> None:
    app = create_app(BoxPredictor(), ServeSettings(max_upload_bytes=4_000_000))
    big = b"\0" * 5_000_000
    with running(app) as base:
        declared = httpx.post(f"{base}/v1/remove", content=big, timeout=30)
        streamed = httpx.post(f"{base}/v1/remove", content=iter([big[:1_000_000]] * 5), timeout=30)
        multipart = httpx.post(f"{base}/v1/remove", files={"image": ("a.png", big, "image/png")}, timeout=30)
        removebg = httpx.post(f"{base}/v1.0/removebg", files={"image_file": ("a.png", big)}, timeout=30)
        # A client that sends the whole body before it reads (urllib) must get the 413 too.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{base}/v1/remove", data=b"\0" * 12_000_000), timeout=60)
    assert refused.value.code == 413
    for response in (declared, streamed, multipart):
        assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"
    assert removebg.status_code == 413 and removebg.json()["errors"][0]["code"] == "file_too_large"


def test_a_client_that_disconnects_frees_its_slot_and_is_not_computed() -> None:
    gate = threading.Event()
    predictor = BoxPredictor(gate)
    app = create_app(predictor, ServeSettings(queue_size=2, max_batch_size=1, max_wait_ms=0))
    data = png_bytes(photo(40, 30))
    depth = 'inspyrenet_queue_depth{model="box"} '
    with running(app) as base:
        first = threading.Thread(target=lambda: httpx.post(f"{base}/v1/remove", content=data, timeout=30))
        first.start()
        assert predictor.entered.wait(10)  # the first request holds the network
        with pytest.raises(httpx.ReadTimeout):  # the second waits behind it; its client gives up
            httpx.post(f"{base}/v1/remove", content=data, timeout=httpx.Timeout(30, read=0.5))
        deadline = time.monotonic() + 10
        while depth + "1" not in httpx.get(f"{base}/metrics").text:
            assert time.monotonic() < deadline, "the slot of the client that left was not freed"
            time.sleep(0.05)
        gate.set()
        first.join(30)
        after = httpx.get(f"{base}/metrics").text
    assert depth + "0" in after
    assert predictor.batches == [1]  # the request whose client left never reached the network


def test_nothing_below_the_serving_room_imports_it() -> None:
    from source_helpers import MODULES, NAME, imports_of

    offenders = {
        name: sorted(m for m in imports_of(path, top_level_only=False) if m.startswith(f"{NAME}.serving"))
        for name, path in MODULES.items()
        # The rooms over the service: its command line and its Ray Serve deployment.
        if not name.startswith(f"{NAME}.serving")
        and name not in {f"{NAME}.cli.serve", f"{NAME}.cli.serve_ray", f"{NAME}.integrations.ray_serve"}
    }
    assert {name: found for name, found in offenders.items() if found} == {}
    # The room itself builds on the engine and never on the command line.
    for name, path in MODULES.items():
        if name.startswith(f"{NAME}.serving"):
            assert not any(m.startswith(f"{NAME}.cli") for m in imports_of(path, top_level_only=False)), name
