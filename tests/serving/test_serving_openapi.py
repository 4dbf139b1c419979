"""The service describes itself (issue 33): a valid OpenAPI schema whose every choice the server
accepts, requests built from the schema alone, and /docs and /redoc that work without internet
(a real Chromium with every request off 127.0.0.1 blocked; screenshots in test-artifacts/)."""

from __future__ import annotations

import base64
import io
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

pytest.importorskip("fastapi")
if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("openapi_spec_validator", reason="needs the test extra: pip install -e '.[test,serve]'")
    pytest.importorskip("fastapi_offline", reason="needs the serve extra: pip install -e '.[test,serve]'")
from openapi_spec_validator import validate  # noqa: E402
from serving_helpers import BoxPredictor, photo, png_bytes, running  # noqa: E402

from inspyrenet_lite.predictor import Predictor  # noqa: E402
from inspyrenet_lite.serving import ServeSettings, create_app  # noqa: E402
from inspyrenet_lite.serving.app import RemoveOptions  # noqa: E402

KEY = "open-sesame"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[str]:
    """A server with an API key and two models (the scripted box predictor under two names)."""
    app = create_app({"box": BoxPredictor(), "other": BoxPredictor()}, ServeSettings(api_key=KEY, max_wait_ms=0))
    with running(app) as base:
        yield base


@pytest.fixture(scope="module")
def spec(keyed_server: str) -> dict[str, Any]:
    response = httpx.get(f"{keyed_server}/openapi.json")  # open without the key
    assert response.status_code == 200
    return response.json()


def _multipart(spec: dict[str, Any], path: str) -> dict[str, Any]:
    return spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]


def _enum(schema: dict[str, Any]) -> list[Any]:
    """The enumerated values of a property, directly or in one branch of its anyOf."""
    return schema.get("enum") or [v for branch in schema.get("anyOf", []) for v in branch.get("enum", [])]


