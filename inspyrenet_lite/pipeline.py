"""The road of one image, written once: decode -> predict -> render -> encode.

Every room uses these four steps and only adapts where items come from and
where results go: :class:`~inspyrenet_lite.remover.Remover` (Python objects),
the job runners and worker processes (files), Ray (rows), the HTTP service
(request bodies) and the Space.

>>> from inspyrenet_lite import pipeline
>>> loaded = pipeline.decode("photo.jpg")                         # doctest: +SKIP
>>> pred = pipeline.predict(predictor, [loaded])[0]               # doctest: +SKIP
>>> image = pipeline.render(loaded.rgb, pred, OutputOptions())    # doctest: +SKIP
>>> data = pipeline.encode(image, "webp", quality=90)             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from .compositing import apply_threshold_reverse, composite
from .image_io import DEFAULT_MAX_PIXELS, ImageInput, LoadedImage, carry_metadata, encode_image, load_image
from .options import OutputOptions, output_format
from .predictor import MapRequest

if TYPE_CHECKING:
    from .predictor import Predictor

__all__ = ["decode", "predict", "render", "encode", "OutputOptions"]


def decode(source: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """``source`` (path, address, bytes, file, PIL image or array) as an RGB image with its kind and name.

    Raises :class:`~inspyrenet_lite.image_io.ImageLoadError` naming the input
    (:class:`~inspyrenet_lite.image_io.TooManyPixelsError` above ``max_pixels``).
    """
    return load_image(source, max_pixels=max_pixels)


def predict(
    predictor: Predictor,
    images: Sequence[LoadedImage | Image.Image],
    *,
    hr_blend: float | None = None,
    resize: str | None = None,
    errors: Literal["raise", "skip"] = "raise",
) -> list[np.ndarray | Exception]:
    """Maps (float32 HxW in [0, 1], each at its image's size) for decoded images, batched by network size.

    ``None`` options take the predictor's defaults; ``errors="skip"`` puts a
    failed item's exception in its place.
    """
    requests = [
        MapRequest(item.rgb, resize=resize, hr_blend=hr_blend, name=item.name)
        if isinstance(item, LoadedImage)
        else MapRequest(item, resize=resize, hr_blend=hr_blend)
        for item in images
    ]
    return predictor.predict_maps(requests, batch_size=max(1, len(requests)), errors=errors)


def render(
    image: Image.Image, pred: np.ndarray, options: OutputOptions, between_tiles: Callable[[], None] | None = None
) -> Image.Image:
    """The result for ``options`` (type, threshold, reverse) of ``image`` and its map, carrying the
    image's colour profile, DPI and EXIF for the file it is saved to. ``between_tiles`` runs before each
    row tile of the compositing (a service stops work past its deadline there)."""
    alpha = apply_threshold_reverse(pred, options.threshold, options.reverse)
    return carry_metadata(image, composite(image, alpha, options.spec, between_tiles))


def encode(image: Image.Image, format: str = "png", quality: int | None = None) -> bytes:
    """``image`` as the bytes of a file in ``format`` (a key of :data:`~inspyrenet_lite.options.FORMATS`):
    flattened onto white where the format holds no alpha, with the metadata the format carries."""
    return encode_image(image, output_format(format).pillow, quality)
