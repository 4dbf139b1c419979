"""Helpers of the model tests: whether two networks compute the same thing."""

from __future__ import annotations

import torch

from inspyrenet_lite import InSPyReNet


def same_outputs(a: InSPyReNet, b: InSPyReNet) -> bool:
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.predict(x), b.predict(x))
