"""BatchNorm whose batch statistics span every process (SyncBatchNorm's job), on any device.

torch's ``SyncBatchNorm`` runs on CUDA only; this one is for DDP on CPUs (gloo).
Statistics are summed with the autograd-aware all-reduce, so the gradients are
those of one BatchNorm over the combined batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with batch statistics over all processes of the default group in training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        x32 = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device)
        sums = torch.cat([x32.sum(dim=(0, 2, 3)), (x32 * x32).sum(dim=(0, 2, 3)), count])
        sums = all_reduce(sums)
        c = x.shape[1]
        n = sums[-1]
        mean = sums[:c] / n
        var = sums[c : 2 * c] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        y = (x32 - mean.view(1, c, 1, 1)) * torch.rsqrt(var.view(1, c, 1, 1) + self.eps)
        return (y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)).to(x.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Make every BatchNorm2d of ``module`` synchronise across processes (in place where possible).

    CUDA modules get torch's SyncBatchNorm (as the authors use); others
    :class:`GlobalBatchNorm2d`.
    """
    device = next(module.parameters()).device
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
    return module
