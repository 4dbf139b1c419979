"""Training data: image/mask pairs or RGBA cut-outs, with bad pairs listed and skipped."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..constants import STRIDE
from ..masks import read_mask
from .augment import augment_pair, to_tensors
from ..constants import IMAGE_SUFFIXES  # noqa: F401  (also importable from here)

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Sample:
    """One training example: an image and its mask file, or an RGBA cut-out (mask is None)."""

    image: Path
    mask: Path | None = None


@dataclass(frozen=True)
class BadPair:
    """A file left out of training, and why."""

    path: Path
    reason: str


def _image_files(folder: Path) -> dict[str, Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return {p.stem: p for p in files}


def _header(path: Path) -> tuple[tuple[int, int], str]:
    with Image.open(path) as img:
        return img.size, img.mode


def find_samples(folder: str | Path) -> tuple[list[Sample], list[BadPair]]:
    """List the usable samples of a data folder and the bad ones.

    ``folder`` holds either ``images/`` and ``masks/`` (paired by file stem;
    masks are read as greyscale and kept soft, 16-bit ones scaled and 0/1
    ones read as 0/255 when loaded), or RGBA cut-outs whose alpha
    is the label. Missing partners, size mismatches, unreadable files and
    cut-outs without alpha are returned as :class:`BadPair` (and logged), not
    raised.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"data folder not found: {folder}")
    samples: list[Sample] = []
    bad: list[BadPair] = []
    images_dir, masks_dir = folder / "images", folder / "masks"
    if images_dir.is_dir() or masks_dir.is_dir():
        if not (images_dir.is_dir() and masks_dir.is_dir()):
            raise ValueError(f"{folder} needs both images/ and masks/ folders (paired by file name)")
        images, masks = _image_files(images_dir), _image_files(masks_dir)
        for stem in sorted(set(images) | set(masks)):
            if stem not in masks:
                bad.append(BadPair(images[stem], "no mask with this name in masks/"))
                continue
            if stem not in images:
                bad.append(BadPair(masks[stem], "no image with this name in images/"))
                continue
            try:
                (isize, _), (msize, _) = _header(images[stem]), _header(masks[stem])
            except Exception as exc:  # PIL raises several kinds for broken files
                bad.append(BadPair(images[stem], f"unreadable: {exc}"))
                continue
            if isize != msize:
                bad.append(BadPair(images[stem], f"image is {isize[0]}x{isize[1]}, mask {msize[0]}x{msize[1]}"))
                continue
            samples.append(Sample(images[stem], masks[stem]))
    else:
        for path in _image_files(folder).values():
            try:
                _, mode = _header(path)
            except Exception as exc:
                bad.append(BadPair(path, f"unreadable: {exc}"))
                continue
            if mode not in ("RGBA", "LA", "PA") and not (mode == "P" and _has_transparency(path)):
                bad.append(BadPair(path, f"no alpha channel (mode {mode}); give images/ and masks/ instead"))
                continue
            samples.append(Sample(path))
    for item in bad:
        logger.warning("skipping %s: %s", item.path, item.reason)
    if not samples:
        raise ValueError(f"no usable training samples in {folder} ({len(bad)} bad)")
    return samples, bad


def _has_transparency(path: Path) -> bool:
    with Image.open(path) as img:
        return "transparency" in img.info


def split_holdout(samples: list[Sample], fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(train, held-out): a seeded random ``fraction`` of the samples held out for validation."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    order = list(samples)
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(order) * fraction))
    if n_val >= len(order):
        raise ValueError(f"{len(order)} samples are too few to hold out {fraction:.0%} for validation")
    return order[n_val:], order[:n_val]


#: (folder, message) pairs already logged (once per folder and process).
_REPORTED: set[tuple[Path, str]] = set()

_ZERO_ONE = (
    "masks in %s (e.g. %s) hold only the values 0 and 1: training reads them as 0 and 255 "
    "(1 is foreground); save them as 0/255 to silence this"
)
_EIGHT_BIT_IN_16 = (
    "16-bit masks in %s (e.g. %s) hold only values 0..255: training reads them as those "
    "8-bit values, not scaled down; save them as 8-bit to silence this"
)


def _report_once(mask_path: Path, message: str) -> None:
    """Log ``message`` (formatted with the folder and the file's name) once per mask folder."""
    key = (mask_path.parent, message)
    if key not in _REPORTED:
        _REPORTED.add(key)
        logger.warning(message, mask_path.parent, mask_path.name)


def load_sample(sample: Sample) -> tuple[Image.Image, Image.Image]:
    """(RGB image, L mask) of a sample; a cut-out's alpha is its mask.

    Mask files are read by :func:`inspyrenet_lite.masks.read_mask` (16-bit
    scaled, 0/1 masks as 0/255, the latter logged once per mask folder).
    """
    with Image.open(sample.image) as img:
        img.load()
        if sample.mask is None:
            rgba = img.convert("RGBA")
            return rgba.convert("RGB"), rgba.getchannel("A")
        image = img.convert("RGB")
    mask = read_mask(sample.mask)
    if mask.zero_one:
        _report_once(sample.mask, _ZERO_ONE)
    if mask.eight_bit_in_16:
        _report_once(sample.mask, _EIGHT_BIT_IN_16)
    return image, Image.fromarray(mask.pixels)  # uint8 HxW: mode L


class PairDataset(Dataset):
    """Samples as (image, label) tensors at size×size; augmented when ``augment`` is true.

    The augmentation of item i in epoch e is drawn from a generator seeded
    with (seed, e, i): call :meth:`set_epoch` at the start of each epoch.
    """

    def __init__(self, samples: list[Sample], size: int, augment: bool = True, seed: int = 0) -> None:
        if size <= 0 or size % STRIDE:
            raise ValueError(f"training size must be a positive multiple of {STRIDE}, got {size}")
        self.samples = list(samples)
        self.size = size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = load_sample(self.samples[index])
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}") if self.augment else None
        return to_tensors(*augment_pair(image, mask, self.size, rng))
