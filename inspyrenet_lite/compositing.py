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
    csum = np.cumsum(x, axis=axis, dtype=np.float64)
    zero_shape = list(x.shape)
    zero_shape[axis] = 1
    csum = np.concatenate([np.zeros(zero_shape, dtype=np.float64), csum], axis=axis)
    idx = np.arange(n)
    hi = np.minimum(idx + radius + 1, n)
    lo = np.maximum(idx - radius, 0)
    total = np.take(csum, hi, axis=axis) - np.take(csum, lo, axis=axis)
    count_shape = [1] * x.ndim
    count_shape[axis] = n
    count = (hi - lo).reshape(count_shape)
    return (total / count).astype(np.float32)


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
    img = image.astype(np.float32) / 255.0
    a = alpha.astype(np.float32)[:, :, None]
    fg = img
    bg = img
    eps = 1e-5
    for radius in radii:
        blurred_a = box_blur(a, radius)
        blurred_fg = box_blur(fg * a, radius) / (blurred_a + eps)
        blurred_bg = box_blur(bg * (1.0 - a), radius) / ((1.0 - blurred_a) + eps)
        fg = blurred_fg + a * (img - a * blurred_fg - (1.0 - a) * blurred_bg)
        fg = np.clip(fg, 0.0, 1.0)
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
