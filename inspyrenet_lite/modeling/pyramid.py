"""Parameter-free image-pyramid operations: expand, reduce, reconstruct, and transition masks."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .layers import float32_region, is_tracing

# 1-D Gaussian (sigma = 1, 7 taps, normalised); the 2-D kernel is its outer product.
_GAUSS_1D = (0.00443305, 0.05400558, 0.24203623, 0.39905028, 0.24203623, 0.05400558, 0.00443305)
_PAD = 3


@functools.lru_cache(maxsize=32)
def _gaussian_2d(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # An ordinary tensor even when first asked for under inference_mode: a cached
    # inference tensor would break every later training step ("cannot be saved for backward").
    with torch.inference_mode(False):
        g = torch.tensor(_GAUSS_1D, dtype=torch.float64)
        return torch.outer(g, g).to(device=device, dtype=dtype)[None, None]


def _blur(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Reflect-pad by 3 and convolve every channel with ``scale`` * G."""
    b, c, h, w = x.shape
    dtype = torch.promote_types(x.dtype, torch.float32)  # saliency logits stay float32 under autocast
    # While tracing, build the kernel afresh: a cached tensor made under the tracer's
    # fake-tensor mode would poison every later eager call.
    kernel = _gaussian_2d.__wrapped__(x.device, dtype) if is_tracing() else _gaussian_2d(x.device, dtype)
    if scale != 1.0:
        kernel = kernel * scale
    with float32_region(x):
        y = F.pad(x.to(dtype).reshape(b * c, 1, h, w), (_PAD,) * 4, mode="reflect")
        return F.conv2d(y, kernel).reshape(b, c, h, w)


def expand(x: torch.Tensor) -> torch.Tensor:
    """Double the size: zero-interleave, then blur with 4·G."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, 4.0)


def reduce(x: torch.Tensor) -> torch.Tensor:
    """Halve the size: blur with G, keep every second row and column from the first."""
    return _blur(x)[:, :, ::2, ::2]


def reconstruct(x: torch.Tensor, laplacian: torch.Tensor) -> torch.Tensor:
    """One pyramid step up: expand(x) plus the Laplacian detail resized to match."""
    up = expand(x)
    if laplacian.shape[-2:] != up.shape[-2:]:
        laplacian = F.interpolate(laplacian, size=up.shape[-2:], mode="bilinear", align_corners=True)
    return up + laplacian


@functools.lru_cache(maxsize=None)
def ellipse_half_widths(k: int) -> tuple[int, ...]:
    """Half-width of each row of a k x k ellipse, in the way OpenCV's MORPH_ELLIPSE rasterises it."""
    r = k // 2
    widths = []
    for dy in range(-r, r + 1):
        widths.append(int(math.floor(r * math.sqrt((r * r - dy * dy) / (r * r)) + 0.5)) if r else 0)
    return tuple(widths)


def _dilate_ellipse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Maximum over the k x k ellipse around each pixel, counting only pixels inside the image.

    Separable: one horizontal max-pool per distinct row half-width, then a max
    over the row offsets. Max-pool pads with -inf, so borders are cut, not filled.
    """
    widths = ellipse_half_widths(k)
    r = k // 2
    h = x.shape[-2]
    row_max = {
        w: F.max_pool2d(x, kernel_size=(1, 2 * w + 1), stride=1, padding=(0, w)) for w in set(widths)
    }
    padded = {w: F.pad(m, (0, 0, r, r), value=-math.inf) for w, m in row_max.items()}
    out = None
    for i, w in enumerate(widths):
        shifted = padded[w][..., i : i + h, :]
        out = shifted if out is None else torch.maximum(out, shifted)
    return out


def transition(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Hard mask of the uncertain band: 1 where dilate_k(σ) − erode_k(σ) > 0.5."""
    s = torch.sigmoid(logits)
    band = _dilate_ellipse(s, k) + _dilate_ellipse(-s, k)
    return (band > 0.5).to(logits.dtype)
