"""``Predictor(compile=True)`` / ``Remover(compile=True)``: torch.compile'd maps equal the eager ones,
and a compiler that fails never fails a user's run (one log line, then eager)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from inspyrenet_lite import Remover
from inspyrenet_lite.backends.compiled import CompiledTorchBackend
from inspyrenet_lite.predictor import Predictor
from parity_cases import build_case_model, case_io
from training_helpers import tiny_model


def _photo(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _compile_failing_at(where: str):
    """A stand-in for torch.compile that fails the way a broken toolchain does: when called, or at the first run."""

    def fake_compile(fn, **kwargs):
        if where == "compile":
            raise RuntimeError("Dynamo is not supported on this Python")

        def compiled(*args, **kw):
            raise RuntimeError("backend='inductor' raised:\nCppCompileError: C++ compile error")

        return compiled

    return fake_compile


@pytest.mark.parametrize("where", ["compile", "first call"])
def test_a_failing_compiler_logs_once_and_the_maps_are_the_eager_ones(monkeypatch, caplog, where):
    model = tiny_model(seed=3)
    photos = [_photo(1, (80, 60)), _photo(2, (64, 64))]
    plain = Predictor(model, device="cpu")
    eager = [plain.predict_maps([photo])[0] for photo in photos]  # one at a time, as below
    monkeypatch.setattr(torch, "compile", _compile_failing_at(where))
    predictor = Predictor(model, device="cpu", compile=True)
    with caplog.at_level(logging.WARNING, logger="inspyrenet_lite"):
        first = predictor.predict_maps(photos[:1])
        second = predictor.predict_maps(photos[1:])
    failures = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
    assert "runs without compilation" in failures[0].getMessage()
    assert predictor.backend.failed is not None
    np.testing.assert_array_equal(first[0], eager[0])
    np.testing.assert_array_equal(second[0], eager[1])


def test_compile_is_a_flag_and_does_not_apply_to_onnxruntime(tiny_folder):
    with pytest.raises(ValueError, match="compile must be True or False"):
        Predictor(tiny_model(), device="cpu", compile="yes")
    with pytest.raises(ValueError, match="does not apply to backend='onnxruntime'"):
        Remover(model=str(tiny_folder), device="cpu", backend="onnxruntime", compile=True)
    remover = Remover(model=str(tiny_folder), device="cpu", compile=True)
    assert isinstance(remover.backend, CompiledTorchBackend)


@pytest.mark.slow
def test_compiled_network_matches_the_authors_outputs():
    """The compiled graph against the parity fixture of the authors' code, as tests/test_parity.py holds
    the eager network to it; then a weight changed in place (fine-tuning between calls) changes the
    compiled map as it changes the eager one. One size only: each compiles for minutes on 2 cores."""
    model = build_case_model("swin_small_lr")
    io = case_io("swin_small_lr")
    backend = CompiledTorchBackend(model)
    with torch.inference_mode():
        square = backend.predict(io["input.square"])
    assert backend.failed is None  # inductor 2.14 failed on this model before the eager indices were reused
    torch.testing.assert_close(square, io["square.pred"], atol=1e-3, rtol=0)  # as test_parity.py

    with torch.no_grad():
        model.attention0.conv_out4.conv.weight.mul_(0.5)  # a fine-tuning step, say
    with torch.inference_mode():
        changed = backend.predict(io["input.square"])
        eager = model.predict(io["input.square"])
    assert backend.failed is None
    assert (changed - square).abs().max() > 1e-2  # a stale graph would still give the old map
    torch.testing.assert_close(changed, eager, atol=1e-3, rtol=0)
