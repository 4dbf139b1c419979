"""The authors' optimiser and learning-rate schedule (TRAINING.md section 2)."""

from __future__ import annotations

import functools

import torch
from torch import nn

MIN_LR = 1e-7


def lr_at(it: int, base: float, max_it: int, warmup: int) -> float:
    """Poly decay (power 0.9) to 1e-7 over ``max_it`` iterations, capped by a linear warm-up from base/10."""
    poly = (base - MIN_LR) * max(1.0 - it / max(max_it, 1), 0.0) ** 0.9 + MIN_LR
    if warmup > 0 and it < warmup:
        return min(base * (0.1 + 0.9 * it / warmup), poly)
    return poly


def _factor(it: int, base: float, max_it: int, warmup: int) -> float:
    return lr_at(it, base, max_it, warmup) / base


def build_optimizer(model: nn.Module, lr: float, backbone_lr: float) -> torch.optim.Adam:
    """Adam, no weight decay: ``backbone_lr`` for parameters whose name contains 'backbone', ``lr`` for the rest.

    Frozen parameters (requires_grad False) are left out.
    """
    backbone, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (backbone if "backbone" in name else rest).append(param)
    groups = [{"params": rest, "lr": lr, "name": "decoder"}]
    if backbone:
        groups.append({"params": backbone, "lr": backbone_lr, "name": "backbone"})
    return torch.optim.Adam(groups, lr=lr, weight_decay=0.0)


def build_scheduler(optimizer: torch.optim.Optimizer, max_it: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration schedule: each group follows :func:`lr_at` from its own base rate."""
    lambdas = [
        functools.partial(_factor, base=group["lr"], max_it=max_it, warmup=warmup) for group in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
