"""Small models and synthetic data for the training tests."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from inspyrenet_lite import InSPyReNet

TINY_SWIN = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4)


def tiny_model(seed: int = 0, size: int = 64, depth: int = 16) -> InSPyReNet:
    """A reduced InSPyReNet (SwinB layout, ~0.5 M parameters) for CPU tests."""
    torch.manual_seed(seed)
    return InSPyReNet("swinb", depth=depth, base_size=size, backbone_args=TINY_SWIN)


def soft_blob(rng: np.random.Generator, size: int) -> Image.Image:
    """An 'L' mask: a random ellipse or rounded blob with a blurred (soft) edge, 0..255."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = rng.uniform(0.3, 0.7, 2)
    rx, ry = rng.uniform(0.15, 0.3, 2)
    angle = rng.uniform(0, math.pi)
    dx, dy = xx - cx, yy - cy
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / rx
    v = (-dx * math.sin(angle) + dy * math.cos(angle)) / ry
    wobble = 1 + 0.15 * np.sin(3 * np.arctan2(v, u) + rng.uniform(0, 6))
    inside = (u * u + v * v) < wobble**2
    mask = Image.fromarray((inside * 255).astype(np.uint8))
    return mask.filter(ImageFilter.GaussianBlur(size / 40))


def photo_crops(images_dir: Path) -> list[np.ndarray]:
    """RGB float arrays of the sample photos (``images_dir``), for textured backgrounds and objects."""
    out = []
    for name in ("astronaut.png", "cat.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg"):
        with Image.open(images_dir / name) as img:
            out.append(np.asarray(img.convert("RGB").resize((256, 256)), dtype=np.float32))
    return out


def _crop(rng: np.random.Generator, photos: list[np.ndarray], size: int) -> np.ndarray:
    photo = photos[rng.integers(len(photos))]
    scale = int(rng.integers(size, 256))
    img = Image.fromarray(photo.astype(np.uint8)).resize((scale, scale))
    x, y = rng.integers(0, scale - size + 1, 2)
    return np.asarray(img, dtype=np.float32)[y : y + size, x : x + size]


def synthetic_pair(rng: np.random.Generator, photos: list[np.ndarray], size: int, tint=(1.0, 0.55, 0.35)):
    """(RGB image, L mask): a tinted photo-textured blob with a soft edge on a photo background."""
    mask = soft_blob(rng, size)
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255
    background = _crop(rng, photos, size) * 0.8
    obj = np.clip(_crop(rng, photos, size) * np.array(tint, dtype=np.float32) + 60, 0, 255)
    image = obj * alpha + background * (1 - alpha)
    return Image.fromarray(image.astype(np.uint8)), mask


def write_pairs(folder: Path, n: int, photos, size: int, seed: int, **kwargs) -> Path:
    """Write n synthetic pairs as folder/images/*.jpg + folder/masks/*.png."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, mask = synthetic_pair(rng, photos, size, **kwargs)
        image.save(folder / "images" / f"{i:04d}.png")
        mask.save(folder / "masks" / f"{i:04d}.png")
    return folder


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """``count`` torch intra-op threads inside the block, the caller's count after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread() -> contextlib.AbstractContextManager[None]:
    """Context for CPU training tests: one intra-op thread (the 2-core CI shares its cores with
    pytest's own work; more threads only add contention for these small tensors)."""
    return torch_threads(1)
