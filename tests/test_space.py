"""The Gradio Space (space/app.py): its API as a client sees it, and its packaging.

The app runs as `python space/app.py` in a subprocess on a free loopback
port, with the full-size SwinB checkpoint of random weights from conftest.py
(`random_checkpoint`) passed through INSPYRENET_LITE_CKPT: nothing is
downloaded. The same server is shared with
tests/test_space_browser.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("gradio", reason="needs the space extra: pip install -e '.[test,space]'")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "space"
APP = SPACE / "app.py"
PHOTOS = REPO / "tests" / "data" / "photos"
API = "/remove_background"
START_TIMEOUT_S = 180
CALL_TIMEOUT_S = 300


# --------------------------------------------------------------- the server
@dataclass
class SpaceServer:
    """A running `python space/app.py` and what a test needs to talk to it."""

    url: str
    process: subprocess.Popen
    log_path: Path
    work_dir: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def client(self) -> Client:
        downloads = self.work_dir / "downloads"
        downloads.mkdir(exist_ok=True)
        return Client(self.url, verbose=False, download_files=str(downloads))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _offline_env(work_dir: Path, ckpt: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        INSPYRENET_LITE_CKPT=str(ckpt),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_SHARE="False",
        GRADIO_SSR_MODE="False",
        GRADIO_TEMP_DIR=str(work_dir / "gradio"),
        # The browser test's image server listens on loopback, which the URL field refuses otherwise.
        INSPYRENET_SPACE_URL_ALLOW_NETWORKS="127.0.0.1/32",
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TMPDIR=str(work_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_until_serving(server: SpaceServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"space/app.py exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(server.url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"space/app.py did not serve {server.url} in {timeout_s} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


# One server per session, even when test_space_browser.py imports this fixture
# (pytest then holds two copies of it): the function runs with this module's
# globals, so both copies see the same slot.
_shared_server: dict[str, SpaceServer] = {}


@pytest.fixture(scope="session")
def space_server(tmp_path_factory: pytest.TempPathFactory, random_checkpoint: Path):
    """`python space/app.py` serving on a free loopback port; killed at the end."""
    if "server" in _shared_server:
        yield _shared_server["server"]
        return
    work_dir = tmp_path_factory.mktemp("space-server")
    port = _free_port()
    log_path = work_dir / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(APP)],
            cwd=work_dir,
            env=_offline_env(work_dir, random_checkpoint, port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = SpaceServer(f"http://127.0.0.1:{port}/", process, log_path, work_dir)
    try:
        _wait_until_serving(server, START_TIMEOUT_S)
        _shared_server["server"] = server
        yield server
    finally:
        _shared_server.pop("server", None)
        _stop(process)


@pytest.fixture(scope="session")
def small_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small photo whose sides are not multiples of 32."""
    path = tmp_path_factory.mktemp("space-inputs") / "cat_small.png"
    with Image.open(PHOTOS / "cat.png") as cat:
        cat.convert("RGB").resize((227, 151), Image.Resampling.BILINEAR).save(path)
    return path


@pytest.fixture(scope="module")
def client(space_server: SpaceServer) -> Client:
    return space_server.client()


def _call(client: Client, photo: Path, **options) -> tuple[str, str, tuple[str, str], str]:
    """(result PNG, mask PNG, (before, after) previews, status line) of one API call."""
    job = client.submit(handle_file(str(photo)), api_name=API, **options)
    return job.result(timeout=CALL_TIMEOUT_S)


def _assert_background_shows_where_masked_out(out: np.ndarray, mask: np.ndarray, colour) -> None:
    """Each pixel is foreground * a + colour * (1 - a) with a = mask / 255.

    Whatever the foreground colours, a channel where ``colour`` is 255 is at
    least 255 * (1 - a) and one where it is 0 at most 255 * a (plus rounding;
    the grey mask is truncated, so a may be up to 1/255 above mask / 255).
    """
    m = mask.astype(np.int32)
    for channel, value in enumerate(colour):
        got = out[..., channel].astype(np.int32)
        if value == 255:
            assert (got >= 255 - m - 2).all(), f"channel {channel} lacks the background colour"
        else:
            assert value == 0
            assert (got <= m + 2).all(), f"channel {channel} lacks the background colour"


# ---------------------------------------------------------------- API calls
@pytest.fixture(scope="module")
def one_call(client: Client, small_photo: Path) -> tuple[str, str, tuple[str, str], str]:
    """One call with every option at its default."""
    return _call(client, small_photo)