def _is_binary(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and schema.get("format") == "binary"


def _decoded(response: httpx.Response, declared: dict[str, Any]) -> Image.Image:
    assert response.status_code == 200, response.text
    media = response.headers["content-type"].split(";")[0]
    assert media in declared, f"{media} is not among the declared results {list(declared)}"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


# ------------------------------------------------------------------ the schema
def test_the_schema_is_valid_and_declares_the_key_the_server_checks(keyed_server: str, spec: dict[str, Any]) -> None:
    validate(spec)
    schemes = spec["components"]["securitySchemes"]
    (name, scheme), = schemes.items()
    assert scheme["type"] == "apiKey" and scheme["in"] == "header"
    for path in ("/v1/remove", "/v1.0/removebg", "/api/removebg"):
        assert spec["paths"][path]["post"]["security"] == [{name: []}]
    assert "security" not in spec["paths"]["/v1/health"]["get"]
    data = png_bytes(photo(40, 30))
    # The header the schema names is the one the server reads; each API refuses in its own shape.
    with_key = httpx.post(f"{keyed_server}/v1/remove", files={"image": ("p.png", data, "image/png")},
                          headers={scheme["name"]: KEY})
    without = httpx.post(f"{keyed_server}/v1/remove", files={"image": ("p.png", data, "image/png")})
    removebg = httpx.post(f"{keyed_server}/v1.0/removebg", files={"image_file": ("p.png", data, "image/png")})
    assert with_key.status_code == 200
    assert without.status_code == 401 and "401" in spec["paths"]["/v1/remove"]["post"]["responses"]
    assert without.json()["error"]["code"] == "unauthorized"
    assert removebg.status_code == 403 and "403" in spec["paths"]["/v1.0/removebg"]["post"]["responses"]
    assert removebg.json()["errors"][0]["code"] == "auth_failed"
    # The error shapes declared are those answered.
    declared = spec["paths"]["/v1/remove"]["post"]["responses"]["401"]["content"]["application/json"]["schema"]
    assert declared["$ref"].endswith("/ServiceError")
    assert set(spec["components"]["schemas"]["ServiceError"]["properties"]) == set(without.json())
    assert set(spec["components"]["schemas"]["RemoveBgError"]["properties"]) == set(removebg.json())


def test_every_option_the_handler_reads_is_declared(spec: dict[str, Any]) -> None:
    properties = _multipart(spec, "/v1/remove")["properties"]
    assert set(properties) - {"image", "background"} == set(RemoveOptions.FIELDS)
    query = {p["name"] for p in spec["paths"]["/v1/remove"]["post"]["parameters"] if p["in"] == "query"}
    assert query == set(RemoveOptions.FIELDS)  # the raw-body way carries them in the query
    raw = spec["paths"]["/v1/remove"]["post"]["requestBody"]["content"]
    assert {"image/*", "application/octet-stream"} <= set(raw)
    removebg = spec["paths"]["/v1.0/removebg"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/x-www-form-urlencoded", "application/json"} <= set(removebg)
    assert spec["paths"]["/api/removebg"]["post"]["requestBody"] == spec["paths"]["/v1.0/removebg"]["post"][
        "requestBody"]


# ------------------------------------------------------------------ requests from the schema alone
def test_a_request_built_from_the_schema_alone_gets_an_image(tiny_folder: Path) -> None:
    app = create_app(Predictor.from_pretrained(str(tiny_folder), device="cpu"), ServeSettings(max_wait_ms=0))
    image = photo(48, 36, 3)
    with running(app) as base:
        spec = httpx.get(f"{base}/openapi.json").json()
        operation = spec["paths"]["/v1/remove"]["post"]
        declared = operation["responses"]["200"]["content"]
        body = _multipart(spec, "/v1/remove")
        files, fields = {}, {}
        for name, schema in body["properties"].items():
            if _is_binary(schema) and name in body["required"]:
                files[name] = ("photo.png", png_bytes(image), "image/png")
            elif name in ("type", "format"):
                fields[name] = _enum(schema)[0]
        assert set(files) == {"image"} and set(fields) == {"type", "format"}
        multipart = httpx.post(f"{base}/v1/remove", files=files, data=fields)
        raw = {media: httpx.post(f"{base}/v1/remove", content=png_bytes(image), params=fields,
                                 headers={"Content-Type": "image/png" if media == "image/*" else media})
               for media in operation["requestBody"]["content"] if media != "multipart/form-data"}
    assert _decoded(multipart, declared).size == image.size
    assert raw and all(_decoded(response, declared).size == image.size for response in raw.values())


# ------------------------------------------------------------------ every choice, and nothing else
def _outside(schema: dict[str, Any]) -> list[str]:
    """Values a property's schema refuses (one per limit it declares)."""
    bad = []
    if _enum(schema):
        bad.append("not-a-choice")
    if "minimum" in schema:
        step = 1 if schema["type"] == "integer" else 0.01
        bad += [str(schema["minimum"] - step), str(schema["maximum"] + step)]
    if schema.get("type") == "boolean":
        bad.append("maybe")
    return bad


def _inside(schema: dict[str, Any]) -> list[str]:
    """Values a property's schema allows: every choice, each end of its range, the booleans."""
    good = [str(value) for value in _enum(schema)]
    if "minimum" in schema:
        good += [str(schema["minimum"]), str(schema["maximum"])]
    if schema.get("type") == "boolean":
        good += ["true", "false"]
    return good


def test_every_remove_choice_is_accepted_and_nothing_outside(keyed_server: str, spec: dict[str, Any]) -> None:
    headers = {"X-Api-Key": KEY}
    image = {"image": ("p.png", png_bytes(photo(32, 24)), "image/png")}
    # Options whose values only make sense with another: a jpg needs a type without alpha, quality a lossy format.
    companions = {"format": {"type": "map"}, "quality": {"format": "webp"}}
    colour = "#12ab34"
    accepted, refused = {}, {}
    for name, schema in _multipart(spec, "/v1/remove")["properties"].items():
        if _is_binary(schema):
            continue
        good = _inside(schema)
        patterns = [branch["pattern"] for branch in schema.get("anyOf", []) if "pattern" in branch]
        if patterns:
            assert re.fullmatch(patterns[0], colour)
            good.append(colour)
        assert good and _outside(schema), f"{name} declares no choice or limit"
        for value in good:
            fields = {**companions.get(name, {}), name: value}
            accepted[(name, value)] = httpx.post(f"{keyed_server}/v1/remove", files=image, data=fields,
                                                 headers=headers).status_code
        for value in _outside(schema):
            response = httpx.post(f"{keyed_server}/v1/remove", files=image,
                                  data={**companions.get(name, {}), name: value}, headers=headers)
            refused[(name, value)] = (response.status_code, response.json()["error"]["field"])
    assert {key: status for key, status in accepted.items() if status != 200} == {}
    assert {key: answer for key, answer in refused.items() if answer != (422, key[0])} == {}
    assert ("model", "other") in accepted and ("format", "webp") in accepted


def test_every_removebg_choice_is_accepted_and_nothing_outside(keyed_server: str, spec: dict[str, Any]) -> None:
    """Through remove.bg's JSON body, as its SDKs send it."""
    headers = {"X-Api-Key": KEY}
    content = spec["paths"]["/v1.0/removebg"]["post"]["requestBody"]["content"]
    properties = content["application/json"]["schema"]["properties"]
    declared = spec["paths"]["/v1.0/removebg"]["post"]["responses"]["200"]["content"]
    source = {"image_file_b64": base64.b64encode(png_bytes(photo(32, 24))).decode()}
    hex_colour = "81d4fa80"
    accepted, refused = {}, {}
    for name, schema in properties.items():
        patterns = [branch["pattern"] for branch in schema.get("anyOf", []) if "pattern" in branch]
        good = _inside(schema) + ([hex_colour] if patterns and re.fullmatch(patterns[0], hex_colour) else [])
        for value in good:
            response = httpx.post(f"{keyed_server}/v1.0/removebg", json={**source, name: value}, headers=headers)
            media = response.headers.get("content-type", "").split(";")[0]
            accepted[(name, value)] = response.status_code if media in declared else media
        for value in _outside(schema):
            response = httpx.post(f"{keyed_server}/v1.0/removebg", json={**source, name: value}, headers=headers)
            refused[(name, value)] = (response.status_code, response.json()["errors"][0]["source"]["parameter"])
    assert {key: status for key, status in accepted.items() if status != 200} == {}
    assert {key: answer for key, answer in refused.items() if answer != (400, key[0])} == {}
    assert {("format", "zip"), ("channels", "alpha"), ("bg_color", hex_colour), ("size", "4k")} <= set(accepted)
    # remove.bg's fields without meaning here are declared and accepted, all at once.
    ignored = {name: "x" for name, schema in properties.items() if "ignored" in schema.get("description", "")}
    assert {"add_shadow", "semitransparency"} <= set(ignored)
    assert httpx.post(f"{keyed_server}/v1.0/removebg", json={**source, **ignored}, headers=headers).status_code == 200


def test_an_empty_file_part_is_a_file_left_out(keyed_server: str) -> None:
    """What a form sends for a file input left empty (browsers, Swagger UI): an empty part."""
    headers = {"X-Api-Key": KEY}
    data = png_bytes(photo(32, 24))
    empty = ("blob", b"", "image/*")
    remove = httpx.post(f"{keyed_server}/v1/remove", headers=headers, data={"type": "white"},
                        files={"image": ("p.png", data, "image/png"), "background": empty})
    removebg = httpx.post(f"{keyed_server}/v1.0/removebg", headers=headers, data={"bg_color": "fff"},
                          files={"image_file": ("p.png", data, "image/png"), "bg_image_file": empty})
    assert remove.status_code == 200, remove.text  # not "type and a background image conflict"
    assert removebg.status_code == 200, removebg.text  # not "bg_color and bg_image_file conflict"
    white = Image.open(io.BytesIO(remove.content)).convert("RGB").getpixel((0, 0))
    assert white == (255, 255, 255)


# ------------------------------------------------------------------ the pages, offline
def _offline_page(browser, blocked: list[str]):
    """A page that reaches 127.0.0.1 only: every other request is aborted and recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 1600})

    def only_loopback(route) -> None:
        url = route.request.url
        if urllib.parse.urlsplit(url).hostname == "127.0.0.1" or url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.route("**/*", only_loopback)
    return page


def _try_it_out(page, path: str, photo_file: Path) -> str:
    """Swagger UI's "Try it out" on ``path``: the photo in the form's first file field, every other
    field as the page fills it; the status it shows."""
    operation = page.locator(f'.opblock:has(.opblock-summary-path[data-path="{path}"])')
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("input[type=file]").first.set_input_files(str(photo_file))
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table .response-col_status").nth(1)
    status.wait_for(timeout=30_000)
    return status.inner_text().strip()


def test_swagger_ui_works_offline(browser, keyed_server: str, tmp_path: Path) -> None:
    """The page loads, shows /v1/remove with its choices, takes the key (Authorize) and runs
    both APIs from their forms as a visitor would."""
    photo_file = tmp_path / "photo.png"
    photo(40, 30).save(photo_file)
    blocked: list[str] = []
    page = _offline_page(browser, blocked)
    try:
        page.goto(f"{keyed_server}/docs")
        page.locator('.opblock-summary-path[data-path="/v1/remove"]').wait_for(state="visible", timeout=30_000)
        page.get_by_role("button", name="Authorize").first.click()
        page.locator(".auth-container input").fill(KEY)
        page.locator(".auth-container button.authorize").click()
        page.locator(".modal-ux button.btn-done").click()
        statuses = {path: _try_it_out(page, path, photo_file) for path in ("/v1/remove", "/v1.0/removebg")}
        remove = page.locator('.opblock:has(.opblock-summary-path[data-path="/v1/remove"])')
        choices = remove.locator('tr[data-param-name="format"] select option').all_inner_texts()
        ARTIFACTS.mkdir(exist_ok=True)
        remove.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "serving-docs.png"))
    finally:
        page.close()
    assert blocked == []
    assert {"png", "webp", "jpg"} <= set(choices)
    assert statuses == {"/v1/remove": "200", "/v1.0/removebg": "200"}


def test_redoc_works_offline(browser, keyed_server: str) -> None:
    blocked: list[str] = []
    page = _offline_page(browser, blocked)
    try:
        page.goto(f"{keyed_server}/redoc")
        page.get_by_text("/v1/remove", exact=True).first.wait_for(state="attached", timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serving-redoc.png"))
    finally:
        page.close()
    assert blocked == []


def test_without_fastapi_offline_the_pages_fall_back_to_the_cdn_and_say_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    import inspyrenet_lite.serving.docs as docs

    monkeypatch.setattr(docs, "assets_folder", lambda: None)
    with caplog.at_level("WARNING", logger=docs.__name__):
        app = create_app(BoxPredictor(), ServeSettings())
    client = TestClient(app)  # no lifespan: the pages need no model
    swagger, redoc = client.get("/docs"), client.get("/redoc")
    assert "fastapi-offline is not installed" in caplog.text
    assert swagger.status_code == 200 and "cdn.jsdelivr.net" in swagger.text
    assert redoc.status_code == 200 and "cdn.jsdelivr.net" in redoc.text
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 404
