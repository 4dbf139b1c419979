"""Backbones from timm, adapted to the reference's behaviour; each returns five maps x1..x5.

The maps have strides 4, 4, 8, 16, 32. See INSPYRENET.md section 2 for what the
published checkpoints expect and which timm settings reproduce it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import timm
import torch
from timm.models.swin_transformer import SwinTransformerBlock, WindowAttention
from torch import nn

from .layers import is_tracing


def _add(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """fresh + other, written into ``fresh`` (a temporary) when that keeps the result's dtype.

    Float addition is commutative, so the values are those of ``other + fresh``.
    Under autocast a bf16/fp16 ``fresh`` plus a float32 ``other`` promotes to
    float32, and then a new tensor is needed.
    """
    # promote_types on the dtypes, not result_type on the tensors: torch.compile traces it without a graph break.
    if fresh.dtype == torch.promote_types(fresh.dtype, other.dtype):
        return fresh.add_(other)
    return fresh + other


def _onednn_linear_applies(layer: nn.Linear, x: torch.Tensor) -> bool:
    """oneDNN for float32 Linear layers in eager CPU inference (not while tracing or training).

    PyTorch's float32 matrix products go through MKL, which is slow on AMD CPUs;
    oneDNN's kernels gave about 1.6-2x on the Swin blocks' Linear shapes there
    (see README), with results within float32 rounding of the BLAS path.
    """
    return (
        _ONEDNN_LINEAR
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and layer.weight.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not is_tracing()
    )


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, through oneDNN where :func:`_onednn_linear_applies`."""
    if not _onednn_linear_applies(layer, x):
        return layer(x)
    flat = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(flat, layer.weight, layer.bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


# Opt-in until the end-to-end gain and the parity suite have been measured with it on.
_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and os.environ.get("INSPYRENET_LITE_ONEDNN_LINEAR", "0") == "1"


def _compiling_for_this_process() -> bool:
    """torch.compile tracing a graph to run here, as opposed to an export (torch.export, ONNX) to run elsewhere."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.compiler.is_compiling() and not exporting() and not torch.onnx.is_in_onnx_export()


def _plain_tensors() -> contextlib.AbstractContextManager:
    """Build cached tensors as ordinary tensors even when called under inference_mode.

    An inference tensor in a cache would break a later training step on the
    same model ("Inference tensors cannot be saved for backward").
    """
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode(False))
    stack.enter_context(torch.no_grad())
    return stack


def _relative_position_bias(attn: WindowAttention) -> torch.Tensor:
    """timm's bias gather, kept between calls while the table is unchanged and no gradient is wanted."""
    table = attn.relative_position_bias_table
    if torch.is_grad_enabled() or is_tracing() or table.is_inference():  # inference tensors have no version counter
        return attn._get_rel_pos_bias()
    key = (table.data_ptr(), table._version, table.device)
    cached = attn.__dict__.get("_bias_cache")
    if cached is None or cached[0] != key:
        with _plain_tensors():
            cached = (key, attn._get_rel_pos_bias())
        attn.__dict__["_bias_cache"] = cached
    return cached[1]


# Opt-in until a GPU has measured it (bench/gpu.py times both): on the CPU it was slower in bf16 at every
# Swin stage and in float32 at stage 3 (README, "Which precision, backend and compile").
_SDPA_ATTENTION = os.environ.get("INSPYRENET_LITE_SDPA_ATTENTION", "0") == "1"


def _window_attention_sdpa(attn: WindowAttention, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The window attention through ``scaled_dot_product_attention``: bias and shift mask as one additive mask.

    Shifted windows fold the window index into the head axis, so the (windows, heads) mask broadcasts over
    the images of the batch and the inputs stay 4-D (what the fused CUDA kernels take).
    """
    b, n, _ = x.shape
    heads = attn.num_heads
    q, k, v = _linear(attn.qkv, x).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    bias = _relative_position_bias(attn)  # (1, heads, n, n)
    if mask is not None:
        windows = mask.shape[0]
        bias = (bias + mask.unsqueeze(1)).reshape(1, windows * heads, n, n)
        q, k, v = (t.reshape(-1, windows * heads, n, t.shape[-1]) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=attn.scale)
    return _linear(attn.proj, out.reshape(b, heads, n, -1).transpose(1, 2).reshape(b, n, -1))


def _window_attention(attn: WindowAttention, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """timm's WindowAttention (unfused path) with the bias and mask added in place.

    The same operations in the same order, so float32 results are bitwise
    equal; in place only where the dtypes already agree (under autocast the
    scores are bf16/fp16 and the float32 bias promotes them, as in timm).
    """
    # Exports keep the explicit product (every ONNX opset has it); torch.compile takes either.
    if _SDPA_ATTENTION and (not is_tracing() or _compiling_for_this_process()):
        return _window_attention_sdpa(attn, x, mask)
    b, n, c = x.shape
    heads = attn.num_heads
    q, k, v = _linear(attn.qkv, x).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    scores = (q * attn.scale) @ k.transpose(-2, -1)
    scores = _add(scores, _relative_position_bias(attn))
    if mask is not None:
        windows = mask.shape[0]
        grouped = scores.view(-1, windows, heads, n, n)
        scores = _add(grouped, mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, n, n)
    out = attn.softmax(scores) @ v
    return _linear(attn.proj, out.transpose(1, 2).reshape(b, n, -1))


class _PadFirstSwinBlock(SwinTransformerBlock):
    """Swin block that pads to whole windows *before* the cyclic shift, as the reference does.

    timm shifts first and pads afterwards, which gives different windows as soon
    as a side is not a multiple of the window size. Attention masks are built
    on the padded size.

    Padding, shift and window partition are one row gather (and their inverse
    another), with indices cached per input size: the values are those of
    pad + roll + partition, without three full-size copies each way.
    """

    def _cached(self, key: tuple, build: Any) -> Any:
        cache: dict = self.__dict__.setdefault("_size_cache", {})
        if is_tracing():
            # torch.compile takes the eager run's indices as constants when there are some (inductor 2.14
            # fails on the index arithmetic itself at 384 with window 12); exporters compute their own.
            if _compiling_for_this_process():
                value = cache.get(key)
                if value is not None:
                    return value
            return build()
        value = cache.get(key)
        if value is None:
            # Returned from the local name, never re-read: another thread sharing the
            # model may clear the cache in between. A race only means building twice.
            with _plain_tensors():
                value = build()
            if len(cache) >= 8:  # one or a few image sizes at a time is the common case
                cache.clear()
            cache[key] = value
        return value

    def _window_indices(
        self, b: int, h: int, w: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(gather, padding, scatter) row indices for a (b, h, w, C) map flattened to rows.

        gather: for each row of the windowed, padded, shifted layout, its source row
        (padding rows point anywhere and are zeroed afterwards); padding: a (rows, 1)
        mask of those rows, or None; scatter: for each source row, where it sits in
        the windowed layout. Closed-form index arithmetic only (no boolean indexing),
        so the same code traces to a graph of static shapes.
        """
        wh, ww = self.window_size
        sh, sw = self.shift_size
        hp, wp = h + (-h) % wh, w + (-w) % ww
        # torch.roll(x, -s)[i] == x[(i + s) % n]
        rows = (torch.arange(hp) + sh) % hp
        cols = (torch.arange(wp) + sw) % wp
        rows = rows.view(hp // wh, 1, wh, 1).expand(hp // wh, wp // ww, wh, ww).reshape(-1)
        cols = cols.view(1, wp // ww, 1, ww).expand(hp // wh, wp // ww, wh, ww).reshape(-1)
        inside = (rows < h) & (cols < w)
        source = torch.where(inside, rows * w + cols, 0)
        gather = (source.view(1, -1) + torch.arange(b).view(b, 1) * (h * w)).reshape(-1)
        padding = None
        if hp != h or wp != w:  # some windows hold padding rows
            padding = (~inside).view(1, -1, 1).expand(b, -1, 1).reshape(-1, 1)
        # Source (i, j) sits at padded, shifted position ((i - sh) % hp, (j - sw) % wp).
        i = ((torch.arange(h) - sh) % hp).view(h, 1)
        j = ((torch.arange(w) - sw) % wp).view(1, w)
        position = ((i // wh) * (wp // ww) + j // ww) * (wh * ww) + (i % wh) * ww + j % ww
        scatter = (position.view(1, -1) + torch.arange(b).view(b, 1) * (hp * wp)).reshape(-1)
        return (
            gather.to(device),
            None if padding is None else padding.to(device),
            scatter.to(device),
        )

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        wh, ww = self.window_size
        hp, wp = h + (-h) % wh, w + (-w) % ww
        gather, padding, scatter = self._cached(
            ("index", b, h, w, x.device), lambda: self._window_indices(b, h, w, x.device)
        )
        windows = x.reshape(b * h * w, c).index_select(0, gather)
        if padding is not None:
            windows.masked_fill_(padding, 0)
        mask = None
        if any(self.shift_size):
            mask = self._cached(
                ("mask", hp, wp, x.device, x.dtype), lambda: self.get_attn_mask(x.new_empty(1, hp, wp, 1))
            )
        windows = _window_attention(self.attn, windows.view(-1, self.window_area, c), mask)
        return windows.reshape(-1, c).index_select(0, scatter).view(b, h, w, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if self.training and torch.is_grad_enabled():
            # timm's block as written, with stochastic depth (TRAINING.md 1: active in
            # training); no in-place sums, so autograd keeps what it needs.
            x = x + self.drop_path1(self._attn(self.norm1(x)))
            x = x.reshape(b, -1, c)
            x = x + self.drop_path2(self.mlp(self.norm2(x)))
            return x.reshape(b, h, w, c)
        # timm's block (no drop path at inference) with the residual sums in place.
        x = _add(self._attn(self.norm1(x)), x).reshape(b, -1, c)
        return _add(self._mlp(self.norm2(x)), x).reshape(b, h, w, c)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        # timm's Mlp at inference (its dropouts are identities then) with oneDNN Linear layers.
        mlp = self.mlp
        if mlp.training:
            return mlp(x)
        return _linear(mlp.fc2, mlp.norm(mlp.act(_linear(mlp.fc1, x))))


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

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint every Swin block in training (timm's per-stage flag); off by default."""
        for stage in self.layers:
            stage.grad_checkpointing = enable

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth rising linearly from 0 to ``rate`` over the blocks (timm's rule).

        Only active in training mode; the authors train SwinB with 0.2.
        """
        from timm.layers import DropPath

        blocks = [block for stage in self.layers for block in stage.blocks]
        for i, block in enumerate(blocks):
            p = rate * i / max(len(blocks) - 1, 1)
            block.drop_path1 = DropPath(p) if p > 0 else nn.Identity()
            block.drop_path2 = DropPath(p) if p > 0 else nn.Identity()

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
