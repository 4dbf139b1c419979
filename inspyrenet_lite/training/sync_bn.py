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
        x32 = x.float()
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], device=x.device)
        # Two passes (mean, then squared deviations), as a single BatchNorm computes them:
        # E[x²] − E[x]² loses most digits when the mean is large against the spread.
        sums = _all_reduce(torch.cat([x32.sum(dim=(0, 2, 3)), count]))
        n = sums[-1]
        mean = sums[:c] / n
        var = _all_reduce((x32 - mean.view(1, c, 1, 1)).square().sum(dim=(0, 2, 3))) / n
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        y = (x32 - mean.view(1, c, 1, 1)) * torch.rsqrt(var.view(1, c, 1, 1) + self.eps)
        return (y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)).to(x.dtype)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum over processes, differentiable (its backward sums the gradients likewise)."""
    import warnings

    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated name, same autograd-aware op
        return all_reduce(t)


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
