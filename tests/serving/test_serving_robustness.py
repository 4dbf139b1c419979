"""The service under hostile input (issue 30): no 500s, usable connections, client disconnects."""

from __future__ import annotations

import base64
import io
import logging
import re
import socket
import time

import httpx
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from serving_helpers import BoxPredictor, photo, png_bytes, running  # noqa: E402

from inspyrenet_lite.serving import ServeSettings, app as app_module, create_app  # noqa: E402


def png_with_exif(size: int) -> bytes:
    """A PNG whose EXIF is ``size`` bytes of description (JPEG's EXIF segment holds at most 64 KiB)."""
    exif = Image.Exif()
    exif[0x010E] = "x" * size
    buffer = io.BytesIO()
    photo(64, 48).save(buffer, format="PNG", exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_too_long_for_jpeg_still_gives_the_image(box_service: str) -> None:
    data = png_with_exif(100_000)
    native = httpx.post(f"{box_service}/v1/remove", params={"type": "map", "format": "jpg"}, content=data, timeout=30)
    removebg = httpx.post(f"{box_service}/v1.0/removebg", data={"format": "jpg"},
                          files={"image_file": ("a.png", data, "image/png")}, timeout=30)
    for response in (native, removebg):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(response.content)).size == (64, 48)


def test_image_file_b64_as_a_file_part_is_read_as_its_text(box_service: str) -> None:
    encoded = base64.b64encode(png_bytes(photo(64, 48)))
    response = httpx.post(f"{box_service}/v1.0/removebg", files={"image_file_b64": ("b64.txt", encoded, "text/plain")},
                          timeout=30)
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (64, 48)


def test_a_deeply_nested_json_body_is_a_400(box_service: str) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = httpx.post(f"{box_service}/v1.0/removebg", content=body, headers={"Content-Type": "application/json"},
                          timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["source"] == {"parameter": "body"}


def test_an_internal_error_answers_json_500_and_keeps_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fail_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("an unexpected failure")
        return real(*args)

    real = app_module.road.render
    monkeypatch.setattr(app_module.road, "render", fail_once)
    data = png_bytes(photo(40, 30))
    ports = []

    def port_of(response: httpx.Response) -> None:
        ports.append(response.extensions["network_stream"].get_extra_info("client_addr")[1])

    with running(create_app(BoxPredictor(), ServeSettings())) as url, \
            httpx.Client(base_url=url, timeout=30, event_hooks={"response": [port_of]}) as client:
        failed = client.post("/v1/remove", content=data)
        time.sleep(0.2)  # a server that closes the connection after the 500 has done so by now
        after = client.post("/v1/remove", content=data)
        metrics = client.get("/metrics").text
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error" and "KeyError" not in failed.text
    assert after.status_code == 200
    assert len(set(ports[:2])) == 1, "the second request needed a new connection"
    assert 'route="/v1/remove",status="500"} 1' in metrics


def test_a_client_leaving_mid_upload_is_no_500_and_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inspyrenet_lite.serving")
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    try:
        with running(create_app(BoxPredictor(), ServeSettings())) as url:
            port = int(url.rsplit(":", 1)[1])
            for path in ("/v1/remove", "/v1.0/removebg"):
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                 f"boundary=b\r\nContent-Length: 100000\r\n\r\n".encode()
                                 + b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n\r\n"
                                 + b"\0" * 1000)
                    time.sleep(0.2)
            time.sleep(0.3)
            metrics = httpx.get(f"{url}/metrics").text
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    assert 'status="500"' not in metrics
    assert 'route="/v1/remove",status="499"} 1' in metrics
    assert 'route="/v1.0/removebg",status="499"} 1' in metrics
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"
    assert len([record for record in caplog.records if "disconnect" in record.getMessage()]) == 2


def test_a_local_model_is_named_by_a_hash_never_by_its_path(tiny_folder) -> None:
    from inspyrenet_lite.predictor import Predictor

    app = create_app(Predictor.from_pretrained(str(tiny_folder), device="cpu"), ServeSettings(max_wait_ms=0))
    data = png_bytes(photo(40, 30))
    with running(app) as url:
        answers = {
            "remove": httpx.post(f"{url}/v1/remove", content=data, timeout=60),
            "ready": httpx.get(f"{url}/v1/ready"),
            "models": httpx.get(f"{url}/v1/models"),
            "metrics": httpx.get(f"{url}/metrics"),
            "unknown model": httpx.post(f"{url}/v1/remove", params={"model": "nope"}, content=data),
        }
    name = answers["remove"].headers["x-model"]
    assert re.fullmatch(r"local-[0-9a-f]{12}", name)
    assert answers["ready"].json()["models"] == [name] and answers["models"].json()["default"] == name
    assert answers["unknown model"].status_code == 422 and name in answers["unknown model"].text
    for what, response in answers.items():
        text = response.text + " ".join(response.headers.values())
        assert str(tiny_folder) not in text and tiny_folder.name not in text, what


def test_metrics_parse_and_count_refusals_under_their_route() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    odd = 'we"ird\\name\nx'
    app = create_app({odd: BoxPredictor()}, ServeSettings(api_key="s3cret", max_upload_bytes=1000))
    with running(app) as url:
        httpx.post(f"{url}/v1/remove", content=b"x")  # 401
        httpx.post(f"{url}/v1.0/removebg", data={"size": "auto"})  # 403
        httpx.post(f"{url}/v1/remove", content=b"\0" * 5000, headers={"X-Api-Key": "s3cret"})  # 413 by length
        httpx.request("PROPFIND", f"{url}/v1/remove")  # a method outside the counted set (every parser takes it)
        text = httpx.get(f"{url}/metrics").text
    families = {family.name: family for family in parser.text_string_to_metric_families(text)}
    requests = {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
                for s in families["inspyrenet_requests"].samples}
    assert requests[("POST", "/v1/remove", "401")] == 1
    assert requests[("POST", "/v1.0/removebg", "403")] == 1
    assert requests[("POST", "/v1/remove", "413")] == 1
    assert requests[("other", "/v1/remove", "401")] == 1
    assert not [key for key in requests if key[1] == "other"]
    assert {s.labels["model"] for s in families["inspyrenet_queue_depth"].samples} == {odd}
