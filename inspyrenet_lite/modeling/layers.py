"""Small building blocks shared by the decoder modules: ConvBN and axial self-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_Size = int | tuple[int, int]


def float32_region(like: torch.Tensor) -> torch.autocast:
    """A region where autocast is off, for sums that overflow or lose too much in fp16/bf16."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize (align_corners=False), skipped when x already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _pair(value: _Size) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class ConvBN(nn.Module):
    """Bias-free convolution with "same" padding, then BatchNorm and an optional ReLU.

    Rectangular kernels (e.g. 1x3) are padded per axis so the output keeps the
    input's spatial size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _Size,
        dilation: int = 1,
        relu: bool = False,
        bn: bool = True,
    ) -> None:
        super().__init__()
        kh, kw = _pair(kernel_size)
        padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        self.conv = nn.Conv2d(
            in_channels, out_channels, (kh, kw), padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels) if bn else None
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class AxialAttention(nn.Module):
    """Self-attention along one axis ('h' or 'w'), as the published weights expect it.

    The query/key/value maps are viewed as ``(B, -1, L)`` straight from their
    contiguous NCHW memory, without a transpose. For axis 'h' the length-L
    rows are therefore runs of consecutive memory rather than image columns;
    this is what the reference computes and what the weights were trained on.
    """

    def __init__(self, channels: int, axis: str) -> None:
        super().__init__()
        if axis not in ("h", "w"):
            raise ValueError(f"axis must be 'h' or 'w', got {axis!r}")
        self.axis = axis
        self.query_conv = ConvBN(channels, channels // 8, 1)
        self.key_conv = ConvBN(channels, channels // 8, 1)
        self.value_conv = ConvBN(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        length = h if self.axis == "h" else w
        q = self.query_conv(x).reshape(b, -1, length)
        k = self.key_conv(x).reshape(b, -1, length)
        v = self.value_conv(x).reshape(b, -1, length)
        with float32_region(x):
            attention = torch.softmax(torch.bmm(q.float().transpose(1, 2), k.float()), dim=-1)
        out = torch.bmm(v, attention.to(v.dtype).transpose(1, 2)).reshape(b, c, h, w)
        return self.gamma * out + x
