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
  is applied;
* an open binary file or file-like object (``io.BytesIO``, ``sys.stdin.buffer``,
  anything with ``read``), read to its end: EXIF orientation is applied;
* an ``http://`` or ``https://`` address, fetched with a timeout and a size
  cap (:func:`fetch_url`): EXIF orientation is applied.

Every mode Pillow has is turned into 8-bit RGB: 1, L, LA, La, P, PA, RGB,
RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV, F and the 16/32-bit integer modes.
16-bit data (I;16*, 16-bit PNG/TIFF) is scaled, not clipped; mode I is scaled
by the range its values use (0-255 as 8-bit, up to 65535 as 16-bit); float
images (F) in [0, 1] are scaled by 255. An alpha channel in the input is
dropped: the prediction only looks at the colour channels.

Animated GIF/WebP/PNG and multi-page TIFF: only the first frame is used, and a
warning is logged.

Images with more than ``max_pixels`` pixels (default
:data:`DEFAULT_MAX_PIXELS`) are refused before their pixels are decoded, as a
guard against decompression bombs. That limit is the only one: where it is
above Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``), or ``None``,
Pillow's guard is widened to it (:func:`allow_pixels`): once, to the widest
limit asked for in this process, and never narrowed or toggled per decode,
so concurrent decodes in other threads never see it move under them.

Anything that cannot be read (missing, empty, truncated or non-image files,
arrays of the wrong shape or dtype, oversized images) raises
:class:`ImageLoadError`, a ``ValueError`` that names the input.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ._atomic import atomic_open

logger = logging.getLogger(__name__)

#: Default pixel limit (width x height) for one input image: 100 megapixels.
DEFAULT_MAX_PIXELS = 100_000_000

InputKind = Literal["pil", "array", "path", "bytes", "file", "url"]
ImageInput = Image.Image | np.ndarray | str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, AssertionError, IndexError, TypeError)


