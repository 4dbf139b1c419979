"""Backbones from timm, adapted to the reference's behaviour; each returns five maps x1..x5.

The maps have strides 4, 4, 8, 16, 32. See INSPYRENET.md section 2 for what the
published checkpoints expect and which timm settings reproduce it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse
from torch import nn


class _PadFirstSwinBlock(SwinTransformerBlock):
    """Swin block that pads to whole windows *before* the cyclic shift, as the reference does.

    timm shifts first and pads afterwards, which gives different windows as soon
    as a side is not a multiple of the window size. Attention masks are built
    on the padded size and cached per size.
    """

    def _shift_mask(self, hp: int, wp: int, like: torch.Tensor) -> torch.Tensor | None:
        if not any(self.shift_size):
            return None
        cache: dict = self.__dict__.setdefault("_mask_cache", {})
        key = (hp, wp, like.device, like.dtype)
        mask = cache.get(key)
        if mask is None:
            mask = self.get_attn_mask(like.new_empty(1, hp, wp, 1))
            cache.clear()  # keep only the latest size: one image size at a time is the common case
            cache[key] = mask
        return mask

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        wh, ww = self.window_size
        pad_h, pad_w = (-h) % wh, (-w) % ww
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        shift = any(self.shift_size)
        if shift:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        windows = window_partition(x, self.window_size).view(-1, self.window_area, c)
        windows = self.attn(windows, mask=self._shift_mask(hp, wp, x))
        x = window_reverse(windows.view(-1, wh, ww, c), self.window_size, hp, wp)
        if shift:
            x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
        if pad_h or pad_w:
            x = x[:, :h, :w, :].contiguous()
        return x


class SwinBackbone(nn.Module):
    """Swin Transformer (timm) returning the patch embedding and the four pre-merge stage outputs.

    Each stage output passes through its own LayerNorm ``norm0..norm3``.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        depths: Sequence[int] = (2, 2, 18, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32),
        window_size: int = 12,
        img_size: int = 384,
    ) -> None:
        super().__init__()
        swin = timm.models.swin_transformer.SwinTransformer(
            img_size=img_size,
            patch_size=4,
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_size=window_size,
            always_partition=True,
            strict_img_size=False,
            num_classes=0,
            drop_path_rate=0.0,
        )
        for stage in swin.layers:
            for block in stage.blocks:
                block.__class__ = _PadFirstSwinBlock
        self.patch_embed = swin.patch_embed
        self.layers = swin.layers
        widths = [embed_dim * 2**i for i in range(len(depths))]
        for i, width in enumerate(widths):
            self.add_module(f"norm{i}", nn.LayerNorm(width))
        self.out_channels = [embed_dim] + widths

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)  # (B, H/4, W/4, C)
        outs = [x.permute(0, 3, 1, 2).contiguous()]
        for i, stage in enumerate(self.layers):
            x = stage(x)
            y = getattr(self, f"norm{i}")(x)
            outs.append(y.permute(0, 3, 1, 2).contiguous())
        return outs


def _res2net_dilation(stage: int, block: int) -> int:
    """Dilation of the 3x3 split convolutions of the reference Res2Net (its strides stay 2).

    2 in every block of stage 3; 4, 8, 16 in the blocks of stage 4. A quirk the
    published weights depend on.
    """
    if stage == 3:
        return 2
    if stage == 4:
        return 4 * 2**block
    return 1


class Res2NetBackbone(nn.Module):
    """Res2Net-50 v1b 26w×4s (timm ``res2net50d``) with the reference's dilated split convolutions."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        net = timm.create_model("res2net50d", pretrained=False, num_classes=0, layers=list(layers))
        for stage in (3, 4):
            for index, block in enumerate(getattr(net, f"layer{stage}")):
                dilation = _res2net_dilation(stage, index)
                for conv in block.convs:
                    conv.dilation = (dilation, dilation)
                    conv.padding = (dilation, dilation)
        self.conv1, self.bn1, self.act1, self.maxpool = net.conv1, net.bn1, net.act1, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = [64, 256, 512, 1024, 2048]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        outs = [x]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build a backbone by name ('swinb' or 'res2net50'); kwargs override its hyper-parameters."""
    if name == "swinb":
        return SwinBackbone(**kwargs)
    if name == "res2net50":
        return Res2NetBackbone(**kwargs)
    raise ValueError(f"unknown backbone {name!r}; expected 'swinb' or 'res2net50'")
