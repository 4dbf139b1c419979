"""Resize rules and tensor conversion: from a decoded RGB image to the network's input, and its map back.

The road of one image: ``image_io`` decodes it, :func:`own_size` (or the
model's base size) picks the network size, :func:`to_tensor` makes the
normalised input, and :func:`map_to_image_size` brings the network's map
back to the image's own size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .constants import IMAGENET_MEAN, IMAGENET_STD, STRIDE

#: Default cap on the shorter side of high-resolution (and dynamic) passes.
DEFAULT_HR_SHORT_SIDE = 1280
#: Default cap on the longer side of those passes (the axial attention is
#: quadratic in a side): above it the base-size pass is used instead.
DEFAULT_HR_LONG_SIDE = 2560
#: Default cap on the pixels of those passes (memory grows about 1 GB per
#: megapixel of the pass, see README "Limits"): above it the base-size pass is used.
DEFAULT_HR_MAX_PIXELS = 4_000_000

_MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)


def own_size(width: int, height: int, short_side: int = DEFAULT_HR_SHORT_SIDE) -> tuple[int, int]:
    """The network input size (H, W) for an image at its own resolution.

    The shorter side is capped at ``short_side`` (keeping the aspect ratio),
    then both sides are rounded to the nearest multiple of 32 (ties to even,
    at least 32).
    This is the size of the high-resolution pass of pyramid blending and of
    ``resize="dynamic"``.
    """
    scale = min(1.0, short_side / min(width, height))
    return (_round32(height * scale), _round32(width * scale))


def _round32(x: float) -> int:
    # Python's round() (ties to even), as the reference's dynamic resize rounds:
    # a 400-pixel side becomes 384, not 416.
    return max(STRIDE, round(x / STRIDE) * STRIDE)


def to_tensor(rgb: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """PIL bilinear resize to ``size`` (H, W), /255, ImageNet mean/std: a CHW float32 tensor."""
    height, width = size
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    arr = torch.from_numpy(np.asarray(rgb, dtype=np.float32).copy()).permute(2, 0, 1)
    return (arr / 255.0 - _MEAN) / _STD


def map_to_image_size(pred: torch.Tensor, width: int, height: int) -> np.ndarray:
    """One network map (1, 1, h, w) resized (bilinear, corners aligned) to ``width`` x ``height``,
    clamped to [0, 1]: a float32 HxW numpy array."""
    full = F.interpolate(pred, size=(height, width), mode="bilinear", align_corners=True)
    return full[0, 0].clamp_(0.0, 1.0).cpu().numpy()
