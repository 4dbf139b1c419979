"""What one request does around the batcher: decode, composite, encode (run on the CPU pool)."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..compositing import BASIC_TYPES, OutputSpec, apply_threshold_reverse, composite, parse_colour
from ..image_io import ImageLoadError, TooManyPixelsError, carry_metadata, encode_options, load_image
from .errors import ServeError, bad_option

logger = logging.getLogger(__name__)

#: Output formats: request name -> (Pillow format, Content-Type).
FORMATS = {
    "png": ("PNG", "image/png"),
    "webp": ("WEBP", "image/webp"),
    "jpg": ("JPEG", "image/jpeg"),
    "jpeg": ("JPEG", "image/jpeg"),
}
_METADATA = ("exif", "icc_profile", "dpi")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def decode(data: bytes, max_pixels: int, field: str = "image") -> Image.Image:
    """The upload as an RGB image: 413 above ``max_pixels``, 415 when it is no image we read."""
    if not data:
        raise ServeError(400, "missing_image", f"the {field} is empty; send the bytes of an image file", field)
    try:
        return load_image(data, max_pixels=max_pixels).rgb
    except TooManyPixelsError as exc:
        raise ServeError(413, "too_many_pixels", f"{field}: {exc.reason}", field) from None
    except ImageLoadError:
        raise ServeError(
            415, "unsupported_media", f"the {field} is not an image this server can read; send PNG, JPEG, WebP, ...",
            field,
        ) from None


def parse_type(text: str) -> OutputSpec:
    """An output type of the API: rgba, map, blur, overlay, green, white or a colour (never a server path)."""
    lowered = text.strip().lower()
    if lowered in BASIC_TYPES:
        return OutputSpec(lowered)
    try:
        colour = parse_colour(text)
    except ValueError as exc:
        raise bad_option("type", str(exc)) from None
    if colour is None:
        raise bad_option(
            "type", f"unknown type {text!r}; choose rgba, map, blur, overlay, green, white or a colour (#rrggbb)"
        )
    return OutputSpec("colour", colour=colour)


def parse_unit(field: str, text: str | None) -> float | None:
    """A number in [0, 1] or ``None`` when absent/empty."""
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise bad_option(field, f"{field} must be a number in [0, 1], got {text!r}") from None
    if not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise bad_option(field, f"{field} must be a number in [0, 1], got {text!r}")
    return value


def parse_flag(field: str, text: str | None) -> bool:
    """true/false, 1/0, yes/no, on/off (absent: false)."""
    if text is None:
        return False
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad_option(field, f"{field} must be true or false, got {text!r}")


def parse_int(field: str, text: str | None, low: int, high: int) -> int | None:
    """An integer in ``low..high`` or ``None`` when absent/empty."""
    if text is None or text.strip() == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_option(field, f"{field} must be an integer in {low}..{high}, got {text!r}") from None
    if not low <= value <= high:
        raise bad_option(field, f"{field} must be an integer in {low}..{high}, got {text!r}")
    return value


def parse_choice(field: str, text: str | None, choices: tuple[str, ...]) -> str | None:
    """One of ``choices`` (case-insensitive) or ``None`` when absent/empty."""
    if text is None or text.strip() == "":
        return None
    lowered = text.strip().lower()
    if lowered not in choices:
        raise bad_option(field, f"{field} must be one of {', '.join(choices)}, got {text!r}")
    return lowered


@dataclass(frozen=True)
class Rendered:
    """An encoded result."""

    body: bytes
    media_type: str
    width: int
    height: int


def render(rgb: Image.Image, pred: np.ndarray, spec: OutputSpec, threshold: float | None, reverse: bool) -> Image.Image:
    """The output image for ``spec`` (as ``Remover.process`` builds it)."""
    alpha = apply_threshold_reverse(pred, threshold, reverse)
    return carry_metadata(rgb, composite(rgb, alpha, spec))


def encode(image: Image.Image, fmt: str, quality: int | None = None) -> Rendered:
    """``image`` encoded as ``fmt`` (a key of :data:`FORMATS`), with the metadata the format can carry."""
    pil_format, media_type = FORMATS[fmt]
    options = encode_options(image, pil_format, quality)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=pil_format, **options)
    except (ValueError, OSError) as exc:  # metadata the encoder refuses: the image matters, not its EXIF
        logger.info("encoding with the metadata failed (%s); the result goes without it", exc)
        buffer = io.BytesIO()
        image.save(buffer, format=pil_format, **{k: v for k, v in options.items() if k not in _METADATA})
    return Rendered(buffer.getvalue(), media_type, image.width, image.height)
