"""The training objective against TRAINING.md section 1, computed by hand; and the detaches' gradient paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inspyrenet_lite.modeling.pyramid import reduce
from inspyrenet_lite.training.losses import pyramid_labels, pyramid_loss, sod_loss
from training_helpers import tiny_model


def _sod_by_hand(logits: np.ndarray, y: np.ndarray) -> float:
    """wBCE + IoU from the formulas, in float64 with plain loops, for a (H, W) map."""
    h, w = y.shape
    padded = np.zeros((h + 30, w + 30))
    padded[15 : 15 + h, 15 : 15 + w] = y
    total_bce = total_iou = 0.0
    for i in range(h):
        for j in range(w):
            pool = padded[i : i + 31, j : j + 31].sum() / 961  # the padding counts
            weight = 1 + 5 * abs(pool - y[i, j])
            p = 1 / (1 + math.exp(-logits[i, j]))
            p = float(np.float32(p))  # the sigmoid saturates in float32
            log_p = max(math.log(p), -100) if p > 0 else -100
            log_q = max(math.log(1 - p), -100) if p < 1 else -100
            total_bce += weight * -(y[i, j] * log_p + (1 - y[i, j]) * log_q)
            inter = p * y[i, j]
            total_iou += 1 - (inter + 1) / (p + y[i, j] - inter + 1)
    return (total_bce + total_iou) / (h * w)


def test_sod_loss_matches_the_formulas_by_hand():
    rng = np.random.default_rng(0)
    y = np.clip(rng.uniform(-0.3, 1.3, (6, 5)), 0, 1)  # soft, with exact 0s and 1s
    logits = rng.normal(0, 3, (6, 5))
    logits[0, 0], logits[1, 1] = 200.0, -200.0  # saturated: the log clamp at -100 decides
    y[0, 0], y[1, 1] = 0.0, 1.0
    got = sod_loss(torch.tensor(logits, dtype=torch.float32)[None, None], torch.tensor(y, dtype=torch.float32)[None, None])
    assert float(got) == pytest.approx(_sod_by_hand(logits, y), rel=1e-5)


def test_losses_are_means_over_the_batch_not_sums_or_weight_normalised():
    rng = np.random.default_rng(1)
    y = np.clip(rng.uniform(-0.2, 1.2, (2, 7, 7)), 0, 1)
    x = rng.normal(0, 2, (2, 7, 7))
    got = sod_loss(torch.tensor(x, dtype=torch.float32)[:, None], torch.tensor(y, dtype=torch.float32)[:, None])
    expected = (_sod_by_hand(x[0], y[0]) + _sod_by_hand(x[1], y[1])) / 2
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_pyramid_loss_upsamples_nearest_and_adds_the_consistency_term_by_hand():
    torch.manual_seed(0)
    y = torch.rand(1, 1, 32, 32)
    saliency = [torch.randn(1, 1, 32 // 2**k, 32 // 2**k) for k in (3, 2, 1, 0)]  # d3..d0
    labels = pyramid_labels(y)
    assert [tuple(t.shape[-2:]) for t in labels] == [(4, 4), (8, 8), (16, 16), (32, 32)]
    torch.testing.assert_close(labels[0], reduce(reduce(reduce(y))))  # REDUCE, not a resize

    def nearest(t: torch.Tensor) -> np.ndarray:  # repeat each pixel, by hand
        k = 32 // t.shape[-1]
        return np.repeat(np.repeat(t[0, 0].double().numpy(), k, 0), k, 1)

    sod = sum(_sod_by_hand(nearest(d), nearest(t)) for d, t in zip(saliency, labels))
    fine = saliency[::-1]
    consistency = sum(np.abs(nearest(fine[i]) - nearest(reduce(fine[i - 1]))).mean() for i in (1, 2, 3))
    assert float(pyramid_loss(saliency, y, consistency=0)) == pytest.approx(sod, rel=1e-5)
    assert float(pyramid_loss(saliency, y)) == pytest.approx(sod + 1e-4 * consistency, rel=1e-5)


def test_consistency_term_gives_no_gradient_to_the_finer_side():
    torch.manual_seed(0)
    y = torch.rand(1, 1, 32, 32)
    saliency = [torch.randn(1, 1, 32 // 2**k, 32 // 2**k, requires_grad=True) for k in (3, 2, 1, 0)]
    term = pyramid_loss(saliency, y) - pyramid_loss(saliency, y, consistency=0)
    grads = torch.autograd.grad(term, saliency)
    d3, d2, d1, d0 = grads
    assert float(d0.abs().max()) == 0.0  # d0 is only ever the (stop-gradient) finer side
    # d3 only appears as the coarse side: 1e-4 * sign / N per full-size pixel, 4x4 repeats of 8x8 each.
    n_pix = 32 * 32
    # (the two losses' other gradients cancel to float32 rounding, ~1e-9 here)
    assert float(d3.abs().max()) == pytest.approx(1e-4 * 64 / n_pix, rel=1e-3)
    assert float(d1.abs().max()) > 0 and float(d2.abs().max()) > 0


def _grads_of(level: int) -> dict[str, float]:
    model = tiny_model(seed=1).train()
    x = torch.randn(2, 3, 64, 64)
    saliency, _ = model.pyramid(x)
    y = torch.rand(2, 1, *saliency[level].shape[-2:])
    sod_loss(saliency[level], y).backward()

    def norm(module: torch.nn.Module) -> float:
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    return {
        "head0": norm(model.attention0.conv_out4),
        "head1": norm(model.attention1.conv_out4),
        "head2": norm(model.attention2.conv_out4),
        "decoder": norm(model.decoder),
        "backbone": norm(model.backbone),
        "features1": norm(model.attention1.conv_out3),
    }


def test_a_levels_loss_trains_its_own_laplacian_head_and_the_features_only():
    fine = _grads_of(3)  # loss on d0
    assert fine["head0"] > 0 and fine["backbone"] > 0 and fine["features1"] > 0
    # d1 and p1 enter the last stage detached: the coarser heads get nothing.
    assert fine["head1"] == 0 and fine["head2"] == 0
    mid = _grads_of(2)  # loss on d1
    assert mid["head1"] > 0 and mid["head2"] == 0 and mid["head0"] == 0
    coarse = _grads_of(0)  # loss on d3: only the decoder and the backbone
    assert coarse["decoder"] > 0 and coarse["head2"] == 0 and coarse["head1"] == 0 and coarse["head0"] == 0


def test_gradient_checkpointing_changes_no_gradient():
    x = torch.randn(2, 3, 64, 64)
    y = torch.rand(2, 1, 64, 64)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(seed=2).train()
        model.backbone.set_drop_path(0.2)  # recomputation must redraw the same stochastic depth
        model.set_grad_checkpointing(checkpointing)
        torch.manual_seed(5)
        pyramid_loss(model.pyramid(x)[0], y).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)
