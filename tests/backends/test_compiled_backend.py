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


def _recording_compile(calls: list[tuple[int, ...]]):
    """A stand-in for torch.compile that runs the function as it is and records each call's batch shape."""

    def fake_compile(fn, **kwargs):
        def compiled(x, x_lr=None, hr_blend=0.0):
            calls.append(tuple(x.shape))
            return fn(x, x_lr, hr_blend)

        return compiled

    return fake_compile


def test_a_last_partial_batch_runs_in_the_compiled_graph_padded_and_keeps_its_maps(monkeypatch):
    """A job of 5 photos in batches of 2 ends with a batch of 1: it runs in the batch-of-2 graph (no second
    compile, which takes minutes) and each map is that photo's own."""
    model = tiny_model(seed=4)
    photos = [_photo(seed, (72, 56)) for seed in range(5)]
    plain = Predictor(model, device="cpu")
    alone = [plain.predict_maps([photo])[0] for photo in photos]
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(torch, "compile", _recording_compile(calls))
    predictor = Predictor(model, device="cpu", compile=True)
    maps = predictor.predict_maps(photos, batch_size=2)
    assert [shape[0] for shape in calls] == [2, 2, 2]
    for got, want in zip(maps, alone, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)  # batched rounding, as tests/network/test_network.py


def test_past_torchs_recompile_limit_new_shapes_run_eagerly_with_one_log_line(monkeypatch, caplog):
    model = tiny_model(seed=5)
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(torch, "compile", _recording_compile(calls))
    backend = CompiledTorchBackend(model)
    inputs = [torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side)) for side in (64, 96, 128, 160)]
    with caplog.at_level(logging.WARNING, logger="inspyrenet_lite"), torch.inference_mode():
        with torch._dynamo.config.patch(recompile_limit=2):  # monkeypatch would delete the option on undo
            maps = [backend.predict(x) for x in inputs]
            again = backend.predict(inputs[0])
    assert [shape[2] for shape in calls] == [64, 96, 64]  # the third and fourth sizes never reach the compiler
    limit = [r for r in caplog.records if "recompile_limit" in r.getMessage()]
    assert len(limit) == 1 and "run without compilation" in limit[0].getMessage()
    assert backend.failed is None
    with torch.inference_mode():
        for x, got in zip(inputs, maps, strict=True):
            torch.testing.assert_close(got, model.predict(x), atol=0, rtol=0)
        torch.testing.assert_close(again, maps[0], atol=0, rtol=0)


def test_compile_is_a_flag_and_does_not_apply_to_onnxruntime(tiny_folder):
    with pytest.raises(ValueError, match="compile must be True or False"):
        Predictor(tiny_model(), device="cpu", compile="yes")
    with pytest.raises(ValueError, match="does not apply to backend='onnxruntime'"):
        Remover(model=str(tiny_folder), device="cpu", backend="onnxruntime", compile=True)
    remover = Remover(model=str(tiny_folder), device="cpu", compile=True)
    assert isinstance(remover.backend, CompiledTorchBackend)


@pytest.mark.slow
def test_compiled_network_matches_the_authors_outputs():
    """The compiled graph against the parity fixture of the authors' code, as tests/network/test_parity.py holds
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
