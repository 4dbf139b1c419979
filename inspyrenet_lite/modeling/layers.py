"""Small building blocks shared by the decoder modules: ConvBN and axial self-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_Size = int | tuple[int, int]


def float32_region(like: torch.Tensor) -> torch.autocast:
    """A region where autocast is off, for sums that overflow or lose too much in fp16/bf16."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def is_tracing() -> bool:
    """True while torch.export / dynamo, TorchScript tracing or the ONNX exporter records the model.

    Caches and the CPU row bands are eager-only: a traced graph must not hold a
    cached tensor's ``data_ptr`` or writes into a preallocated output.
    """
    return bool(
        torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    )


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

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """conv(cat(inputs, dim=1)), then BatchNorm and ReLU.

        Several inputs are convolved with their own slices of the weight and
        summed, so the concatenation is never materialised.
        """
        if _use_bands(self, inputs):
            return self._forward_bands(inputs)
        return self._finish(self._conv(inputs))

    def _conv(self, inputs: tuple[torch.Tensor, ...], row_padding: int | None = None) -> torch.Tensor:
        conv = self.conv
        channels = [x.shape[1] for x in inputs]
        if sum(channels) != conv.in_channels:
            raise ValueError(f"ConvBN expects {conv.in_channels} input channels in all, got {channels}")
        padding = conv.padding if row_padding is None else (row_padding, conv.padding[1])
        y = None
        start = 0
        for x in inputs:
            weight = conv.weight if len(inputs) == 1 else conv.weight[:, start : start + x.shape[1]]
            start += x.shape[1]
            part = F.conv2d(x, weight, None, conv.stride, padding, conv.dilation)
            y = part if y is None else y.add_(part)
        return y

    def _finish(self, y: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            y = self.bn(y)
        if self.relu is not None:
            y = self.relu(y)
        return y

    def _forward_bands(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The same result computed in horizontal bands of output rows.

        Each band is convolved, normalised and rectified while it is small, then
        written into the output. This never holds a second full-size map (the
        raw convolution next to the BatchNorm output), and the bands' temporaries
        are small enough for the allocator to reuse them instead of mapping fresh
        pages. A band sees the input rows it needs plus the same zero rows at the
        image's top and bottom, so every output value is computed from the same
        operands as in one whole-image convolution.
        """
        pad = self.conv.padding[0]
        b, _, h, w = inputs[0].shape
        rows = max(1, _BAND_ELEMENTS // (b * w * self.conv.out_channels))
        out: torch.Tensor | None = None
        for top in range(0, h, rows):
            bottom = min(h, top + rows)
            first, last = max(0, top - pad), min(h, bottom + pad)
            zero_rows = (0, 0, pad - (top - first), pad - (last - bottom))
            band = []
            for x in inputs:
                x = x[:, :, first:last]
                band.append(F.pad(x, zero_rows) if any(zero_rows) else x)
            y = self._conv(tuple(band), row_padding=0)
            if self.bn is not None:
                y = self.bn(y)
            if out is None:
                out = y.new_empty(b, y.shape[1], h, w)
            if self.relu is not None:
                # ReLU straight into the output (torch's relu is clamp_min(x, 0)): one pass fewer.
                torch.clamp_min(y, 0, out=out[:, :, top:bottom])
            else:
                out[:, :, top:bottom] = y
        assert out is not None
        return out


# Convolutions whose output holds more than _BAND_MIN_ELEMENTS values per call run
# in bands of about _BAND_ELEMENTS output values (4 MiB of float32).
_BAND_MIN_ELEMENTS = 2**23
_BAND_ELEMENTS = 2**20


def _use_bands(module: ConvBN, inputs: tuple[torch.Tensor, ...]) -> bool:
    """Bands only for eager inference on the CPU, with the conv's stride 1, on big maps."""
    x = inputs[0]
    return (
        x.device.type == "cpu"
        and not is_tracing()
        and not module.training
        and not torch.is_grad_enabled()
        and module.conv.stride == (1, 1)
        and x.shape[0] * module.conv.out_channels * x.shape[2] * x.shape[3] > _BAND_MIN_ELEMENTS
    )


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
