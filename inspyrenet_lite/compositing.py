"""Turning a saliency map into the output people asked for.

Output types (the ``type`` argument of ``Remover.process`` and ``--type``):

* ``"rgba"``: the image with the map as its alpha channel; the colour of
  soft edges is re-estimated (:func:`estimate_foreground`) so that hair and
  blurred borders do not keep the old background's colour.
* ``"map"``: the map itself, a grey image (0 background, 255 foreground).
* ``"green"``, ``"white"``, an RGB tuple such as ``(255, 0, 0)``, a
  ``"#rrggbb"`` string or ``"r,g,b"``: the foreground over that colour.
* ``"blur"``: the foreground over a blurred copy of the image.
* ``"overlay"``: the foreground tinted translucent green with its outline
  drawn, to inspect a mask.
* a background image (a path or a PIL image): the foreground over that
  image, scaled to cover the whole frame and centre-cropped.

``threshold`` turns the map into a hard 0/1 mask (values above it become
foreground) and ``reverse`` swaps foreground and background; both apply to
every output type.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

logger = logging.getLogger(__name__)

NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "green": (0, 255, 0),
    "white": (255, 255, 255),
}
BASIC_TYPES = ("rgba", "map", "blur", "overlay")

_HEX_RE = re.compile(r"^#?([0-9a-fA-F]{6})$")
_TRIPLE_RE = re.compile(r"^\[?\(?\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)?\]?$")
_OVERLAY_TINT = np.array([0.0, 255.0, 0.0], dtype=np.float32)
_OVERLAY_EDGE = np.array([255.0, 0.0, 0.0], dtype=np.float32)


@dataclass(frozen=True)
class OutputSpec:
    """A parsed output type: ``kind`` is one of rgba, map, colour, blur,
    overlay, image; ``colour`` and ``background`` are set for the last two
    kinds that need them."""

    kind: str
    colour: tuple[int, int, int] | None = None
    background: Image.Image | None = None

    @property
    def has_alpha(self) -> bool:
        """Whether results of this type carry an alpha channel."""
        return self.kind == "rgba"


OutputType = str | Sequence[int] | Image.Image | os.PathLike | OutputSpec


def parse_output_type(type: OutputType, max_pixels: int | None = None) -> OutputSpec:
    """Parse an output type; ``ValueError`` that lists the choices if it is none of them.

    A background image given by path is decoded here, once, so a bad path
    fails before any image is processed. An ``OutputSpec`` is returned as is.
    """
    if isinstance(type, OutputSpec):
        return type
    if isinstance(type, Image.Image):
        return OutputSpec("image", background=type.convert("RGB"))
    if isinstance(type, (tuple, list)):
        return OutputSpec("colour", colour=_check_colour(type))
    if isinstance(type, os.PathLike):
        return OutputSpec("image", background=_load_background(type, max_pixels))
    if not isinstance(type, str):
        raise ValueError(f"unsupported output type {type!r}; {_CHOICES}")
    text = type.strip()
    lowered = text.lower()
    if lowered in BASIC_TYPES:
        return OutputSpec(lowered)
    if lowered in NAMED_COLOURS:
        return OutputSpec("colour", colour=NAMED_COLOURS[lowered])
    hex_match = _HEX_RE.match(text)
    if hex_match and (text.startswith("#") or not Path(text).exists()):
        value = int(hex_match.group(1), 16)
        return OutputSpec("colour", colour=((value >> 16) & 255, (value >> 8) & 255, value & 255))
    triple = _TRIPLE_RE.match(text)
    if triple:
        return OutputSpec("colour", colour=_check_colour([int(g) for g in triple.groups()]))
    if Path(text).is_file():
        return OutputSpec("image", background=_load_background(text, max_pixels))
    if Path(text).suffix.lower() in Image.registered_extensions():
        raise ValueError(f"background image {text!r} not found; check the path, or {_CHOICES}")
    raise ValueError(f"unknown output type {type!r}; {_CHOICES}")


_CHOICES = (
    "choose 'rgba', 'map', 'green', 'white', 'blur', 'overlay', a colour "
    "((r, g, b), '#rrggbb' or 'r,g,b') or the path of a background image"
)


def _check_colour(values: Sequence[int]) -> tuple[int, int, int]:
    if len(values) != 3 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in values
    ):
        raise ValueError(f"a colour must be three integers in 0..255 (r, g, b), got {values!r}")
    return (int(values[0]), int(values[1]), int(values[2]))


def _load_background(path: str | os.PathLike, max_pixels: int | None) -> Image.Image:
    from inspyrenet_lite.image_io import load_image  # local: keeps the modules independent

    return load_image(path, max_pixels=max_pixels).rgb


def apply_threshold_reverse(alpha: np.ndarray, threshold: float | None, reverse: bool) -> np.ndarray:
    """Hard-mask ``alpha`` (values above ``threshold`` -> 1, others -> 0) and/or invert it."""
    if threshold is not None:
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        alpha = (alpha > float(threshold)).astype(np.float32)
    if reverse:
        alpha = 1.0 - alpha
    return alpha.astype(np.float32, copy=False)


def alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """The grey map: ``alpha * 255`` truncated to uint8, as the reference does."""
    return (np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.uint8)


def box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)x(2r+1) window of an HxW or HxWxC array, counting only
    pixels inside the image (no padding value leaks in at the borders).

    Separable running sums make it O(1) per pixel whatever the radius.
    """
    out = x.astype(np.float32, copy=False)
    for axis in (0, 1):
        out = _box_mean_1d(out, radius, axis)
    return out


