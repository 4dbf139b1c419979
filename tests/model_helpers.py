"""Helpers of the model tests: a reduced backbone, and whether two networks compute the same thing."""

from __future__ import annotations

import torch

from inspyrenet_lite import InSPyReNet

#: A reduced Swin backbone: a network that runs in milliseconds (tests of plumbing, not of the paper's numbers).
TINY_SWIN = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 2}


def same_outputs(a: InSPyReNet, b: InSPyReNet) -> bool:
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.predict(x), b.predict(x))
