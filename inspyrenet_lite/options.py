"""The options of the road from a map to a file, typed and checked once.

:class:`OutputOptions` says what a result looks like (the output type,
threshold, reverse) and how it is encoded (format, quality). It checks itself
when built, so the Python API, the command line and the HTTP service refuse a
bad value with the same words: the CLI turns the ``ValueError`` into its usage
error, the service into a 422 naming the field.

:data:`FORMATS` is the one table of output formats (name, Pillow format,
media type, suffix, whether it holds alpha, whether it takes a quality).

>>> from inspyrenet_lite.options import OutputOptions
>>> OutputOptions(format="webp", quality=90).output_format.media_type
'image/webp'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .checks import check_options
from .compositing import BASIC_TYPES, OutputSpec, OutputType, parse_colour, parse_output_type


@dataclass(frozen=True)
class OutputFormat:
    """One output format: ``name`` as users write it, Pillow's name, the media type and suffix."""

    name: str
    pillow: str
    media_type: str
    suffix: str
    alpha: bool
    lossy: bool  # takes a quality (1-100); the others are always lossless


_PNG = OutputFormat("png", "PNG", "image/png", ".png", alpha=True, lossy=False)
_JPEG = OutputFormat("jpg", "JPEG", "image/jpeg", ".jpg", alpha=False, lossy=True)

#: Every output format by the name users write (``jpeg`` is ``jpg``).
FORMATS: dict[str, OutputFormat] = {
    "png": _PNG,
    "webp": OutputFormat("webp", "WEBP", "image/webp", ".webp", alpha=True, lossy=True),
    "jpg": _JPEG,
    "jpeg": _JPEG,
    "bmp": OutputFormat("bmp", "BMP", "image/bmp", ".bmp", alpha=False, lossy=False),
    "tiff": OutputFormat("tiff", "TIFF", "image/tiff", ".tiff", alpha=True, lossy=False),
}
#: Formats that take ``quality``.
QUALITY_FORMATS = tuple(sorted({fmt.name for fmt in FORMATS.values() if fmt.lossy}))
#: The quality range of the lossy formats.
QUALITY_RANGE = (1, 100)


def output_format(name: str) -> OutputFormat:
    """The format called ``name`` (case-insensitive); ``ValueError`` listing the choices otherwise."""
    fmt = FORMATS.get(name.strip().lower()) if isinstance(name, str) else None
    if fmt is None:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {name!r}")
    return fmt


def output_type(text: str, *, files: bool = True, max_pixels: int | None = None) -> OutputSpec:
    """Parse an output type written as text; ``files=False`` (a service) never reads a path."""
    if files:
        return parse_output_type(text, max_pixels=max_pixels)
    lowered = text.strip().lower()
    if lowered in BASIC_TYPES:
        return OutputSpec(lowered)
    colour = parse_colour(text)
    if colour is None:
        raise ValueError(
            f"unknown type {text!r}; choose {', '.join(BASIC_TYPES)}, green, white or a colour (#rrggbb)"
        )
    return OutputSpec("colour", colour=colour)


@dataclass(frozen=True)
class OutputOptions:
    """What a result looks like and how it is encoded; checked when built (``ValueError``).

    Args:
        spec: the output type, parsed (:func:`~inspyrenet_lite.compositing.parse_output_type`
            or :func:`output_type`); use :meth:`of` to pass it as the user wrote it.
        threshold: ``None`` (the soft map) or a number in [0, 1]: map values above it are foreground.
        reverse: keep the background instead of the foreground.
        format: a key of :data:`FORMATS`.
        quality: 1-100 for the lossy formats (jpg, webp); ``None``: jpg at 95, webp lossless.
    """

    spec: OutputSpec = field(default_factory=lambda: OutputSpec("rgba"))
    threshold: float | None = None
    reverse: bool = False
    format: str = "png"
    quality: int | None = None

    def __post_init__(self) -> None:
        checked = check_options(threshold=self.threshold, reverse=self.reverse)
        object.__setattr__(self, "threshold", checked["threshold"])
        object.__setattr__(self, "reverse", checked["reverse"])
        fmt = output_format(self.format)
        object.__setattr__(self, "format", self.format.strip().lower())
        if self.quality is not None:
            low, high = QUALITY_RANGE
            if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not low <= self.quality <= high:
                raise ValueError(f"quality must be an integer in {low}..{high}, got {self.quality!r}")
            if not fmt.lossy:
                raise ValueError(
                    f"quality applies to {' and '.join(QUALITY_FORMATS)}; format {self.format} is always lossless"
                )
        if self.spec.has_alpha and not fmt.alpha:
            raise ValueError(
                f"format {self.format} cannot store transparency; use png or webp, or a type without alpha "
                "(white, a colour, map, blur, overlay)"
            )

    @classmethod
    def of(
        cls, type: OutputType = "rgba", *, files: bool = True, max_pixels: int | None = None, **options: object
    ) -> OutputOptions:
        """Options with the output type as written (``files=False``: no background image by path)."""
        spec = output_type(type, files=files, max_pixels=max_pixels) if isinstance(type, str) else (
            parse_output_type(type, max_pixels=max_pixels)
        )
        return cls(spec=spec, **options)  # type: ignore[arg-type]

    @property
    def output_format(self) -> OutputFormat:
        """The :class:`OutputFormat` of :attr:`format`."""
        return FORMATS[self.format]
