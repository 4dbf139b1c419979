"""Decoding the images people really have, and encoding results back.

Inputs accepted by :func:`load_image`:

* a ``PIL.Image.Image`` (used as given: its pixel grid is kept, EXIF
  orientation is *not* applied, so a result lines up with the image you
  passed);
* a ``numpy.ndarray`` of ``uint8``, shaped HxW (grey), HxWx1, HxWx3 (RGB) or
  HxWx4 (RGBA);
* a path (``str`` or ``os.PathLike``) to an image file: EXIF orientation is
  applied;
* encoded bytes (``bytes``, ``bytearray``, ``memoryview``): EXIF orientation
  is applied.

Every mode Pillow decodes is turned into 8-bit RGB: L, LA, P (with or without
transparency), RGBA, CMYK, I;16 and 16-bit PNGs (scaled, not clipped).
An alpha channel in the input is dropped: the prediction only looks at the
colour channels.

Images with more than ``max_pixels`` pixels (default
:data:`DEFAULT_MAX_PIXELS`) are refused before their pixels are decoded, as a
guard against decompression bombs. Pillow keeps its own guard
(``PIL.Image.MAX_IMAGE_PIXELS``, which refuses images above twice that value);
to accept images larger than that, raise Pillow's limit as well.

Anything that cannot be read (missing, empty, truncated or non-image files,
arrays of the wrong shape or dtype, oversized images) raises
:class:`ImageLoadError`, a ``ValueError`` that names the input.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Default pixel limit (width x height) for one input image: 100 megapixels.
DEFAULT_MAX_PIXELS = 100_000_000

InputKind = Literal["pil", "array", "path", "bytes"]
ImageInput = Image.Image | np.ndarray | str | os.PathLike | bytes | bytearray | memoryview

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageLoadError(ValueError):
    """An input could not be turned into an image.

    ``source`` is a short description of the input (its path, or what kind of
    object it was); the message says what was wrong and what to do.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"cannot read image {source}: {reason}")


@dataclass
class LoadedImage:
    """An input decoded to 8-bit RGB, with what is needed to answer in kind."""

    rgb: Image.Image
    kind: InputKind
    name: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the decoded image."""
        return self.rgb.size


def describe_input(source: object) -> str:
    """A short human-readable name for an input, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{memoryview(source).nbytes} bytes>"
    if isinstance(source, np.ndarray):
        return f"<numpy array shape={source.shape} dtype={source.dtype}>"
    if isinstance(source, Image.Image):
        return f"<PIL image mode={source.mode} size={source.size[0]}x{source.size[1]}>"
    return f"<{type(source).__name__}>"


def input_kind(source: object) -> InputKind:
    """Which kind of input ``source`` is; ``TypeError`` for anything else."""
    if isinstance(source, Image.Image):
        return "pil"
    if isinstance(source, np.ndarray):
        return "array"
    if isinstance(source, (str, os.PathLike)):
        return "path"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "bytes"
    raise TypeError(
        f"unsupported image input {type(source).__name__}: pass a PIL image, a uint8 "
        "numpy array (HxW, HxWx3 or HxWx4), a file path, or encoded image bytes"
    )


def load_image(source: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``source`` to an RGB PIL image; see the module docstring.

    ``max_pixels=None`` disables this module's pixel limit (Pillow's own
    limit still applies to files).
    """
    kind = input_kind(source)
    name = describe_input(source)
    if kind == "pil":
        _check_pixels(name, source.size, max_pixels)
        rgb = _to_rgb(name, source)
    elif kind == "array":
        rgb = _array_to_rgb(name, source, max_pixels)
    elif kind == "path":
        path = Path(os.fspath(source))
        if not path.exists():
            raise ImageLoadError(name, "no such file; check the path")
        if path.is_dir():
            raise ImageLoadError(name, "it is a folder, not an image file")
        try:
            with open(path, "rb") as fh:
                rgb = _decode(name, fh, max_pixels)
        except OSError as exc:
            raise ImageLoadError(name, f"the file cannot be opened ({exc})") from exc
    else:
        data = bytes(source)
        rgb = _decode(name, io.BytesIO(data), max_pixels)
    return LoadedImage(rgb=rgb, kind=kind, name=name)


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageLoadError(name, f"it has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            name,
            f"{width}x{height} = {width * height} pixels is above the limit of {max_pixels}; "
            "downscale it first or raise max_pixels (--max-pixels on the command line)",
        )


def _decode(name: str, stream: io.RawIOBase | io.BufferedIOBase, max_pixels: int | None) -> Image.Image:
    """Open, check the size from the header, then decode and convert to RGB."""
    head = stream.read(1)
    if not head:
        raise ImageLoadError(name, "the file is empty")
    stream.seek(0)
    try:
        with warnings.catch_warnings():
            # The pixel limit is checked below with a clear message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(stream)
    except UnidentifiedImageError as exc:
        raise ImageLoadError(name, "it is not an image in a format Pillow can read") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            name,
            f"Pillow refuses it as a possible decompression bomb ({exc}); raise "
            "PIL.Image.MAX_IMAGE_PIXELS as well as max_pixels to accept it",
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(name, f"it cannot be decoded ({exc})") from exc
    with img:
        _check_pixels(name, img.size, max_pixels)
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageLoadError(name, f"it is truncated or corrupt ({exc}); re-export or re-download it") from exc
        return _to_rgb(name, img)


def _to_rgb(name: str, img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, scaling 16-bit data instead of clipping it."""
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(img).astype(np.float64)
        grey = np.clip(np.rint(grey * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        grey = np.asarray(img).astype(np.float64)
        scale = 255.0 if np.nanmax(grey, initial=0.0) <= 1.0 else 1.0
        grey = np.clip(np.rint(np.nan_to_num(grey) * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageLoadError(name, f"its mode {mode!r} cannot be converted to RGB") from exc


def _array_to_rgb(name: str, arr: np.ndarray, max_pixels: int | None) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ImageLoadError(
            name,
            f"arrays must be uint8 (0-255), got {arr.dtype}; for floats in [0, 1] pass "
            "(arr * 255).round().astype(np.uint8)",
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ImageLoadError(name, "arrays must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA); channels go last")
    _check_pixels(name, (arr.shape[1], arr.shape[0]), max_pixels)
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L").convert("RGB")
    return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]), mode="RGB")


def to_kind(result: Image.Image, kind: InputKind) -> Image.Image | np.ndarray | bytes:
    """Return ``result`` as the kind the input was: PIL for PIL and paths,
    an ndarray for arrays, PNG bytes for bytes."""
    if kind == "array":
        return np.asarray(result).copy()
    if kind == "bytes":
        buf = io.BytesIO()
        result.save(buf, format="PNG")
        return buf.getvalue()
    return result


def save_image(img: Image.Image, path: str | os.PathLike, format: str | None = None) -> Path:
    """Write ``img`` to ``path`` atomically: encode to a temporary file in the
    same folder, then rename it over ``path``. An interrupted or failed write
    leaves no partial file behind (and an existing ``path`` untouched)."""
    path = Path(path)
    fmt = format or Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {str(path)!r} from its suffix; pass format=")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            img.save(fh, format=fmt)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    logger.debug("wrote %s", path)
    return path