@pytest.fixture(scope="module")
def four_calls_at_once(client: Client, small_photo: Path) -> list[Image.Image]:
    """Default, hard threshold, mask and solid red, submitted together."""
    requests = [
        {},
        {"threshold": 0.5},
        {"output": "mask"},
        {"output": "color", "color": "#ff0000"},
    ]
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = list(pool.map(lambda options: _call(client, small_photo, **options), requests))
    return [Image.open(result[0]) for result in results]


def test_one_call_returns_an_rgba_png_and_its_mask_at_the_input_size(one_call, small_photo: Path):
    result_path, mask_path, (before, after), status = one_call
    result, mask = Image.open(result_path), Image.open(mask_path)
    assert result.format == mask.format == "PNG"
    assert result.mode == "RGBA"
    assert mask.mode == "L"
    assert result.size == mask.size == Image.open(small_photo).size
    assert Image.open(before).size == Image.open(after).size == result.size
    alpha = np.asarray(result.getchannel("A"))
    assert alpha.min() < 64 and alpha.max() > 192, "some pixels should be kept and others dropped"
    assert len(np.unique(alpha)) > 16, "threshold 0 should give a soft mask"
    np.testing.assert_array_equal(np.asarray(mask), alpha)  # the mask download is the cut-out's alpha
    assert status.startswith("227×151 px, fast model, threshold 0.00, HR blending 0.00")


def test_four_calls_at_once_all_succeed_without_mixing_results(
    one_call, four_calls_at_once: list[Image.Image], small_photo: Path
):
    size = Image.open(small_photo).size
    assert [image.size for image in four_calls_at_once] == [size] * 4
    same, hard, mask, red = four_calls_at_once
    reference = np.asarray(Image.open(one_call[0])).astype(int)
    assert np.abs(np.asarray(same).astype(int) - reference).max() <= 1
    assert set(np.unique(np.asarray(hard.getchannel("A")))) == {0, 255}
    assert mask.mode == "L"
    # The transparent cut-out's alpha is the mask.
    np.testing.assert_array_equal(np.asarray(same.getchannel("A")), np.asarray(mask))
    assert red.mode == "RGB"
    _assert_background_shows_where_masked_out(np.asarray(red), np.asarray(mask), (255, 0, 0))


def test_a_non_image_upload_is_refused_and_the_server_keeps_serving(
    client: Client, small_photo: Path, four_calls_at_once: list[Image.Image], tmp_path: Path
):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("these are words, not pixels\n")
    with pytest.raises(AppError, match="not an image"):
        _call(client, not_an_image)
    # The next call is served; it also checks a custom background image.
    backdrop = tmp_path / "blue.png"
    Image.new("RGB", (64, 48), (0, 0, 255)).save(backdrop)
    result_path, _, _, _ = _call(client, small_photo, output="background", background=handle_file(str(backdrop)))
    result = np.asarray(Image.open(result_path))
    mask = np.asarray(four_calls_at_once[2])
    assert result.shape == mask.shape + (3,)
    _assert_background_shows_where_masked_out(result, mask, (0, 0, 255))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "huge"}, "huge"),
        ({"threshold": 1.5}, r"1\.5"),
        ({"output": "background"}, "background image"),
    ],
)
def test_bad_options_get_an_error_that_names_the_bad_value(client: Client, small_photo: Path, options, message):
    with pytest.raises(AppError, match=message):
        _call(client, small_photo, **options)


