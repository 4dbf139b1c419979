"""Shared fixtures.

Sample photos live in ``tests/data/photos`` (see its LICENSES.md). The parity
fixtures and the authors' key lists are made from the authors' own package on
first use and cached (``tests/fixtures``); nothing outside the repository is read.

The end-to-end fixtures never download anything: ``random_checkpoint`` writes
a full-size SwinB checkpoint (fast mode) with random weights in the authors'
key layout, and ``remover`` loads it on the CPU. Both are session-scoped:
building and loading 91 M parameters costs seconds, so do it once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTOS_DIR = Path(__file__).resolve().parent / "data" / "photos"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n N``), share the cores among the workers: N workers each running torch
    on every core would fight over them. Subprocesses that tests start inherit the same share."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        threads = max(1, (os.cpu_count() or 1) // int(workers))
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


@pytest.fixture
def two_threads():
    """Two torch threads for this test, whatever share of the cores its worker has: the few
    tolerances that were measured at two threads (CI's count) and that one thread exceeds."""
    from training_helpers import torch_threads

    with torch_threads(2):
        yield


@pytest.fixture
def current_umask() -> int:
    """The process's umask: files we write must have 0o666 (folders 0o777) less these bits."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture(scope="session")
def images_dir() -> Path:
    """The sample photos (see tests/data/photos/LICENSES.md)."""
    return PHOTOS_DIR


@pytest.fixture(scope="session")
def cat_photo(images_dir: Path) -> Image.Image:
    """A small RGB photo (160x120, sides not multiples of 32)."""
    with Image.open(images_dir / "cat.png") as img:
        return img.convert("RGB").resize((160, 120), Image.Resampling.BILINEAR)


def _calibrate_side_outputs(model, photo: Image.Image) -> None:
    """Rescale the last BatchNorm of each SICA stage so its Laplacian logits
    have mean 0 and std 1 on ``photo``.

    Untrained full-size weights give logits in the tens of thousands, which
    saturate the sigmoid and make every map a constant; after this the maps
    of random weights have hundreds of grey levels, so end-to-end tests can
    tell outputs apart. One forward pass: each hook fixes its stage's
    parameters and its output before the next stage sees it.
    """
    import torch

    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    x = torch.from_numpy(np.asarray(photo.resize(model.base_size[::-1]), dtype=np.float32) / 255.0)
    x = (x.permute(2, 0, 1)[None] - mean) / std

    def hook(module, inputs, output):
        features, logits = output
        mu, sigma = logits.mean(), logits.std()
        bn = module.conv_out4.bn
        bn.weight.div_(sigma)
        bn.bias.sub_(mu).div_(sigma)
        return features, (logits - mu) / sigma

    handles = [getattr(model, f"attention{i}").register_forward_hook(hook) for i in (2, 1, 0)]
    try:
        with torch.no_grad():
            model.pyramid(x)
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory, images_dir: Path) -> Path:
    """A full-size SwinB checkpoint (fast mode, authors' layout, ``.pth``) with
    seeded random weights, calibrated to give non-constant maps."""
    import torch

    from inspyrenet_lite.checkpoint import save_checkpoint
    from inspyrenet_lite.build import build_model

    torch.manual_seed(0)
    model = build_model("fast")
    with Image.open(images_dir / "cat.png") as photo:
        _calibrate_side_outputs(model, photo.convert("RGB"))
    path = tmp_path_factory.mktemp("ckpt") / "ckpt_fast_random.pth"
    save_checkpoint(model.reference_state_dict(), path)
    return path


@pytest.fixture(scope="session")
def remover(random_checkpoint: Path):
    """A fast-mode ``Remover`` on the CPU with the random checkpoint."""
    from inspyrenet_lite.remover import Remover

    return Remover(mode="fast", device="cpu", ckpt=random_checkpoint)


@pytest.fixture
def hub():
    """A started tests/fake_hub.py server (Hub, GitHub release and Google Drive) for one test."""
    from fake_hub import FakeHub

    with FakeHub() as server:
        yield server


@pytest.fixture
def env(hub, tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess: downloads go to ``hub``, caches under ``tmp_path``."""
    return {**hub.env(), "HF_HOME": str(tmp_path / "hf"), "INSPYRENET_LITE_CACHE": str(tmp_path / "own")}


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SwinB model (depth 8, base 64, seed 0) saved with ``save_pretrained``; read-only for tests."""
    import torch

    from inspyrenet_lite import InSPyReNet
    from model_helpers import TINY_SWIN

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny")
    InSPyReNet("swinb", depth=8, base_size=(64, 64), backbone_args=TINY_SWIN).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_remover(tiny_folder: Path):
    """A ``Remover`` of ``tiny_folder`` on the CPU (one per test module: cheap, and no state leaks across modules)."""
    from inspyrenet_lite import Remover

    return Remover(str(tiny_folder), device="cpu")


@pytest.fixture(scope="module")
def swin_case():
    """The reduced Swin parity case (swin_small_lr): its model and its recorded inputs and outputs."""
    from parity_cases import build_case_model, case_io

    return build_case_model("swin_small_lr"), case_io("swin_small_lr")


@pytest.fixture(scope="session")
def swin_graph_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX graph cache holding the reduced Swin parity model's (swin_small_lr) float32 graph at 384x384,
    exported and verified by the backend's first use; shared by test_onnx.py and test_onnx_quantize.py."""
    import torch

    from inspyrenet_lite.backends.ort import OrtBackend
    from parity_cases import build_case_model, case_io, manifest, parity_dir

    cache = tmp_path_factory.mktemp("onnx-cache")
    weights = parity_dir() / manifest()["cases"]["swin_small_lr"]["weights"]
    backend = OrtBackend(build_case_model("swin_small_lr"), weights, cache_dir=cache)
    with torch.inference_mode():
        backend.predict(case_io("swin_small_lr")["input.square"])
    return cache


#: Debian's Chromium (playwright's own browser downloads are not possible in CI) and its headless flags.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the page tests (fails in CI, skips elsewhere, where it is missing)."""
    if not os.environ.get("CI"):
        pytest.importorskip("playwright", reason="needs the test extra: pip install -e '.[test]'")
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is needed: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
