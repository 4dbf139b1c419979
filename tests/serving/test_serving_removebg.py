"""The remove.bg-compatible routes (issue 19): fields, sizes, zip, headers, error shape, image_url SSRF guard."""

from __future__ import annotations

import base64
import http.server
import io
import socket
import threading
import zipfile

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from serving_helpers import BoxPredictor, photo, png_bytes, running  # noqa: E402

from inspyrenet_lite.serving import ServeSettings, create_app, urlfetch  # noqa: E402


def post(box_service: str, data: dict | None = None, files: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.post(f"{box_service}/v1.0/removebg", data=data, files=files, timeout=30, **kwargs)


def image_of(response: httpx.Response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def test_image_file_gives_a_transparent_png_with_remove_bg_headers(box_service: str) -> None:
    response = post(box_service, files={"image_file": ("a.jpg", png_bytes(photo(200, 100), "JPEG"), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = image_of(response)
    assert image.mode == "RGBA" and image.size == (200, 100)
    headers = response.headers
    assert (headers["x-width"], headers["x-height"], headers["x-type"]) == ("200", "100", "other")
    # The box of BoxPredictor: the middle half of each side.
    assert (headers["x-foreground-left"], headers["x-foreground-top"]) == ("50", "25")
    assert (headers["x-foreground-width"], headers["x-foreground-height"]) == ("100", "50")
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[50, 100] == 255 and alpha[5, 5] == 0


def test_image_file_b64_as_form_and_as_json(box_service: str) -> None:
    encoded = base64.b64encode(png_bytes(photo(64, 48))).decode()
    form = post(box_service, data={"image_file_b64": encoded})
    as_json = httpx.post(f"{box_service}/api/removebg", json={"image_file_b64": encoded, "channels": "alpha"})
    assert form.status_code == 200 and image_of(form).size == (64, 48)
    assert as_json.status_code == 200 and image_of(as_json).mode == "L"


@pytest.mark.parametrize(("size", "most"), [("preview", 250_000), ("small", 250_000), ("regular", 250_000),
                                            ("medium", 1_500_000), ("full", 2_000_000), ("auto", 2_000_000)])
def test_size_caps_the_megapixels_as_remove_bg_defines_them(box_service: str, size: str, most: int) -> None:
    data = png_bytes(photo(2000, 1000))
    response = post(box_service, data={"size": size}, files={"image_file": ("a.png", data, "image/png")})
    width, height = image_of(response).size
    assert width * height <= most and width * height > 0.97 * min(most, 2_000_000)
    assert abs(width / height - 2.0) < 0.01  # the aspect ratio is kept
    assert (response.headers["x-width"], response.headers["x-height"]) == (str(width), str(height))


def test_format_zip_holds_color_jpg_and_alpha_png(box_service: str) -> None:
    response = post(box_service, data={"format": "zip"}, files={"image_file": ("a.png", png_bytes(photo(80, 60)))})
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        colour = Image.open(io.BytesIO(archive.read("color.jpg")))
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
    assert (colour.format, colour.mode, colour.size) == ("JPEG", "RGB", (80, 60))
    assert (alpha.format, alpha.mode, alpha.size) == ("PNG", "L", (80, 60))
    assert np.asarray(alpha)[30, 40] == 255 and np.asarray(alpha)[0, 0] == 0


def test_channels_alpha_bg_color_and_jpg(box_service: str) -> None:
    data = png_bytes(photo(80, 60))
    alpha = post(box_service, data={"channels": "alpha"}, files={"image_file": ("a.png", data)})
    coloured = post(box_service, data={"bg_color": "ff0000"}, files={"image_file": ("a.png", data)})
    jpg = post(box_service, data={"format": "jpg"}, files={"image_file": ("a.png", data)})
    assert image_of(alpha).mode == "L" and alpha.headers["content-type"] == "image/png"
    # format=auto: no transparency left, so JPEG, as remove.bg answers.
    assert coloured.headers["content-type"] == "image/jpeg"
    corner = np.asarray(image_of(coloured))[0, 0].astype(int)
    assert abs(corner - np.array([255, 0, 0])).max() <= 8
    assert jpg.headers["content-type"] == "image/jpeg" and image_of(jpg).mode == "RGB"


def test_channels_alpha_gives_the_mask_even_with_a_background(box_service: str) -> None:
    data, blue = png_bytes(photo(80, 60)), png_bytes(Image.new("RGB", (30, 30), (0, 0, 255)))
    with_colour = post(box_service, data={"channels": "alpha", "bg_color": "ff0000"}, files={"image_file": ("a.png", data)})
    with_image = post(box_service, data={"channels": "alpha"}, files={"image_file": ("a.png", data), "bg_image_file": ("b.png", blue)})
    for response in (with_colour, with_image):
        assert response.headers["content-type"] == "image/png"
        mask = image_of(response)
        assert mask.mode == "L" and np.asarray(mask)[30, 40] == 255 and np.asarray(mask)[0, 0] == 0


def test_accept_json_gives_the_result_base64_in_remove_bg_json(box_service: str) -> None:
    """remove.bg's clients (e.g. its npm wrapper) send Accept: application/json and read data.result_b64."""
    response = post(box_service, data={"size": "auto"}, files={"image_file": ("a.png", png_bytes(photo(200, 100)))},
                    headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    data = response.json()["data"]
    image = Image.open(io.BytesIO(base64.b64decode(data["result_b64"])))
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (200, 100))
    assert (data["foreground_left"], data["foreground_top"], data["foreground_width"], data["foreground_height"]) \
        == (50, 25, 100, 50)
    assert response.headers["x-width"] == "200"
    plain = post(box_service, files={"image_file": ("a.png", png_bytes(photo(40, 30)))}, headers={"Accept": "image/*, application/json"})
    assert plain.headers["content-type"] == "image/png"  # a client that takes an image gets the bytes


def test_bg_image_file_replaces_the_background(box_service: str) -> None:
    blue = png_bytes(Image.new("RGB", (30, 30), (0, 0, 255)))
    response = post(box_service, files={"image_file": ("a.png", png_bytes(photo(80, 60))), "bg_image_file": ("b.png", blue)})
    assert response.headers["content-type"] == "image/jpeg"
    assert abs(np.asarray(image_of(response))[0, 0].astype(int) - np.array([0, 0, 255])).max() <= 8


def test_crop_and_crop_margin(box_service: str) -> None:
    data = png_bytes(photo(200, 100))
    cropped = post(box_service, data={"crop": "true"}, files={"image_file": ("a.png", data)})
    margin = post(box_service, data={"crop": "true", "crop_margin": "10px"}, files={"image_file": ("a.png", data)})
    percent = post(box_service, data={"crop": "true", "crop_margin": "50%"}, files={"image_file": ("a.png", data)})
    assert image_of(cropped).size == (100, 50)
    assert cropped.headers["x-foreground-left"] == "0" and cropped.headers["x-foreground-width"] == "100"
    assert image_of(margin).size == (120, 70) and margin.headers["x-foreground-top"] == "10"
    # 50% of the subject on each side reaches past the photo: padded with transparency.
    padded = image_of(percent)
    assert padded.size == (200, 100) and np.asarray(padded)[0, 0, 3] == 0


def test_options_without_meaning_here_are_accepted(box_service: str) -> None:
    response = post(box_service, data={"type": "car", "type_level": "2", "scale": "50%", "position": "center",
                                "semitransparency": "true", "add_shadow": "true"},
                    files={"image_file": ("a.png", png_bytes(photo(40, 30)))})
    assert response.status_code == 200


@pytest.mark.parametrize(("data", "files", "status", "code"), [
    ({"size": "huge"}, True, 400, "invalid_parameter"),
    ({"format": "gif"}, True, 400, "invalid_parameter"),
    ({"channels": "rgb"}, True, 400, "invalid_parameter"),
    ({"bg_color": "not-a-colour"}, True, 400, "invalid_parameter"),
    ({"crop_margin": "900px"}, True, 400, "invalid_parameter"),
    ({}, False, 400, "missing_source"),
    ({"image_file_b64": "***"}, False, 400, "invalid_parameter"),
    ({"image_file_b64": base64.b64encode(b"not an image").decode()}, False, 400, "invalid_file_type"),
])
def test_errors_have_remove_bg_shape(box_service: str, data: dict, files: bool, status: int, code: str) -> None:
    upload = {"image_file": ("a.png", png_bytes(photo(40, 30)))} if files else None
    response = post(box_service, data=data, files=upload)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"errors"} and body["errors"][0]["code"] == code
    assert body["errors"][0]["title"]


def test_account_answers_in_remove_bg_shape(box_service: str) -> None:
    attributes = httpx.get(f"{box_service}/v1.0/account").json()["data"]["attributes"]
    assert attributes["credits"]["total"] > 0 and "free_calls" in attributes["api"]


# ----------------------------------------------------------------- image_url
@pytest.fixture
def no_packets_out(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every socket connection is checked: anything but 127.0.0.1 fails the test; attempts are recorded."""
    attempts: list = []
    original = socket.socket.connect

    def connect(self, address):
        attempts.append(address)
        assert address[0] == "127.0.0.1", f"a connection to {address} was attempted"
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    names = {"photos.test": "127.0.0.1", "internal.test": "10.1.2.3", "metadata.test": "169.254.169.254",
             "mixed.test": "93.184.216.34", "v6.test": "::1"}

    def resolve(host: str, port: int) -> list[str]:
        assert host in names, f"unexpected DNS lookup of {host}"
        if host == "mixed.test":
            return ["93.184.216.34", "10.0.0.1"]  # one private answer is enough to refuse
        return [names[host]]

    monkeypatch.setattr(urlfetch, "resolve", resolve)
    return attempts


@pytest.fixture
def image_host():
    """A plain HTTP server on 127.0.0.1: /photo.png, /to-metadata (302 to metadata.test), /to-photo."""
    photo_bytes = png_bytes(photo(64, 48))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            targets = {"/to-metadata": "http://metadata.test/latest/meta-data/",
                       "/to-private": "http://10.0.0.7/x.png", "/to-photo": "/photo.png"}
            if self.path in targets:
                self.send_response(302)
                self.send_header("Location", targets[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(photo_bytes)))
            self.end_headers()
            self.wfile.write(photo_bytes)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_image_url_is_refused_by_default(box_service: str, no_packets_out: list) -> None:
    response = post(box_service, data={"image_url": "http://photos.test/photo.png"})
    assert response.status_code == 400 and "disabled" in response.json()["errors"][0]["title"]


def test_image_url_when_enabled_refuses_inner_addresses_before_connecting(no_packets_out: list, image_host: int) -> None:
    settings = ServeSettings(allow_image_url=True, url_allow_networks=("127.0.0.1/32",))
    with running(create_app(BoxPredictor(), settings)) as url:
        server_port = int(url.rsplit(":", 1)[1])
        fetched = post(url, data={"image_url": f"http://photos.test:{image_host}/photo.png"})
        redirected_ok = post(url, data={"image_url": f"http://photos.test:{image_host}/to-photo"})
        refused = {
            target: post(url, data={"image_url": target})
            for target in ("http://internal.test/a.png", "http://metadata.test/latest/meta-data/",
                           "http://169.254.169.254/latest/", "http://mixed.test/a.png", "http://v6.test/a.png",
                           "http://[::ffff:10.1.2.3]/a.png", "file:///etc/passwd",
                           f"http://photos.test:{image_host}/to-metadata",
                           f"http://photos.test:{image_host}/to-private")
        }
    assert fetched.status_code == 200 and image_of(fetched).size == (64, 48)
    assert redirected_ok.status_code == 200
    for target, response in refused.items():
        assert response.status_code == 400, target
        assert response.json()["errors"][0]["code"] == "invalid_image_url", target
    # Only the loopback image host (and the test's own requests to the server) were ever contacted.
    assert {address[1] for address in no_packets_out} <= {image_host, server_port}


def test_loopback_is_refused_without_an_allow_list(no_packets_out: list, image_host: int) -> None:
    with running(create_app(BoxPredictor(), ServeSettings(allow_image_url=True))) as url:
        response = post(url, data={"image_url": f"http://photos.test:{image_host}/photo.png"})
    assert response.status_code == 400 and "loopback" in response.json()["errors"][0]["title"]
    assert all(address[1] != image_host for address in no_packets_out)


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("100.100.100.200", True), ("0.0.0.0", True), ("224.0.0.1", True),
    ("::1", True), ("fe80::1", True), ("fd00:ec2::254", True), ("::ffff:127.0.0.1", True), ("::", True),
    # 6to4, Teredo (client = last 32 bits XOR 0xffffffff) and NAT64 carrying an inner IPv4 address.
    ("2002:a9fe:a9fe::1", True), ("2002:7f00:1::1", True), ("2002:a00:1::", True),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", True), ("64:ff9b::a9fe:a9fe", True), ("64:ff9b:1::7f00:1", True),
    ("93.184.216.34", False), ("2606:2800:220:1:248:1893:25c8:1946", False), ("2002:5db8:d822::1", False),
])
def test_address_policy(address: str, refused: bool) -> None:
    assert (urlfetch.refusal(address) is not None) is refused
    assert urlfetch.refusal(address, ("0.0.0.0/0", "::/0")) is None  # an explicit allow list wins


def test_conflicting_backgrounds_are_a_400_and_unknown_fields_are_ignored(box_service: str) -> None:
    image = ("a.png", png_bytes(photo(40, 30)))
    both = post(box_service, data={"bg_color": "ff0000"}, files={"image_file": image, "bg_image_file": image})
    unknown = post(box_service, data={"sdk_version": "2"}, files={"image_file": image, "extra_part": image})
    assert both.status_code == 400 and both.json()["errors"][0]["source"] == {"parameter": "bg_color"}
    assert unknown.status_code == 200 and image_of(unknown).size == (40, 30)


def test_bg_color_takes_remove_bg_short_and_translucent_hex(box_service: str) -> None:
    data = png_bytes(photo(80, 60))
    short = post(box_service, data={"bg_color": "fff"}, files={"image_file": ("a.png", data)})
    translucent = post(box_service, data={"bg_color": "81d4fa80"}, files={"image_file": ("a.png", data)})
    assert short.status_code == 200 and short.headers["content-type"] == "image/jpeg"
    assert abs(np.asarray(image_of(short))[0, 0].astype(int) - 255).max() <= 8
    # A translucent background keeps transparency: PNG, the colour at alpha 0x80 outside, opaque inside.
    assert translucent.status_code == 200 and translucent.headers["content-type"] == "image/png"
    pixels = np.asarray(image_of(translucent))
    assert tuple(pixels[0, 0]) == (0x81, 0xD4, 0xFA, 0x80)
    assert pixels[30, 40, 3] == 255


def test_image_file_b64_line_wrapped_url_safe_or_unpadded(box_service: str) -> None:
    data = png_bytes(photo(61, 47))
    standard = base64.b64encode(data).decode()
    assert "=" in standard and ("+" in standard or "/" in standard)  # the variants below differ from it
    variants = {
        "wrapped": "\n".join(standard[i : i + 76] for i in range(0, len(standard), 76)),
        "url-safe": base64.urlsafe_b64encode(data).decode(),
        "unpadded": standard.rstrip("="),
    }
    for name, text in variants.items():
        response = post(box_service, data={"image_file_b64": text})
        assert response.status_code == 200, (name, response.text)
        assert image_of(response).size == (61, 47), name


def test_starlettes_own_errors_have_remove_bg_shape_on_its_routes(box_service: str) -> None:
    image = ("a.png", png_bytes(photo(40, 30)))
    answers = {
        "malformed multipart": (httpx.post(f"{box_service}/v1.0/removebg", content=b"--x\r\n",
                                           headers={"Content-Type": "multipart/form-data"}), 400),
        "a part without a name": (httpx.post(
            f"{box_service}/api/removebg", content=b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=x"}), 400),
        "too many fields": (post(box_service, data={f"f{i}": "1" for i in range(1100)}, files={"image_file": image}), 400),
        "no such route": (httpx.get(f"{box_service}/v1.0/nothing-here"), 404),
        "wrong method": (httpx.get(f"{box_service}/v1.0/removebg"), 405),
        "wrong method, alias": (httpx.delete(f"{box_service}/api/removebg"), 405),
    }
    for name, (response, status) in answers.items():
        assert response.status_code == status, (name, response.text)
        body = response.json()
        assert set(body) == {"errors"} and body["errors"][0]["title"], name
    assert "fields" in answers["too many fields"][0].json()["errors"][0]["title"]
    assert "POST" in answers["wrong method"][0].headers["allow"]
    native = httpx.get(f"{box_service}/v1/nothing-here")
    assert native.status_code == 404 and native.json()["error"]["code"] == "not_found"
    head = httpx.head(f"{box_service}/v1/health")
    assert head.status_code == 200 and head.content == b""


def test_rate_limit_headers_follow_the_admission_state() -> None:
    gate = threading.Event()
    predictor = BoxPredictor(gate)
    app = create_app(predictor, ServeSettings(queue_size=1, max_batch_size=1, max_wait_ms=0, retry_after_s=2))
    image = {"image_file": ("a.png", png_bytes(photo(40, 30)))}
    with running(app) as url:
        idle = httpx.get(f"{url}/v1.0/account")
        first = threading.Thread(target=lambda: post(url, files=image))
        first.start()
        assert predictor.entered.wait(10)  # the one slot is taken
        busy = post(url, files=image)
        gate.set()
        first.join(30)
        native = httpx.get(f"{url}/v1/health")
    rate = [(r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"], r.headers["x-ratelimit-reset"])
            for r in (idle, busy)]
    assert rate[0] == ("1", "1", "0")
    assert busy.status_code == 429 and rate[1][:2] == ("1", "0") and int(rate[1][2]) >= 2
    assert "x-ratelimit-limit" not in native.headers


def test_asymmetric_crop_margin_is_top_right_bottom_left(box_service: str) -> None:
    data = png_bytes(photo(200, 100))  # the subject: x 50..150, y 25..75
    four = post(box_service, data={"crop": "true", "crop_margin": "10px 20px 30px 40px"},
                files={"image_file": ("a.png", data)})
    two = post(box_service, data={"crop": "true", "crop_margin": "10px,20px"}, files={"image_file": ("a.png", data)})
    assert image_of(four).size == (40 + 100 + 20, 10 + 50 + 30)
    assert (four.headers["x-foreground-left"], four.headers["x-foreground-top"]) == ("40", "10")
    alpha = np.asarray(image_of(four))[:, :, 3]
    assert alpha[10:60, 40:140].min() == 255
    assert alpha[:, :40].max() == 0 and alpha[:, 140:].max() == 0 and alpha[:10].max() == 0 and alpha[60:].max() == 0
    assert image_of(two).size == (20 + 100 + 20, 10 + 50 + 10)
    assert (two.headers["x-foreground-left"], two.headers["x-foreground-top"]) == ("20", "10")
