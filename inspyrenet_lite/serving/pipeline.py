"""What one request does around the batcher: decode, render, encode (run on the CPU pool).

The steps are the library's one road (:mod:`inspyrenet_lite.pipeline`); this
module only turns its errors into HTTP answers and the request's text fields
into typed values, refused with the words of the library's own checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .. import pipeline
from ..checks import check_options
from ..compositing import OutputSpec
from ..image_io import ImageLoadError, TooManyPixelsError
from ..options import FORMATS, OutputOptions, output_type
from .errors import ServeError, bad_option

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "OutputSpec", "Rendered", "decode", "encode", "render", "parse_type", "parse_unit",
           "parse_flag", "parse_int", "parse_choice"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def decode(data: bytes, max_pixels: int, field: str = "image") -> Image.Image:
    """The upload as an RGB image: 413 above ``max_pixels``, 415 when it is no image we read."""
    if not data:
        raise ServeError(400, "missing_image", f"the {field} is empty; send the bytes of an image file", field)
    try:
        return pipeline.decode(data, max_pixels=max_pixels).rgb
    except TooManyPixelsError as exc:
        raise ServeError(413, "too_many_pixels", f"{field}: {exc.reason}", field) from None
    except ImageLoadError:
        raise ServeError(
            415, "unsupported_media", f"the {field} is not an image this server can read; send PNG, JPEG, WebP, ...",
            field,
        ) from None


def parse_type(text: str) -> OutputSpec:
    """An output type of the API: rgba, map, blur, overlay, green, white or a colour (never a server path)."""
    try:
        return output_type(text, files=False)
    except ValueError as exc:
        raise bad_option("type", str(exc)) from None


def parse_unit(field: str, text: str | None) -> float | None:
    """A number in [0, 1] (the library's check of ``field``) or ``None`` when absent/empty."""
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise bad_option(field, f"{field} must be a number, got {text!r}") from None
    try:
        return check_options(**{field: value})[field]
    except ValueError as exc:
        raise bad_option(field, str(exc)) from None


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
        raise bad_option(field, f"{field} must be an integer in {low}..{high}, got {value!r}")
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
    """The output image for ``spec`` (:func:`inspyrenet_lite.pipeline.render`)."""
    return pipeline.render(rgb, pred, OutputOptions(spec=spec, threshold=threshold, reverse=reverse))


def encode(image: Image.Image, fmt: str, quality: int | None = None) -> Rendered:
    """``image`` encoded as ``fmt`` (a key of :data:`FORMATS`; :func:`inspyrenet_lite.pipeline.encode`)."""
    body = pipeline.encode(image, fmt, quality)
    return Rendered(body, FORMATS[fmt].media_type, image.width, image.height)
