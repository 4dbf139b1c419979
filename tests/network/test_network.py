"""Behaviour of InSPyReNet that users rely on beyond parity: batching and input checks."""

from __future__ import annotations

import pytest
import torch

from inspyrenet_lite import InSPyReNet


@torch.inference_mode()
def test_batching_never_changes_a_result(swin_case, two_threads):  # 1.1e-4 apart at one thread
    model, io = swin_case
    a = io["input.square"]
    b = torch.flip(a, dims=[3]) * 0.5 + 0.3  # a different image with another value range
    batch = model.predict(torch.cat([a, b]))
    # Batched kernels round differently (~1e-5); a batch-wide min-max, as in the
    # reference, would shift whole maps by far more than this tolerance.
    torch.testing.assert_close(batch[0:1], model.predict(a), atol=1e-4, rtol=0)
    torch.testing.assert_close(batch[1:2], model.predict(b), atol=1e-4, rtol=0)


@torch.inference_mode()
def test_batched_pyramid_blending_equals_single_images(swin_case):
    model, io = swin_case
    hr, lr = io["input.hr"], io["input.lr"]
    hr2, lr2 = torch.flip(hr, dims=[2]), torch.flip(lr, dims=[2])
    batch = model.predict(torch.cat([hr, hr2]), x_lr=torch.cat([lr, lr2]))
    torch.testing.assert_close(batch[1:2], model.predict(hr2, x_lr=lr2), atol=1e-4, rtol=0)


@pytest.mark.parametrize("shape", [(1, 3, 100, 96), (1, 3, 96, 33), (1, 1, 96, 96), (3, 96, 96)])
def test_bad_input_shapes_raise_value_error(swin_case, shape):
    model, _ = swin_case
    with pytest.raises(ValueError, match="32|B, 3"):
        model.pyramid(torch.zeros(shape))


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="res2net50"):
        InSPyReNet("vgg16")


def test_predict_output_range_and_shape(swin_case):
    model, io = swin_case
    with torch.inference_mode():
        out = model.predict(io["input.nonsquare"])
    assert out.shape == (1, 1, 320, 480)
    assert out.min().item() == pytest.approx(0.0, abs=1e-6)
    assert out.max().item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_reduced_precision_autocast_stays_finite(swin_case, dtype):
    # SICA's context sums reach ~1e5, beyond float16: they must stay in float32.
    model, io = swin_case
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
        out = model.predict(io["input.square"])
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.min().item() == pytest.approx(0.0, abs=1e-3) and out.max().item() == pytest.approx(1.0, abs=1e-3)