class ImageLoadError(ValueError):
    """An input could not be turned into an image.

    ``source`` is a short description of the input (its path, or what kind of
    object it was); the message says what was wrong and what to do.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"cannot read image {source}: {reason}")


class TooManyPixelsError(ImageLoadError):
    """An input has more pixels than the limit (ours, or Pillow's guard)."""


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
    if callable(getattr(source, "read", None)):
        file_name = getattr(source, "name", None)
        return repr(file_name) if isinstance(file_name, str) else f"<{type(source).__name__}>"
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
    if isinstance(source, str) and source.lower().startswith(URL_SCHEMES):
        return "url"
    if isinstance(source, (str, os.PathLike)):
        return "path"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "bytes"
    if callable(getattr(source, "read", None)):
        return "file"
    raise TypeError(
        f"unsupported image input {type(source).__name__}: pass a PIL image, a uint8 "
        "numpy array (HxW, HxWx3 or HxWx4), a file path or http(s) address, encoded image bytes "
        "or an open binary file"
    )


def load_image(source: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``source`` to an RGB PIL image; see the module docstring.

    ``max_pixels=None`` disables this module's pixel limit (Pillow's own
    limit still applies to files).
    """
    kind = input_kind(source)
    name = describe_input(source)
    allow_pixels(max_pixels)
    if kind == "pil":
        _check_pixels(name, source.size, max_pixels)
        _warn_if_animated(name, source)
        try:
            # A lazily opened image decodes here; a closed one cannot.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                source.load()
                rgb = to_rgb(name, source)
        except ImageLoadError:
            raise
        except _DECODE_ERRORS as exc:
            raise ImageLoadError(
                name,
                f"its pixels cannot be read ({type(exc).__name__}: {exc or 'no detail'}); the image may be "
                "closed or its file truncated: pass an open, fully loaded image (img.load()) or the path",
            ) from exc
    elif kind == "array":
        rgb = _array_to_rgb(name, source, max_pixels)
    elif kind == "path":
        if os.fspath(source) in ("", b""):
            raise ImageLoadError(name, "the path is empty; give the path of an image file")
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
    elif kind == "url":
        rgb = _decode(name, io.BytesIO(fetch_url(source)), max_pixels)
    elif kind == "file":
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ImageLoadError(name, "it is a text file object; open the image in binary mode ('rb')")
        rgb = _decode(name, io.BytesIO(data), max_pixels)
    else:
        data = bytes(source)
        rgb = _decode(name, io.BytesIO(data), max_pixels)
    return LoadedImage(rgb=rgb, kind=kind, name=name)


#: Addresses :func:`load_image` fetches instead of opening as a path.
URL_SCHEMES = ("http://", "https://")
#: The most an address may send, and how long its whole download may take.
MAX_DOWNLOAD_BYTES = 100 * 2**20
DOWNLOAD_TIMEOUT_S = 30.0


def fetch_url(url: str, max_bytes: int = MAX_DOWNLOAD_BYTES, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """The body at ``url`` (``http``/``https``, redirects followed), within ``timeout_s`` seconds in all
    and ``max_bytes`` bytes; :class:`ImageLoadError` says why not (offline, 404, too large, too slow)."""
    import time
    import urllib.error
    import urllib.request

    name = repr(url)
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": "inspyrenet-lite"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise ImageLoadError(name, f"it sends {int(length)} bytes, above the limit of {max_bytes}")
            chunks, size = [], 0
            while chunk := response.read(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise ImageLoadError(name, f"it sends more than the limit of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise ImageLoadError(name, f"the download took longer than {timeout_s:g} s; try again or "
                                         "download the file yourself")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise ImageLoadError(name, f"the server answered {exc.code} {exc.reason}; check the address") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageLoadError(
            name, f"it cannot be fetched ({reason}); check the address and the network, or download the file "
            "and give its path"
        ) from None
    return b"".join(chunks)


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageLoadError(name, f"it has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise TooManyPixelsError(
            name,
            f"{width}x{height} = {width * height} pixels is above the limit of {max_pixels}; "
            f"downscale it first or raise max_pixels (--max-pixels on the command line, 0 for no limit)",
        )


_guard_lock = threading.Lock()


def allow_pixels(max_pixels: int | None) -> None:
    """Widen Pillow's decompression-bomb guard so that images up to ``max_pixels`` open (``None``: any).

    Pillow refuses images above ``2 * Image.MAX_IMAGE_PIXELS``, a process-wide
    value. It is raised only when our limit is above it, only ever upwards,
    under a lock: calling this again (e.g. for every decode) changes nothing.
    ``Remover`` calls it once when it is built.
    """
    with _guard_lock:
        current = Image.MAX_IMAGE_PIXELS
        if current is None or (max_pixels is not None and max_pixels <= 2 * current):
            return
        Image.MAX_IMAGE_PIXELS = None if max_pixels is None else -(-max_pixels // 2)
        logger.info("Pillow's pixel guard widened to %s for max_pixels=%s", Image.MAX_IMAGE_PIXELS, max_pixels)


def _warn_if_animated(name: str, img: Image.Image) -> None:
    frames = getattr(img, "n_frames", 1)
    if isinstance(frames, int) and frames > 1:
        logger.warning("%s has %d frames (animation or pages); only the first is used", name, frames)


def _decode(name: str, stream: io.RawIOBase | io.BufferedIOBase, max_pixels: int | None) -> Image.Image:
    """Open, check the size from the header, then decode and convert to RGB."""
    head = stream.read(1)
    if not head:
        raise ImageLoadError(name, "the file is empty")
    stream.seek(0)
    with warnings.catch_warnings():
        # The pixel limit is checked below with a clear message.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(stream)
        except UnidentifiedImageError as exc:
            raise ImageLoadError(name, "it is not an image in a format Pillow can read") from exc
        except Image.DecompressionBombError as exc:
            raise TooManyPixelsError(name, _too_many_pixels(exc, max_pixels)) from exc
        except _DECODE_ERRORS as exc:
            raise ImageLoadError(name, f"it cannot be decoded ({exc})") from exc
        with img:
            _check_pixels(name, img.size, max_pixels)
            _warn_if_animated(name, img)
            try:
                img.load()
                img = ImageOps.exif_transpose(img)
            except Image.DecompressionBombError as exc:
                raise TooManyPixelsError(name, _too_many_pixels(exc, max_pixels)) from exc
            except _DECODE_ERRORS as exc:
                raise ImageLoadError(name, f"it is truncated or corrupt ({exc}); re-export or re-download it") from exc
            return to_rgb(name, img)


def _too_many_pixels(exc: Exception, max_pixels: int | None) -> str:
    # Only reached when Pillow's guard is below our limit (changed by other code).
    return (
        f"it has too many pixels ({exc}); the limit is max_pixels={max_pixels} "
        "(--max-pixels on the command line, 0 for no limit)"
    )


def to_rgb(name: str, img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, scaling 16-bit data instead of clipping it."""
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        grey = np.asarray(img).astype(np.float64)
        top = float(grey.max(initial=0.0))
        # Mode I holds whatever range its writer used: 8-bit values stay as they are.
        full = 65535.0 if mode != "I" or top > 255.0 else 255.0
        if mode == "I" and top > 65535.0:
            full = top
        grey = np.clip(np.rint(grey * (255.0 / full)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        grey = np.asarray(img).astype(np.float64)
        scale = 255.0 if np.nanmax(grey, initial=0.0) <= 1.0 else 1.0
        grey = np.clip(np.rint(np.nan_to_num(grey) * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
    if mode in _PREMULTIPLIED:
        img = img.convert(_PREMULTIPLIED[mode])
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
        return encode_image(result, "PNG")
    return result


def encode_image(img: Image.Image, fmt: str, quality: int | None = None) -> bytes:
    """``img`` encoded in Pillow format ``fmt`` as :func:`save_image` writes it (flattened where the format
    holds no alpha, the metadata the format carries, :func:`encode_options`)."""
    fmt = fmt.upper()
    img = for_format(img, fmt)
    options = encode_options(img, fmt, quality)
    buffer = io.BytesIO()
    try:
        img.save(buffer, format=fmt, **options)
    except (ValueError, OSError) as exc:  # metadata the encoder refuses: the image matters, not its EXIF
        logger.info("encoding with the metadata failed (%s); the result goes without it", exc)
        buffer = io.BytesIO()
        img.save(buffer, format=fmt, **{k: v for k, v in options.items() if k not in _METADATA_KEYS})
    return buffer.getvalue()


_METADATA_KEYS = ("exif", "icc_profile", "dpi")


#: JPEG quality when none is given: high, since results are often edited further.
DEFAULT_JPEG_QUALITY = 95
_METADATA_FORMATS = {
    "PNG": ("icc_profile", "exif", "dpi"),
    "JPEG": ("icc_profile", "exif", "dpi"),
    "WEBP": ("icc_profile", "exif"),
    "TIFF": ("icc_profile", "exif", "dpi"),
    "BMP": ("dpi",),
}


def carry_metadata(source: Image.Image, result: Image.Image) -> Image.Image:
    """Copy the ICC profile, DPI and EXIF of ``source`` into ``result.info``.

    The ICC profile is kept only when it describes RGB data and ``result`` is
    RGB or RGBA (a map or a CMYK profile would be mislabelled). EXIF
    orientation is not carried: decoding applied it, so it is reset to 1.
    Returns ``result``.
    """
    info = source.info
    icc = info.get("icc_profile")
    if icc and len(icc) >= 20 and icc[16:20] == b"RGB " and result.mode in ("RGB", "RGBA"):
        result.info["icc_profile"] = icc
    if "dpi" in info:
        result.info["dpi"] = info["dpi"]
    exif = source.getexif()
    if len(exif):
        if exif.get(_ORIENTATION, 1) != 1:
            exif[_ORIENTATION] = 1
        result.info["exif"] = exif.tobytes()
    return result


_ORIENTATION = 0x0112


def encode_options(img: Image.Image, fmt: str, quality: int | None = None) -> dict:
    """Pillow ``save`` options for ``fmt``: metadata from ``img.info`` where the
    format holds it (not an EXIF block too long for a JPEG segment); WebP lossless
    unless ``quality`` is given; JPEG at ``quality`` (default :data:`DEFAULT_JPEG_QUALITY`)."""
    fmt = fmt.upper()
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ValueError(f"quality must be an integer in 1..100, got {quality!r}")
    options = {key: img.info[key] for key in _METADATA_FORMATS.get(fmt, ()) if img.info.get(key)}
    if fmt == "WEBP":
        # "exact" keeps the colour under fully transparent pixels: lossless means every channel.
        lossless = {"lossless": True, "exact": True, "quality": 100, "method": 4}
        options.update(lossless if quality is None else {"quality": quality})
    elif fmt == "JPEG":
        options["quality"] = DEFAULT_JPEG_QUALITY if quality is None else quality
        if len(options.get("exif", b"")) > JPEG_MAX_EXIF:
            logger.info("the EXIF (%d bytes) is too long for a JPEG segment; written without it", len(options["exif"]))
            del options["exif"]
    return options


#: JPEG keeps EXIF in one APP1 segment: at most 65 535 bytes less its 2-byte length.
JPEG_MAX_EXIF = 65_533


def save_image(
    img: Image.Image,
    path: str | os.PathLike,
    format: str | None = None,
    quality: int | None = None,
    on_replaced: Callable[[], None] | None = None,
) -> Path:
    """Write ``img`` to ``path`` atomically: encode to a temporary file in the
    same folder, then rename it over ``path``. An interrupted or failed write
    leaves no partial file behind (and an existing ``path`` untouched).

    The file gets the user's normal permissions (``0o666 & ~umask``). The ICC
    profile, DPI and EXIF in ``img.info`` are written where the format can
    hold them (see :func:`carry_metadata`). WebP is lossless unless
    ``quality`` (1-100) is given; JPEG, always lossy, uses ``quality``
    (default 95). ``on_replaced`` runs right after the rename with stop
    signals held (:func:`inspyrenet_lite._atomic.atomic_open`).

    A format without transparency (JPEG, BMP) gets an image with alpha
    flattened onto white (:data:`FLATTEN_BACKGROUND`), as a viewer shows it;
    save as PNG or WebP to keep the transparency.
    """
    path = Path(path)
    fmt = format or Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {str(path)!r} from its suffix; pass format=")
    data = encode_image(img, fmt, quality)
    with atomic_open(path, on_replaced) as fh:
        fh.write(data)
    logger.debug("wrote %s", path)
    return path


#: The background an image with alpha is flattened onto for a format without transparency: white.
FLATTEN_BACKGROUND = (255, 255, 255)
#: Pillow format names that hold no alpha channel (images are flattened for them).
NO_ALPHA_FORMATS = frozenset({"JPEG", "BMP"})


def for_format(img: Image.Image, format: str) -> Image.Image:
    """``img`` as Pillow can write it in ``format``: flattened onto :data:`FLATTEN_BACKGROUND` (as a
    viewer shows it) where the format holds no alpha, in RGB or L there."""
    if format.upper() not in NO_ALPHA_FORMATS or img.mode in ("RGB", "L"):
        return img
    return flatten(img) if _has_alpha(img) else img.convert("RGB")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (img.mode == "P" and "transparency" in img.info)


def flatten(img: Image.Image, background: tuple[int, int, int] = FLATTEN_BACKGROUND) -> Image.Image:
    """``img`` composited over ``background`` as an RGB image (its ``info``, e.g. the ICC profile, kept)."""
    rgba = img.convert("RGBA")
    out = Image.new("RGBA", rgba.size, (*background, 255))
    out.alpha_composite(rgba)
    result = out.convert("RGB")
    result.info.update(img.info)
    result.info.pop("transparency", None)
    return result