def _box_mean_1d(x: np.ndarray, radius: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    x = np.moveaxis(x, axis, 0)
    idx = np.arange(n)
    count = (np.minimum(idx + radius + 1, n) - np.maximum(idx - radius, 0)).reshape((n,) + (1,) * (x.ndim - 1))
    if radius <= 8:
        # Narrow windows: adding the 2r + 1 shifted copies is cheaper than running sums.
        total = x.copy()
        for shift in range(1, min(radius, n - 1) + 1):
            total[shift:] += x[:-shift]
            total[:-shift] += x[shift:]
        total /= count.astype(np.float32)
        return np.moveaxis(total, 0, axis)
    # Running sums padded so that window i is csum[i + 2r + 1] - csum[i]: r
    # zeros before (the window starts before the image) and r copies of the
    # total after (it ends after the image). Plain slices, no gathers.
    csum = np.empty((n + 2 * radius + 1,) + x.shape[1:], dtype=np.float64)
    csum[: radius + 1] = 0.0
    np.cumsum(x, axis=0, dtype=np.float64, out=csum[radius + 1 : radius + 1 + n])
    csum[radius + 1 + n :] = csum[radius + n]
    total = csum[2 * radius + 1 :] - csum[:n]
    total /= count
    return np.moveaxis(total.astype(np.float32), 0, axis)


def smooth_box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    """``box_blur`` for wide windows on large images, computed on a copy
    shrunk by a factor that divides the window (block means) and resized back
    bilinearly; the exact ``box_blur`` when no such factor fits.

    A wide box blur is so smooth that this changes it by far less than a grey
    level, at a fraction of the memory traffic: the wide level of foreground
    estimation on a 12-megapixel photo goes from seconds to a fraction of one.
    """
    height, width = x.shape[:2]
    window = 2 * radius + 1
    # The shrink factor divides the window, so the shrunk window covers the same width.
    factor = max((f for f in range(2, radius // 4 + 1) if window % f == 0), default=0)
    if factor < 2 or min(height, width) < 8 * factor:
        return box_blur(x, radius)
    small = _block_mean(x, factor)
    blurred = box_blur(small, (window // factor - 1) // 2)
    return _resize_bilinear(blurred, height, width, factor)


def _block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    height, width = x.shape[:2]
    pad_h, pad_w = -height % factor, -width % factor
    if pad_h or pad_w:
        x = np.pad(x, ((0, pad_h), (0, pad_w)) + ((0, 0),) * (x.ndim - 2), mode="edge")
    h, w = x.shape[0] // factor, x.shape[1] // factor
    return x.reshape((h, factor, w, factor) + x.shape[2:]).mean(axis=(1, 3), dtype=np.float32)


def _resize_bilinear(x: np.ndarray, height: int, width: int, factor: int) -> np.ndarray:
    """Upsample block means back to (height, width), pixel centres aligned."""
    for axis, size in ((0, height), (1, width)):
        n = x.shape[axis]
        pos = np.clip((np.arange(size) + 0.5) / factor - 0.5, 0.0, n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        shape = [1] * x.ndim
        shape[axis] = size
        frac = (pos - lo).astype(np.float32).reshape(shape)
        x = np.take(x, lo, axis=axis) * (1.0 - frac) + np.take(x, hi, axis=axis) * frac
    return x


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, radii: Sequence[int] = (45, 3)) -> np.ndarray:
    """Foreground colours for an RGBA cut-out, by multi-level blur fusion.

    The approximation of Forte & Pitié, "Approximate Fast Foreground Colour
    Estimation" (ICIP 2021): at each level, local means of the foreground and
    background colours are taken with a box blur weighted by alpha and
    1 - alpha, and each pixel's colour is corrected so that
    ``alpha * F + (1 - alpha) * B`` reproduces the observed pixel. A wide
    level then a narrow one; the second starts from the first's estimates.

    ``image``: HxWx3 uint8; ``alpha``: HxW float in [0, 1]. Returns HxWx3
    float32 in [0, 1].
    """
    img = image.astype(np.float32)
    img *= np.float32(1.0 / 255.0)
    a = alpha.astype(np.float32)[:, :, None]
    one_minus_a = 1.0 - a
    eps = np.float32(1e-5)
    fg = img
    bg = img
    stack = np.empty(img.shape[:2] + (7,), dtype=np.float32)
    for radius in radii:
        # One blur of the 7 stacked channels: alpha, F * alpha, B * (1 - alpha).
        stack[:, :, :1] = a
        np.multiply(fg, a, out=stack[:, :, 1:4])
        np.multiply(bg, one_minus_a, out=stack[:, :, 4:])
        blurred = smooth_box_blur(stack, radius)
        blurred_a = blurred[:, :, :1]
        blurred_fg = blurred[:, :, 1:4]
        blurred_fg /= blurred_a + eps
        blurred_bg = blurred[:, :, 4:]
        blurred_bg /= (1.0 - blurred_a) + eps
        # F = blurred_F + alpha * (I - alpha * blurred_F - (1 - alpha) * blurred_B)
        fg = img - a * blurred_fg
        fg -= one_minus_a * blurred_bg
        fg *= a
        fg += blurred_fg
        np.clip(fg, 0.0, 1.0, out=fg)
        bg = blurred_bg
    return fg


def composite(image: Image.Image, alpha: np.ndarray, spec: OutputSpec) -> Image.Image:
    """Build the output image for ``spec`` from an RGB image and its alpha
    (HxW float in [0, 1], after threshold and reverse)."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    if alpha.shape != (height, width):
        raise ValueError(f"alpha shape {alpha.shape} does not match the image's {(height, width)}")
    alpha_u8 = alpha_to_uint8(alpha)
    if spec.kind == "map":
        return Image.fromarray(alpha_u8, mode="L")
    if spec.kind == "rgba":
        fg = estimate_foreground(rgb, alpha)
        out = np.dstack([_to_u8(fg * 255.0), alpha_u8])
        return Image.fromarray(out, mode="RGBA")
    a = alpha.astype(np.float32)[:, :, None]
    if spec.kind == "overlay":
        return Image.fromarray(_overlay(rgb, a, alpha_u8), mode="RGB")
    if spec.kind == "blur":
        radius = max(2.0, max(width, height) / 100.0)
        bg = np.asarray(image.convert("RGB").filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
        fg = rgb.astype(np.float32)
    else:
        if spec.kind == "colour":
            bg = np.broadcast_to(np.asarray(spec.colour, dtype=np.float32), rgb.shape)
        elif spec.kind == "image":
            cover = ImageOps.fit(spec.background, (width, height), method=Image.Resampling.BILINEAR)
            bg = np.asarray(cover, dtype=np.float32)
        else:  # pragma: no cover - OutputSpec kinds are closed
            raise ValueError(f"unknown output kind {spec.kind!r}")
        fg = estimate_foreground(rgb, alpha) * 255.0
    return Image.fromarray(_to_u8(fg * a + bg * (1.0 - a)), mode="RGB")


def _overlay(rgb: np.ndarray, a: np.ndarray, alpha_u8: np.ndarray) -> np.ndarray:
    tinted = rgb.astype(np.float32) * (1.0 - 0.5 * a) + _OVERLAY_TINT * (0.5 * a)
    mask = Image.fromarray(np.where(alpha_u8 >= 128, 255, 0).astype(np.uint8), mode="L")
    edge = np.asarray(mask.filter(ImageFilter.MaxFilter(3))) != np.asarray(mask.filter(ImageFilter.MinFilter(3)))
    tinted[edge] = _OVERLAY_EDGE
    return _to_u8(tinted)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
