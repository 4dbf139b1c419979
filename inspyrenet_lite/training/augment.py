"""The authors' training augmentation (TRAINING.md section 2), with Pillow.

Every random draw comes from the ``random.Random`` passed in, so a sample's
augmentation is fixed by (seed, epoch, index): runs are reproducible and a
resumed run sees exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image, ImageEnhance
from ..constants import IMAGENET_MEAN, IMAGENET_STD



def _centre_crop_or_pad(img: Image.Image, size: int) -> Image.Image:
    """Centre ``img`` on a black size×size canvas (cropping what overflows)."""
    canvas = Image.new(img.mode, (size, size), 0)
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return canvas


def augment_pair(
    image: Image.Image, mask: Image.Image, size: int, rng: random.Random | None
) -> tuple[Image.Image, Image.Image]:
    """Resize to size×size, then (with ``rng``) the authors' random scale, flip, rotation and colour.

    ``rng=None`` gives the plain resize used for validation.
    """
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    mask = mask.resize((size, size), Image.Resampling.NEAREST)
    if rng is None:
        return image, mask
    if rng.random() < 0.5:  # scale s ~ U[0.75, 1.25), Pillow's default filter (bicubic)
        side = int(size * rng.uniform(0.75, 1.25))
        image = _centre_crop_or_pad(image.resize((side, side), Image.Resampling.BICUBIC), size)
        mask = _centre_crop_or_pad(mask.resize((side, side), Image.Resampling.BICUBIC), size)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:  # an integer angle in -10..9, expanded, nearest, black fill
        angle = rng.randrange(-10, 10)
        image = _centre_crop_or_pad(image.rotate(angle, Image.Resampling.NEAREST, expand=True), size)
        mask = _centre_crop_or_pad(mask.rotate(angle, Image.Resampling.NEAREST, expand=True), size)
    enhancers = [ImageEnhance.Contrast, ImageEnhance.Sharpness, ImageEnhance.Brightness]
    rng.shuffle(enhancers)
    for enhancer in enhancers:
        if rng.random() < 0.5:
            image = enhancer(image).enhance(rng.uniform(1.0, 1.1))
    return image, mask


def to_tensors(image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, S, S) ImageNet-normalised image and (1, S, S) label in [0, 1], kept soft."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    y = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None]
    return (x - mean) / std, y
