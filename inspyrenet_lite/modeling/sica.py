"""Scale-invariant context attention (SICA): the decoder stage that predicts one Laplacian level."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import ConvBN, float32_region, resize


class SICA(nn.Module):
    """Attention over a few probability-weighted context vectors (foreground, background, uncertain).

    Args:
        in_channels: channels of the input feature map.
        channels: decoder width d.
        working_size: (h, w) at which the context vectors are pooled. The
            reference fixes it from the model's base size (base / 2**stage),
            not from the input, and the published weights depend on that.
        lmap_in: whether the coarser Laplacian map is also used as guidance.
    """

    def __init__(
        self, in_channels: int, channels: int, working_size: tuple[int, int], lmap_in: bool
    ) -> None:
        super().__init__()
        self.channels = channels
        self.working_size = (int(working_size[0]), int(working_size[1]))
        self.lmap_in = lmap_in
        self.conv_query = nn.Sequential(
            ConvBN(in_channels, channels, 3, relu=True), ConvBN(channels, channels, 3, relu=True)
        )
        self.conv_key = nn.Sequential(
            ConvBN(in_channels, channels, 1, relu=True), ConvBN(channels, channels, 1, relu=True)
        )
        self.conv_value = nn.Sequential(
            ConvBN(in_channels, channels, 1, relu=True), ConvBN(channels, channels, 1, relu=True)
        )
        self.conv_out1 = ConvBN(channels, channels, 3, relu=True)
        self.conv_out2 = ConvBN(in_channels + channels, channels, 3, relu=True)
        self.conv_out3 = ConvBN(channels, channels, 3, relu=True)
        self.conv_out4 = ConvBN(channels, 1, 1)
        self.threshold = nn.Parameter(torch.tensor([0.5]))
        self.lthreshold = nn.Parameter(torch.tensor([0.5])) if lmap_in else None

    def _guidance(
        self, smap: torch.Tensor, lmap: torch.Tensor | None, size: tuple[int, int]
    ) -> torch.Tensor:
        p = torch.sigmoid(resize(smap.float(), size)) - self.threshold
        maps = [p.clamp(0, 1), (-p).clamp(0, 1), self.threshold - p.abs()]
        if self.lthreshold is not None and lmap is not None:
            lp = torch.sigmoid(resize(lmap.float(), size)) - self.lthreshold
            maps += [lp.clamp(0, 1), (-lp).clamp(0, 1)]
        return torch.cat(maps, dim=1)

    def _context(self, x: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
        """Probability-weighted sums of the features at the working size: (B, C, ctx, 1)."""
        b, c = x.shape[:2]
        ctx = prob.shape[1]
        sh, sw = self.working_size
        # Row-major reinterpretation of (B, C, S, S) as (B, S*S, C), no transpose: a quirk
        # of the reference that the trained weights expect.
        feats = resize(x, (sh, sw)).reshape(b, sh * sw, c)
        weights = resize(prob, (sh, sw)).reshape(b, ctx, sh * sw)
        return torch.bmm(weights, feats).transpose(1, 2).unsqueeze(3)

    def forward(
        self,
        x: torch.Tensor,
        smap: torch.Tensor,
        lmap: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, Laplacian logits). ``size``: first resize x to it (bilinear).

        Resizing here rather than in the caller lets the full-size input be
        freed as soon as it has been used, instead of living for the whole call.
        """
        if size is not None:
            x = resize(x, size)
        b, _, h, w = x.shape
        d = self.channels
        query = self.conv_query(x)
        # The context sums run over every pixel of the working size and reach ~1e5:
        # beyond float16's range. This attention step stays in float32 under autocast;
        # its convolutions act on ctx x 1 "images" and cost nothing.
        with float32_region(x):
            context = self._context(x.float(), self._guidance(smap, lmap, (h, w)))
            ctx = context.shape[2]
            key = self.conv_key(context).reshape(b, d, ctx)
            value = self.conv_value(context).reshape(b, d, ctx)
            del context
            # Full-resolution intermediates are dropped as soon as they are used: at the
            # finest stage of a 1024 model each one is 64 channels x 1M pixels.
            query = query.float().reshape(b, d, h * w).transpose(1, 2)
            sim = torch.softmax(torch.bmm(query, key) / math.sqrt(d), dim=-1)
            del query
            # r = sim · valueᵀ, computed transposed as value · simᵀ so that it comes out
            # as (B, d, h·w): the map's own layout, with no transposing copy.
            r = torch.bmm(value, sim.transpose(1, 2)).reshape(b, d, h, w)
            del sim
        r = self.conv_out1(r.to(x.dtype))
        # conv_out2 acts on cat[x, r]; ConvBN sums the two halves' convolutions
        # instead of materialising the concatenation (128 channels x 1M pixels at
        # the finest stage of a 1024 model).
        y = self.conv_out2(x, r)
        del x, r
        y = self.conv_out3(y)
        return y, self.conv_out4(y)
