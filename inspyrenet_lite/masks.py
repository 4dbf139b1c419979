"""Reading masks and maps from files: the one reader for training labels and evaluation.

Every file becomes a uint8 HxW array:

* 8-bit grey stays as it is; colour files give their luma;
* a file with an alpha channel that is not fully opaque (a cut-out, this
  library's default output) gives its alpha: the map it carries; a fully
  opaque one gives its luma as above;
* 16-bit data (``I;16*``, 16-bit PNG/TIFF) and mode ``I`` are *scaled* to
  0..255, not clipped (32896 -> 128), by the rule :mod:`inspyrenet_lite.image_io`
  applies to images;
* a mask whose values are only 0 and 1 (a common export format) is read as 0
  and 255 by :func:`read_mask` (``Mask.zero_one`` says so; the callers log it
  once per dataset), and a 16-bit mask whose values all lie in 0..255 is read
  as those values, not scaled to near zero (``Mask.eight_bit_in_16``, logged
  the same way). An all-zero mask stays all background.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["Mask", "read_grey", "read_mask"]

_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "RGBa", "La", "PA")


@dataclass(frozen=True)
class Mask:
    """A mask file's pixels (uint8 HxW) and whether they were stored as 0/1 (then scaled to 0/255)."""

    pixels: np.ndarray
    zero_one: bool = False
    eight_bit_in_16: bool = False  # 16-bit storage of 0..255 values: read as they are, not scaled down


def _open(path: str | os.PathLike) -> Image.Image:
    from inspyrenet_lite.image_io import ImageLoadError

    try:
        with Image.open(path) as img:
            img.load()
            return img
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(str(path), f"not a readable image ({exc})") from exc


def _to_uint8(img: Image.Image, path: str | os.PathLike) -> np.ndarray:
    """uint8 grey, 16-bit and float data scaled (as images are), a cut-out's alpha, else Pillow's ``L``."""
    if img.mode in _ALPHA_MODES:
        alpha = np.asarray(img.getchannel("A"), dtype=np.uint8)
        if alpha.size and int(alpha.min()) < 255:
            return alpha.copy()
    if img.mode in _INTEGER_MODES or img.mode == "F":
        from inspyrenet_lite.image_io import to_rgb

        img = to_rgb(str(path), img)  # the package's one 16-bit rule; grey in, equal channels out
    return np.asarray(img.convert("L"), dtype=np.uint8)


def _only_zero_one(values: np.ndarray) -> bool:
    return values.size > 0 and int(values.max()) == 1 and int(values.min()) >= 0


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """A map or mask file as a uint8 HxW array (16-bit scaled, a cut-out's alpha, colour as luma), without the 0/1 rule.

    Raises :class:`~inspyrenet_lite.image_io.ImageLoadError` naming the file.
    """
    return _to_uint8(_open(path), path)


def read_mask(path: str | os.PathLike) -> Mask:
    """A label file as uint8 HxW: as :func:`read_grey`, and a mask holding only 0 and 1 becomes 0/255.

    The 0/1 test looks at the stored values (before any 16-bit scaling).
    Raises :class:`~inspyrenet_lite.image_io.ImageLoadError` naming the file.
    """
    img = _open(path)
    raw = np.asarray(img) if img.mode in _INTEGER_MODES else _to_uint8(img, path)
    if _only_zero_one(raw):
        return Mask((raw > 0).astype(np.uint8) * 255, zero_one=True)
    if raw.dtype != np.uint8 and img.mode != "I" and raw.size and 0 <= int(raw.min()) and int(raw.max()) <= 255:
        # 8-bit values in a 16-bit file (a common export): scaling would make every pixel background.
        return Mask(raw.astype(np.uint8), eight_bit_in_16=True)
    return Mask(raw if raw.dtype == np.uint8 else _to_uint8(img, path))