def test_uploads_over_the_size_limit_are_refused_by_the_server(space_server: SpaceServer):
    app = _load_app_module()
    limit_mb = int(re.fullmatch(r"(\d+)\s*mb", app.MAX_FILE_SIZE.lower()).group(1))
    boundary = "space-test-boundary"
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="files"; filename="huge.png"\r\n',
            b"Content-Type: image/png\r\n\r\n",
            bytes((limit_mb + 1) * 1024 * 1024),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    request = urllib.request.Request(
        space_server.url + "gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413


# ------------------------------------------------------- the app in-process
_app_module: list[ModuleType] = []


def _load_app_module() -> ModuleType:
    """Import space/app.py (builds the page, loads no model)."""
    if not _app_module:
        spec = importlib.util.spec_from_file_location("inspyrenet_space_app", APP)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # a module Gradio can find by name
        spec.loader.exec_module(module)
        _app_module.append(module)
    return _app_module[0]


def test_models_come_from_the_librarys_shared_cache(monkeypatch: pytest.MonkeyPatch):
    """The Space and ``inspyrenet_lite.remove()`` share one Remover per model, built on first use."""
    import inspyrenet_lite.remover
    from inspyrenet_lite.cached import cached_remover, clear_cache

    app = _load_app_module()
    built: list[str] = []

    class CountingRemover:
        def __init__(self, model: str, **settings) -> None:
            built.append(model)

    monkeypatch.setattr(inspyrenet_lite.remover, "Remover", CountingRemover)
    clear_cache()
    try:
        first = app.get_remover("fast")
        assert app.get_remover("fast") is first
        assert cached_remover("fast") is first, "remove() would load a second copy"
        assert built == ["fast"]
        app.get_remover("base")
        assert built == ["fast", "base"]
    finally:
        clear_cache()


def test_missing_weights_are_reported_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small_photo: Path
):
    import gradio as gr
    import huggingface_hub.constants

    from inspyrenet_lite.cached import clear_cache

    app = _load_app_module()
    monkeypatch.delenv("INSPYRENET_LITE_CKPT", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("INSPYRENET_LITE_CACHE", str(tmp_path / "weights"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    clear_cache()
    started = time.monotonic()
    for _ in range(2):  # a failed load is not remembered as a model: the second try fails the same way
        with pytest.raises(gr.Error) as raised:
            app.remove_background(str(small_photo), mode="fast", progress=lambda *a, **k: None)
        assert "could not be fetched" in raised.value.message
        assert "fast" in raised.value.message
    assert time.monotonic() - started < 60, "an offline failure must not wait on the network"


def test_the_model_menu_offers_every_registry_model_once_with_fast_and_base_first():
    from inspyrenet_lite.registry import MODELS

    menu = _load_app_module().model_menu
    common = [name for _, name in menu.COMMON_MODELS]
    more = [name for _, name in menu.more_choices()]
    assert common == ["fast", "base"]
    assert sorted(common + more) == sorted(MODELS)


def test_the_preview_shows_a_checkerboard_where_the_result_is_transparent():
    app = _load_app_module()
    square = app.CHECKER_SQUARE
    image = np.zeros((3 * square, 3 * square, 4), np.uint8)  # fully transparent...
    image[:square, :square] = (200, 0, 0, 255)  # ...but for an opaque red top-left square
    shown = np.asarray(app.on_checkerboard(Image.fromarray(image, "RGBA")))
    assert shown.shape == (3 * square, 3 * square, 3)
    assert (shown[:square, :square] == (200, 0, 0)).all()
    light, dark = shown[0, 2 * square], shown[0, square]  # neighbouring squares differ
    assert light.tolist() == [255] * 3 and dark.tolist() == [217] * 3
    assert (shown[square:2 * square, square:2 * square] == light).all()  # the diagonal repeats
    opaque = Image.new("RGB", (8, 8), (1, 2, 3))
    assert app.on_checkerboard(opaque) is opaque


@pytest.mark.parametrize(
    ("text", "rgb"),
    [
        ("#ff8000", (255, 128, 0)),
        ("#F80", (255, 136, 0)),
        ("#ff800080", (255, 128, 0)),
        ("rgba(255, 128, 0, 0.5)", (255, 128, 0)),
        ("rgb(0,64.4,255)", (0, 64, 255)),
    ],
)
def test_colours_from_the_picker_or_the_api_are_understood(text: str, rgb: tuple[int, int, int]):
    assert _load_app_module().parse_color(text) == rgb


def test_an_unknown_colour_is_refused_with_the_expected_form():
    import gradio as gr

    with pytest.raises(gr.Error, match="#rrggbb"):
        _load_app_module().parse_color("reddish")


# ---------------------------------------------------------------- packaging
def _front_matter(readme: Path) -> dict[str, str]:
    text = readme.read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "space/README.md must start with the Space's YAML front matter"
    fields = {}
    for line in match.group(1).splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip().strip("'\"")
    return fields


def test_space_front_matter_matches_the_pinned_gradio():
    fields = _front_matter(SPACE / "README.md")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    space_extra = pyproject["project"]["optional-dependencies"]["space"]
    pins = [re.fullmatch(r"gradio==([\w.]+)", req) for req in space_extra]
    pinned = [pin.group(1) for pin in pins if pin]
    assert fields["sdk"] == "gradio"
    assert pinned == [fields["sdk_version"]], "pin gradio exactly and use that version as sdk_version"
    assert (SPACE / fields["app_file"]).is_file()


def test_example_photos_are_shipped_with_their_licence_note():
    app = _load_app_module()
    photos = app.example_photos()
    assert photos, "the page needs sample photos"
    licences = (SPACE / "examples" / "LICENSES.md").read_text()
    for photo in photos:
        assert Image.open(photo).size[0] > 0
        assert Path(photo).name in licences
