"""``inspyrenet_lite.remove``: the one-liner that keeps its model between calls (issue 33)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import inspyrenet_lite
from inspyrenet_lite import Remover, clear_cache, remove


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models the Remover class was asked to build, in order (and an empty cache around the test)."""
    calls: list[str] = []
    real = Remover.__init__

    def counting(self, model=None, *args, **kwargs):
        calls.append(str(model))
        real(self, model, *args, **kwargs)

    monkeypatch.setattr(Remover, "__init__", counting)
    clear_cache()
    yield calls
    clear_cache()


@pytest.fixture(scope="module")
def noise_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("noise_png") / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 56, 3), dtype=np.uint8)).save(path)
    return path


def test_the_model_is_built_once_and_each_kind_comes_back_as_given(built, tiny_folder, noise_png):
    model = str(tiny_folder)
    want = Remover(model, device="cpu").process(str(noise_png))
    built.clear()
    from_path = remove(str(noise_png), model, device="cpu")
    assert isinstance(from_path, Image.Image) and from_path.mode == "RGBA"
    assert np.array_equal(np.asarray(from_path), np.asarray(want))
    with Image.open(noise_png) as opened:
        assert isinstance(remove(opened.copy(), model, device="cpu"), Image.Image)
    out_bytes = remove(noise_png.read_bytes(), model, device="cpu")
    assert isinstance(out_bytes, bytes) and Image.open(io.BytesIO(out_bytes)).format == "PNG"
    array = remove(np.asarray(Image.open(noise_png)), model, device="cpu", type="map")
    assert isinstance(array, np.ndarray) and array.shape == (48, 56)
    assert built == [model]  # four calls, one model


def test_other_settings_get_their_own_model_and_clear_cache_lets_go(built, tiny_folder, noise_png):
    model = str(tiny_folder)
    first = inspyrenet_lite.cached.cached_remover(model, device="cpu")
    assert inspyrenet_lite.cached.cached_remover(Path(model), device="cpu") is first  # a Path is the same model
    remove(str(noise_png), model, device="cpu", precision="bf16")
    assert len(built) == 2
    clear_cache()
    assert inspyrenet_lite.cached.cached_remover(model, device="cpu") is not first
    assert len(built) == 3


def test_threads_asking_at_once_share_one_model(built, tiny_folder, noise_png):
    results, errors = [], []

    def work() -> None:
        try:
            results.append(np.asarray(remove(str(noise_png), str(tiny_folder), device="cpu", type="map")))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(results) == 6 and len(built) == 1
    assert all(np.array_equal(result, results[0]) for result in results)
