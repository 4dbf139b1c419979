"""The ONNX export and the ONNX Runtime backend: PyTorch's maps, exported once, cached, verified."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspyrenet_lite.backends import TorchBackend, create_backend
from inspyrenet_lite.backends import ort as ort_module
from inspyrenet_lite.backends.onnx_export import (
    GRAPH_INPUT,
    GRAPH_OUTPUT,
    OnnxVerificationError,
    export_onnx,
    load_session,
    run_session,
)
from inspyrenet_lite.backends.ort import OrtBackend
from parity_cases import build_case_model, case_io, manifest, parity_dir

MAP_ATOL = 1e-4  # full-size fast model against PyTorch (issue 10's measured agreement)
# The reduced parity models' finest level is ill-conditioned (see README, parity at base 1024):
# ORT differed from PyTorch by up to 4e-4 on swin_small_lr's square input. Their bound is
# the export's own verification tolerance.
SMALL_ATOL = 1e-3


class _CountingExport:
    """Wraps export_onnx in the backend module and counts the exports."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        monkeypatch.setattr(ort_module, "export_onnx", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return export_onnx(*args, **kwargs)


@pytest.fixture(scope="module")
def swin_case():
    return build_case_model("swin_small_lr"), case_io("swin_small_lr")


@pytest.fixture(scope="module")
def swin_cache(swin_case, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the reduced Swin model's graph, exported by the backend's first use."""
    model, io = swin_case
    cache = tmp_path_factory.mktemp("onnx-cache")
    backend = OrtBackend(model, _weights("swin_small_lr"), cache_dir=cache)
    with torch.inference_mode():
        backend.predict(io["input.square"])
    return cache


def _weights(case: str) -> Path:
    return parity_dir() / manifest()["cases"][case]["weights"]


def _graph(cache: Path) -> Path:
    (path,) = cache.glob("*.onnx")
    return path


@torch.inference_mode()
def test_reduced_swin_graph_gives_pytorch_and_reference_maps_for_a_batch(swin_case, swin_cache):
    model, io = swin_case
    path = _graph(swin_cache)
    assert "384x384" in path.name and (path.parent / (path.name + ".sha256")).is_file()
    session = load_session(path)
    assert [i.name for i in session.get_inputs()] == [GRAPH_INPUT]
    assert [o.name for o in session.get_outputs()] == [GRAPH_OUTPUT]
    x = io["input.square"]
    batch = torch.cat([x, x.flip(-1)])  # a batch of two different images
    got = run_session(session, batch)
    assert got.shape == (2, 1, 384, 384)
    assert (got - model.predict(batch)).abs().max() <= SMALL_ATOL
    # The authors' map for this input (an outside truth), and batching changes nothing.
    assert (got[:1] - io["square.pred"]).abs().max() <= SMALL_ATOL
    assert (got[1:] - run_session(session, batch[1:])).abs().max() <= SMALL_ATOL


@pytest.mark.heavy  # fails today: ORT gives NaN maps for this graph (issue #10 stays open)
@torch.inference_mode()
def test_reduced_res2net_exports_at_a_non_square_size(tmp_path: Path):
    model, io = build_case_model("res2net_small_lr"), case_io("res2net_small_lr")
    x = io["input.nonsquare"]
    path = export_onnx(model, tmp_path / "res2net.onnx", size=tuple(x.shape[-2:]))
    got = run_session(load_session(path), x)
    assert (got - model.predict(x)).abs().max() <= SMALL_ATOL
    assert (got - io["nonsquare.pred"]).abs().max() <= SMALL_ATOL


@torch.inference_mode()
def test_a_cache_hit_makes_no_export_and_a_corrupt_cache_file_is_rebuilt(
    swin_case, swin_cache, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    model, io = swin_case
    x = io["input.square"]
    with torch.inference_mode():
        expected = model.predict(x)
    exports = _CountingExport(monkeypatch)

    hit = OrtBackend(model, _weights("swin_small_lr"), cache_dir=swin_cache)
    assert (hit.predict(x) - expected).abs().max() <= SMALL_ATOL
    assert exports.calls == 0

    path = _graph(swin_cache)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # flipped weights: ORT would load it and answer wrongly
    path.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="inspyrenet_lite")
    rebuilt = OrtBackend(model, _weights("swin_small_lr"), cache_dir=swin_cache)
    assert (rebuilt.predict(x) - expected).abs().max() <= SMALL_ATOL
    assert exports.calls == 1
    assert any("rebuilding the cached ONNX graph" in r.getMessage() for r in caplog.records)


def test_the_cache_is_keyed_by_checkpoint_size_and_versions(swin_case, swin_cache):
    import onnxruntime

    model, _ = swin_case
    name = OrtBackend(model, _weights("swin_small_lr"), cache_dir=swin_cache).cache_path((384, 384)).name
    other = OrtBackend(model, _weights("res2net_small_lr"), cache_dir=swin_cache).cache_path((384, 384)).name
    assert name != other
    assert "384x384" in name and torch.__version__ in name and onnxruntime.__version__ in name


@pytest.mark.heavy
def test_export_refuses_a_graph_that_disagrees_with_pytorch(swin_case, tmp_path: Path):
    """A model that behaves differently while traced (as the row bands once did) is refused."""
    model, _ = swin_case

    def traced_only_offset(module, inputs, output):
        if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            features, logits = output
            return features, logits + 0.5 * torch.sin(logits)
        return output

    handle = model.attention0.register_forward_hook(traced_only_offset)
    try:
        with pytest.raises(OnnxVerificationError, match="differ from PyTorch"):
            export_onnx(model, tmp_path / "bad.onnx")
    finally:
        handle.remove()
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


@torch.inference_mode()
def test_passes_onnx_does_not_cover_run_in_pytorch_and_say_why_once(
    swin_case, swin_cache, caplog: pytest.LogCaptureFixture
):
    model, io = swin_case
    backend = OrtBackend(model, _weights("swin_small_lr"), cache_dir=swin_cache)
    caplog.set_level(logging.INFO, logger="inspyrenet_lite")
    for _ in range(2):
        blended = backend.predict(io["input.hr"], x_lr=io["input.lr"], hr_blend=1.0)
        assert torch.equal(blended, model.predict(io["input.hr"], x_lr=io["input.lr"], hr_blend=1.0))
        other = backend.predict(io["input.nonsquare"])  # not the base size: dynamic resizing
        assert torch.equal(other, model.predict(io["input.nonsquare"]))
    reasons = [r.getMessage() for r in caplog.records if r.name.startswith("inspyrenet_lite.backends")]
    assert len(reasons) == 2 and "pyramid blending" in reasons[0] and "320x480" in reasons[1]
    assert backend._sessions == {}  # nothing was exported for them


def test_auto_without_onnxruntime_uses_torch_with_one_log_line(
    random_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from inspyrenet_lite.remover import Remover

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    caplog.set_level(logging.INFO, logger="inspyrenet_lite.backends")
    remover = Remover(mode="fast", device="cpu", ckpt=random_checkpoint, backend="auto")
    assert isinstance(remover.backend, TorchBackend)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("inspyrenet_lite.backends")]
    assert len(lines) == 1 and "onnxruntime is not installed" in lines[0] and "[onnx]" in lines[0]
    with pytest.raises(ValueError, match=r"inspyrenet-lite\[onnx\]"):
        create_backend("onnxruntime", remover.model, device=torch.device("cpu"), precision="fp32",
                       checkpoint_path=random_checkpoint)


@pytest.mark.heavy
def test_full_size_fast_model_in_onnxruntime_gives_pytorch_maps_on_photos(
    random_checkpoint: Path, remover, images_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from inspyrenet_lite.remover import Remover

    monkeypatch.setenv("INSPYRENET_LITE_ONNX_DIR", str(tmp_path))
    fast = Remover(mode="fast", device="cpu", ckpt=random_checkpoint, backend="onnxruntime")
    photos = [Image.open(images_dir / name).convert("RGB") for name in ("coffee.png", "astronaut.png")]
    maps = fast.process(photos, type="map", batch_size=2)  # one batch of two
    assert len(list(tmp_path.glob("*.onnx"))) == 1
    for photo, got in zip(photos, maps, strict=True):
        expected = remover.predict(photo)
        ours = fast.predict(photo)
        assert np.abs(ours - expected).max() <= MAP_ATOL
        grey = np.asarray(remover.process(photo, type="map"), dtype=np.int16)
        assert np.abs(np.asarray(got, dtype=np.int16) - grey).max() <= 1


@torch.inference_mode()
def test_onednn_linear_is_as_close_to_float64_as_the_blas_path(monkeypatch: pytest.MonkeyPatch):
    from inspyrenet_lite.modeling import backbones

    monkeypatch.setattr(backbones, "_ONEDNN_LINEAR", torch.backends.mkldnn.is_available())
    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 1536)
    x = torch.randn(4, 576, 512)
    assert backbones._onednn_linear_applies(layer, x) == torch.backends.mkldnn.is_available()
    exact = torch.nn.functional.linear(x.double(), layer.weight.double(), layer.bias.double())
    blas_error = (layer(x).double() - exact).abs().max()
    ours = backbones._linear(layer, x)
    assert ours.shape == (4, 576, 1536)
    assert (ours.double() - exact).abs().max() <= 4 * blas_error + 1e-6
