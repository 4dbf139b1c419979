"""The Gradio Space (space/app.py): its API as a client sees it, and its packaging.

The app runs as `python space/app.py` in a subprocess on a free loopback
port, with the full-size SwinB checkpoint of random weights from conftest.py
(`random_checkpoint`) passed through INSPYRENET_LITE_CKPT: nothing is
downloaded. The same server is shared with
tests/test_space_browser.py.
"""

from __future__ import annotations

import os
import re
import time
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("gradio", reason="needs the space extra: pip install -e '.[test,space]'")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from space_helpers import REPO, SPACE, SpaceServer, call, load_app_module  # noqa: E402

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
    return call(client, small_photo)


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
        results = list(pool.map(lambda options: call(client, small_photo, **options), requests))
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
        call(client, not_an_image)
    # The next call is served; it also checks a custom background image.
    backdrop = tmp_path / "blue.png"
    Image.new("RGB", (64, 48), (0, 0, 255)).save(backdrop)
    result_path, _, _, _ = call(client, small_photo, output="background", background=handle_file(str(backdrop)))
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
        call(client, small_photo, **options)


def test_uploads_over_the_size_limit_are_refused_by_the_server(space_server: SpaceServer):
    app = load_app_module()
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


def test_models_come_from_the_librarys_shared_cache(monkeypatch: pytest.MonkeyPatch):
    """The Space and ``inspyrenet_lite.remove()`` share one Remover per model, built on first use."""
    import inspyrenet_lite.remover
    from inspyrenet_lite.cached import cached_remover, clear_cache

    app = load_app_module()
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

    app = load_app_module()
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

    menu = load_app_module().model_menu
    common = [name for _, name in menu.COMMON_MODELS]
    more = [name for _, name in menu.more_choices()]
    assert common == ["fast", "base"]
    assert sorted(common + more) == sorted(MODELS)


def test_the_preview_shows_a_checkerboard_where_the_result_is_transparent():
    app = load_app_module()
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
    assert load_app_module().parse_color(text) == rgb


def test_an_unknown_colour_is_refused_with_the_expected_form():
    import gradio as gr

    with pytest.raises(gr.Error, match="#rrggbb"):
        load_app_module().parse_color("reddish")


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
    app = load_app_module()
    photos = app.example_photos()
    assert photos, "the page needs sample photos"
    licences = (SPACE / "examples" / "LICENSES.md").read_text()
    for photo in photos:
        assert Image.open(photo).size[0] > 0
        assert Path(photo).name in licences
