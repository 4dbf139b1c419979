"""The authors' training objective (TRAINING.md section 1): pyramid labels, weighted BCE + IoU, consistency."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..modeling.pyramid import reduce

#: Weight of the pyramid consistency term.
CONSISTENCY_WEIGHT = 1e-4


def pyramid_labels(y: torch.Tensor, levels: int = 4) -> list[torch.Tensor]:
    """[y3, y2, y1, y0]: the label and its REDUCE pyramid, coarsest first (soft, blurred)."""
    labels = [y]
    for _ in range(levels - 1):
        labels.append(reduce(labels[-1]))
    return labels[::-1]


def _full_size(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="nearest")


def sod_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """wBCE(σ(x), y) + IoU(σ(x), y), each a plain mean over all pixels.

    w = 1 + 5·|avgpool31(y) − y| (zero padding counted); BCE on probabilities
    with the log clamped at −100, not divided by Σw; IoU per pixel with +1
    smoothing, unweighted.
    """
    logits = logits.float()
    y = y.float()
    weight = 1 + 5 * (F.avg_pool2d(y, 31, stride=1, padding=15) - y).abs()
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy(p, y, reduction="none")  # clamps log at -100
    inter = p * y
    iou = 1 - (inter + 1) / (p + y - inter + 1)
    return (weight * bce).mean() + iou.mean()


def pyramid_loss(
    saliency: Sequence[torch.Tensor], y: torch.Tensor, consistency: float = CONSISTENCY_WEIGHT
) -> torch.Tensor:
    """Σ_i L_sod(N(d_i), N(y_i)) + consistency · Σ_{i≥1} mean|N(d_i) − sg(N(REDUCE(d_{i−1})))|.

    ``saliency`` is the network's [d3, d2, d1, d0] logits (coarsest first) and
    ``y`` the (B, 1, H, W) label in [0, 1] at the input size. N is nearest
    upsampling to H×W. In the consistency term levels count from the finest
    (d_0 = d0), so each coarse map is compared with the REDUCE of the next
    finer one, which carries no gradient.
    """
    size = y.shape[-2:]
    labels = pyramid_labels(y, len(saliency))
    total = sum(sod_loss(_full_size(d, size), _full_size(t, size)) for d, t in zip(saliency, labels))
    if consistency:
        fine_to_coarse = list(saliency)[::-1]  # d0, d1, d2, d3
        for i in range(1, len(fine_to_coarse)):
            target = _full_size(reduce(fine_to_coarse[i - 1].float()), size).detach()
            total = total + consistency * (_full_size(fine_to_coarse[i].float(), size) - target).abs().mean()
    return total


def distillation_loss(saliency: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """The forgetting guard's term: the objective toward the starting model's own maps.

    Each level's teacher probability σ(t_i) serves as its soft label, so the
    student is pulled back to the starting model's answer in its own terms.
    """
    size = saliency[-1].shape[-2:]
    return sum(
        sod_loss(_full_size(d, size), _full_size(torch.sigmoid(t.float()), size).detach())
        for d, t in zip(saliency, teacher)
    )
