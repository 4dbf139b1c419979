"""Turning a saliency map into the output people asked for.

Output types (the ``type`` argument of ``Remover.process`` and ``--type``):

* ``"rgba"``: the image with the map as its alpha channel; the colour of
  soft edges is re-estimated (:func:`estimate_foreground`) so that hair and
  blurred borders do not keep the old background's colour.
* ``"map"``: the map itself, a grey image (0 background, 255 foreground).
* ``"green"``, ``"white"``, an RGB tuple such as ``(255, 0, 0)``, or a
  colour string (:func:`parse_colour`: ``"#rrggbb"``, ``"#rgb"``, ``"r,g,b"``,
  ``"rgb(r, g, b)"``): the foreground over that colour.
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
from collections.abc import Callable, Sequence
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
_SHORT_HEX_RE = re.compile(r"^#([0-9a-fA-F]{3,4}|[0-9a-fA-F]{8})$")
_TRIPLE_RE = re.compile(r"^\[?\(?\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)?\]?$")
_NUMBER = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*"
_CSS_RGB_RE = re.compile(rf"^rgba?\({_NUMBER},{_NUMBER},{_NUMBER}(?:,{_NUMBER})?\)$", re.IGNORECASE)
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
        from .image_io import describe_input  # its type and shape, not the repr of a whole array

        hint = " (for an array as the background, pass Image.fromarray(array))" if isinstance(type, np.ndarray) else ""
        raise ValueError(f"unsupported output type {describe_input(type)}{hint}; {_CHOICES}")
    text = type.strip()
    lowered = text.lower()
    if lowered in BASIC_TYPES:
        return OutputSpec(lowered)
    colour = parse_colour(text)
    # A file named like a bare colour ("ff8000", "1,2,3") is the user's background image.
    if colour is not None and (text.startswith("#") or lowered in NAMED_COLOURS or not Path(text).exists()):
        return OutputSpec("colour", colour=colour)
    if Path(text).is_file():
        return OutputSpec("image", background=_load_background(text, max_pixels))
    if Path(text).suffix.lower() in Image.registered_extensions():
        raise ValueError(f"background image {text!r} not found; check the path, or {_CHOICES}")
    raise ValueError(f"unknown output type {type!r}; {_CHOICES}")


_CHOICES = (
    "choose 'rgba', 'map', 'green', 'white', 'blur', 'overlay', a colour "
    "((r, g, b), '#rrggbb', '#rgb', 'r,g,b' or 'rgb(r, g, b)') or the path of a background image"
)


def parse_colour(text: str) -> tuple[int, int, int] | None:
    """An RGB triple from a colour string, or ``None`` if ``text`` is no colour form.

    The one colour parser of the library, the CLI and the Space. Forms:
    ``"green"``, ``"white"``, ``"#rrggbb"`` (or without ``#``), ``"#rgb"``,
    ``"r,g,b"`` (optionally in brackets), and CSS ``"rgb(r, g, b)"``; the
    alpha of ``"#rgba"``, ``"#rrggbbaa"`` and ``"rgba(r, g, b, a)"`` (what
    colour pickers give) is ignored: the background is opaque. A colour form
    with a value out of 0..255 raises ``ValueError``.
    """
    text = text.strip()
    lowered = text.lower()
    if lowered in NAMED_COLOURS:
        return NAMED_COLOURS[lowered]
    hex_match = _HEX_RE.match(text)
    if hex_match:
        digits = hex_match.group(1)
    elif short := _SHORT_HEX_RE.match(text):
        digits = short.group(1)
        digits = "".join(ch * 2 for ch in digits[:3]) if len(digits) in (3, 4) else digits[:6]
    else:
        digits = None
    if digits is not None:
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    triple = _TRIPLE_RE.match(text)
    if triple:
        return _check_colour([int(g) for g in triple.groups()])
    css = _CSS_RGB_RE.match(text)
    if css:
        values = [float(v) for v in css.groups()[:3]]
        if not all(0.0 <= v <= 255.0 for v in values):
            raise ValueError(f"a colour must have values in 0..255, got {text!r}")
        return (round(values[0]), round(values[1]), round(values[2]))
    return None


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
    factor = _shrink_factor(height, width, radius)
    if not factor:
        return box_blur(x, radius)
    blurred = box_blur(_block_mean(x, factor), _shrunk_radius(radius, factor))
    return _resize_bilinear(blurred, height, width, factor)


def _shrink_factor(height: int, width: int, radius: int) -> int:
    """The shrink factor of ``smooth_box_blur``, or 0 where it blurs exactly."""
    window = 2 * radius + 1
    # The shrink factor divides the window, so the shrunk window covers the same width.
    factor = max((f for f in range(2, radius // 4 + 1) if window % f == 0), default=0)
    if factor < 2 or min(height, width) < 8 * factor:
        return 0
    return factor


def _shrunk_radius(radius: int, factor: int) -> int:
    return ((2 * radius + 1) // factor - 1) // 2


def _block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    height, width = x.shape[:2]
    pad_h, pad_w = -height % factor, -width % factor
    if pad_h or pad_w:
        x = np.pad(x, ((0, pad_h), (0, pad_w)) + ((0, 0),) * (x.ndim - 2), mode="edge")
    h, w = x.shape[0] // factor, x.shape[1] // factor
    return x.reshape((h, factor, w, factor) + x.shape[2:]).mean(axis=(1, 3), dtype=np.float32)


def _resize_bilinear(
    x: np.ndarray, height: int, width: int, factor: int, rows: tuple[int, int] | None = None
) -> np.ndarray:
    """Upsample block means back to (height, width), pixel centres aligned;
    only output rows ``rows`` = (start, stop) if given (the same values)."""
    start, stop = rows if rows is not None else (0, height)
    for axis, (first, end) in ((0, (start, stop)), (1, (0, width))):
        n = x.shape[axis]
        pos = np.clip((np.arange(first, end) + 0.5) / factor - 0.5, 0.0, n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        shape = [1] * x.ndim
        shape[axis] = end - first
        frac = (pos - lo).astype(np.float32).reshape(shape)
        x = np.take(x, lo, axis=axis) * (1.0 - frac) + np.take(x, hi, axis=axis) * frac
    return x


#: Pixels per tile of the tiled foreground estimation and compositing: the
#: temporary arrays of a tile cost about 200 bytes per pixel.
TILE_PIXELS = 1 << 20
_EXACT_SHIFT_RADIUS = 8  # box_blur adds shifted copies up to this radius: tiles give the same sums


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
    out = np.empty(image.shape[:2] + (3,), dtype=np.float32)
    for start, stop, fg in foreground_rows(image, alpha, radii):
        out[start:stop] = fg
    return out


def foreground_rows(
    image: np.ndarray, alpha: np.ndarray, radii: Sequence[int] = (45, 3), tile_pixels: int = TILE_PIXELS
):
    """:func:`estimate_foreground` in row tiles: yields ``(start, stop, fg)``
    with ``fg`` the float32 rows ``start:stop``, in order, bit for bit the
    rows of the whole-image result.

    Memory stays at about 200 bytes per pixel of a tile instead of per pixel
    of the image. The wide first level is blurred once on the shrunk grid of
    :func:`smooth_box_blur` (built tile by tile); each later level needs a
    halo of its radius around a tile. Where that would not give the same
    result (no shrink factor, or a later radius above 8), one tile is used.
    """
    height, width = alpha.shape
    first, rest = int(radii[0]), tuple(int(r) for r in radii[1:])
    factor = _shrink_factor(height, width, first)
    tile = max(1, tile_pixels // max(width, 1))
    if factor:
        tile = max(factor, tile - tile % factor)  # block means never straddle two tiles
    if not factor or any(r > _EXACT_SHIFT_RADIUS for r in rest):
        tile = height
    halo = sum(rest)
    if tile >= height:
        blurred = smooth_box_blur(_first_stack(image, alpha), first)
        yield 0, height, _fuse_levels(image, alpha, blurred, rest)
        return
    small = np.concatenate(
        [_block_mean(_first_stack(image[r : r + tile], alpha[r : r + tile]), factor) for r in range(0, height, tile)]
    )
    small = box_blur(small, _shrunk_radius(first, factor))
    for start in range(0, height, tile):
        stop = min(height, start + tile)
        lo, hi = max(0, start - halo), min(height, stop + halo)
        blurred = _resize_bilinear(small, height, width, factor, rows=(lo, hi))
        fg = _fuse_levels(image[lo:hi], alpha[lo:hi], blurred, rest)
        yield start, stop, fg[start - lo : stop - lo]


def _first_stack(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The 7 channels the first level blurs: alpha, I * alpha, I * (1 - alpha)."""
    img = _unit_rgb(image)
    a = alpha.astype(np.float32)[:, :, None]
    stack = np.empty(img.shape[:2] + (7,), dtype=np.float32)
    stack[:, :, :1] = a
    np.multiply(img, a, out=stack[:, :, 1:4])
    np.multiply(img, 1.0 - a, out=stack[:, :, 4:])
    return stack


def _unit_rgb(image: np.ndarray) -> np.ndarray:
    img = image.astype(np.float32)
    img *= np.float32(1.0 / 255.0)
    return img


def _fuse_levels(image: np.ndarray, alpha: np.ndarray, blurred: np.ndarray, radii: Sequence[int]) -> np.ndarray:
    """Foreground after the first level (whose blurred stack is given) and each later level."""
    img = _unit_rgb(image)
    a = alpha.astype(np.float32)[:, :, None]
    one_minus_a = 1.0 - a
    fg, bg = _fuse(img, a, one_minus_a, blurred)
    for radius in radii:
        stack = np.empty(img.shape[:2] + (7,), dtype=np.float32)
        stack[:, :, :1] = a
        np.multiply(fg, a, out=stack[:, :, 1:4])
        np.multiply(bg, one_minus_a, out=stack[:, :, 4:])
        fg, bg = _fuse(img, a, one_minus_a, smooth_box_blur(stack, radius))
    return fg


def _fuse(img: np.ndarray, a: np.ndarray, one_minus_a: np.ndarray, blurred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One level's correction from its blurred stack: (foreground, background estimate)."""
    eps = np.float32(1e-5)
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
    return fg, blurred_bg


def composite(
    image: Image.Image, alpha: np.ndarray, spec: OutputSpec, between_tiles: Callable[[], None] | None = None
) -> Image.Image:
    """Build the output image for ``spec`` from an RGB image and its alpha
    (HxW float in [0, 1], after threshold and reverse).

    Works in row tiles (:data:`TILE_PIXELS`), so memory grows by about 20
    bytes per pixel of the image beyond the input and output.
    ``between_tiles`` runs before each tile: an exception it raises (e.g. a
    service's deadline passing) stops the work there.
    """
    between_tiles = between_tiles or _nothing
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    if alpha.shape != (height, width):
        raise ValueError(f"alpha shape {alpha.shape} does not match the image's {(height, width)}")
    alpha_u8 = alpha_to_uint8(alpha)
    if spec.kind == "map":
        return Image.fromarray(alpha_u8, mode="L")
    if spec.kind == "rgba":
        out = np.empty((height, width, 4), dtype=np.uint8)
        out[:, :, 3] = alpha_u8
        for start, stop, fg in foreground_rows(rgb, alpha):
            between_tiles()
            out[start:stop, :, :3] = _to_u8(fg * 255.0)
        return Image.fromarray(out, mode="RGBA")
    if spec.kind == "overlay":
        a = alpha.astype(np.float32)[:, :, None]
        return Image.fromarray(_overlay(rgb, a, alpha_u8), mode="RGB")
    if spec.kind == "blur":
        radius = max(2.0, max(width, height) / 100.0)
        bg = np.asarray(image.convert("RGB").filter(ImageFilter.GaussianBlur(radius)))
        tiles = ((r, min(height, r + _tile_rows(width)), rgb[r : r + _tile_rows(width)].astype(np.float32))
                 for r in range(0, height, _tile_rows(width)))
    else:
        if spec.kind == "colour":
            bg = np.broadcast_to(np.asarray(spec.colour, dtype=np.uint8), rgb.shape)
        elif spec.kind == "image":
            bg = np.asarray(ImageOps.fit(spec.background, (width, height), method=Image.Resampling.BILINEAR))
        else:  # pragma: no cover - OutputSpec kinds are closed
            raise ValueError(f"unknown output kind {spec.kind!r}")
        tiles = ((start, stop, fg * 255.0) for start, stop, fg in foreground_rows(rgb, alpha))
    out = np.empty((height, width, 3), dtype=np.uint8)
    for start, stop, fg in tiles:
        between_tiles()
        a = alpha[start:stop].astype(np.float32)[:, :, None]
        out[start:stop] = _to_u8(fg * a + bg[start:stop].astype(np.float32) * (1.0 - a))
    return Image.fromarray(out, mode="RGB")


def _nothing() -> None:
    pass


def _tile_rows(width: int) -> int:
    return max(1, TILE_PIXELS // max(width, 1))


def _overlay(rgb: np.ndarray, a: np.ndarray, alpha_u8: np.ndarray) -> np.ndarray:
    tinted = rgb.astype(np.float32) * (1.0 - 0.5 * a) + _OVERLAY_TINT * (0.5 * a)
    mask = Image.fromarray(np.where(alpha_u8 >= 128, 255, 0).astype(np.uint8), mode="L")
    edge = np.asarray(mask.filter(ImageFilter.MaxFilter(3))) != np.asarray(mask.filter(ImageFilter.MinFilter(3)))
    tinted[edge] = _OVERLAY_EDGE
    return _to_u8(tinted)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
