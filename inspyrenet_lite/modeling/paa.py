"""Parallel axial attention: the encoder context module (PAA-e) and the coarse decoder (PAA-d)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import AxialAttention, ConvBN


class PAAKernel(nn.Module):
    """One receptive-field branch of PAA-e: 1x1, 1xr, rx1, axial attention, dilated 3x3."""

    def __init__(self, in_channels: int, channels: int, receptive_size: int) -> None:
        super().__init__()
        r = receptive_size
        self.conv0 = ConvBN(in_channels, channels, 1)
        self.conv1 = ConvBN(channels, channels, (1, r))
        self.conv2 = ConvBN(channels, channels, (r, 1))
        self.conv3 = ConvBN(channels, channels, 3, dilation=r)
        self.Hattn = AxialAttention(channels, "h")
        self.Wattn = AxialAttention(channels, "w")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(self.conv0(x)))
        return self.conv3(self.Hattn(y) + self.Wattn(y))


class PAAEncoder(nn.Module):
    """PAA-e: reduces a backbone map to ``channels`` with multi-receptive-field context."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.branch0 = ConvBN(in_channels, channels, 1)
        self.branch1 = PAAKernel(in_channels, channels, 3)
        self.branch2 = PAAKernel(in_channels, channels, 5)
        self.branch3 = PAAKernel(in_channels, channels, 7)
        self.conv_cat = ConvBN(4 * channels, channels, 3)
        self.conv_res = ConvBN(in_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        return torch.relu(self.conv_cat(torch.cat(branches, dim=1)) + self.conv_res(x))


class PAADecoder(nn.Module):
    """PAA-d: fuses the three deepest maps into the coarsest saliency logits (stride 8)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(3 * channels, channels, 3)
        self.conv2 = ConvBN(channels, channels, 3)
        self.conv3 = ConvBN(channels, channels, 3)
        self.conv4 = ConvBN(channels, channels, 3)
        self.conv5 = ConvBN(channels, 1, 3, bn=False)
        self.Hattn = AxialAttention(channels, "h")
        self.Wattn = AxialAttention(channels, "w")

    def forward(
        self, x3: torch.Tensor, x4: torch.Tensor, x5: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = x3.shape[-2:]
        x4 = F.interpolate(x4, size=size, mode="bilinear", align_corners=True)
        x5 = F.interpolate(x5, size=size, mode="bilinear", align_corners=True)
        f = self.conv1(torch.cat([x5, x4, x3], dim=1))
        f = self.conv2(self.Hattn(f) + self.Wattn(f))
        f = self.conv4(self.conv3(f))
        return f, self.conv5(f)
