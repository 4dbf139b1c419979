"""``Remover``: from a photo to a cut-out in one call.

>>> from inspyrenet_lite import Remover
>>> remover = Remover()                          # fast mode, authors' weights
>>> cutout = remover.process("photo.jpg")        # PIL RGBA image

Results come back as the kind of input given: a PIL image for a PIL image or
a path, a numpy array for an array, PNG bytes for bytes, and a list for a
list. Inputs are decoded by :mod:`inspyrenet_lite.image_io` and outputs built
by :mod:`inspyrenet_lite.compositing` (see those modules for the accepted
inputs and output types).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch

from . import pipeline
from .checks import check_options
from .compositing import OutputType, parse_output_type
from .image_io import DEFAULT_MAX_PIXELS, ImageInput, LoadedImage, allow_pixels, to_kind
from .options import OutputOptions
from .predictor import Predictor, check_precision_on, inference_defaults
from .transforms import DEFAULT_HR_LONG_SIDE, DEFAULT_HR_MAX_PIXELS

logger = logging.getLogger(__name__)

#: Models trained at this base size or below give worse maps when run at an image's own size.
_SMALL_BASE = 384


def _delegate(name: str) -> property:
    """A Remover attribute that is its Predictor's (read and written there)."""
    return property(lambda self: getattr(self.predictor, name), lambda self, value: setattr(self.predictor, name, value))


class Remover:
    """Background removal with an InSPyReNet checkpoint.

    Args:
        model: a registry name (``inspyrenet-lite models`` lists them; default
            ``"fast"``), a Hub repo ``"owner/name"`` (or ``"hf-hub:owner/name"``),
            a folder saved with ``InSPyReNet.save_pretrained``, a checkpoint
            file, or a :class:`~inspyrenet_lite.predictor.Predictor` already
            built (``Remover(predictor)``: the Remover adds decoding and
            rendering around it; the loading options then belong to the
            predictor). ``mode=`` is an alias.
        device: a torch device; ``None`` picks cuda, then mps, then cpu. One that cannot
            run here (e.g. ``"cuda"`` without CUDA) raises ValueError naming the devices here.
        ckpt: a local checkpoint (``.pth`` or ``.safetensors``, authors' key
            layout, or this package's own: ``torch.save(model.state_dict())``)
            instead of the download; the environment variable
            ``INSPYRENET_LITE_CKPT`` does the same. Its backbone is read from
            its keys; its base size from ``base_size``, the file's metadata or
            the model named.
        resize: ``"static"`` (the network sees the image at the model's base
            size) or ``"dynamic"`` (at the image's own size, shorter side
            capped at ``hr_short_side``, both sides rounded to multiples of 32:
            sharper edges, less stable). ``None``: the model's default.
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` (autocast) or ``"int8"``.
            ``"fp16"`` is refused on a CPU (ValueError): it is emulated there,
            about 70 times slower than fp32; use ``"fp32"`` or ``"bf16"``.
            ``"int8"`` (CPU, with ``backend="onnxruntime"`` or ``"auto"``):
            the network in ONNX Runtime with its linear layers in int8,
            closer to fp32 than bf16 on a trained model and faster than fp32
            (see README, "Which precision").
        max_pixels: inputs with more pixels are refused before decoding
            (``None``: no limit; Pillow's own guard is lifted to match).
        hr_short_side: the shorter side of the high-resolution pass
            (``hr_blend > 0``) and of dynamic resizing is scaled down to this;
            ``None``: the model's default.
        hr_long_side: if that pass would still have a longer side above
            this, the base-size pass is used instead (logged notice).
        hr_max_pixels: likewise for the pass's total pixels (each megapixel
            of that pass costs about 1 GB of memory).
        hr_blend: default pyramid-blending strength of ``process``/``predict``;
            ``None``: the model's default (the authors' setting).
        base_size: (H, W) of a ``ckpt`` that does not say it.
        backend: ``"torch"``, ``"onnxruntime"`` (CPU, fp32: the network exported
            to ONNX on first use, verified and cached in the weights cache;
            faster where ONNX Runtime's matrix products beat PyTorch's, e.g.
            on AMD CPUs) or ``"auto"`` (onnxruntime when it applies, is
            installed and its matrix products measure at least 1.5x
            PyTorch's here). See :mod:`inspyrenet_lite.backends`.
        compile: compile the network with ``torch.compile`` (inductor): the
            first image of each network size waits for the compiler (minutes
            on a small CPU; inductor's disk cache makes a later process's
            compile take under a minute), later ones run faster where compiling pays
            (see README, "Which precision, backend and compile"). A failed
            compilation is logged once and the model runs uncompiled.

    Each registry model brings the authors' inference defaults (resize,
    pyramid blending); arguments given here or to ``process`` override them.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Predictor | None = None,
        device: str | torch.device | None = None,
        ckpt: str | os.PathLike | None = None,
        resize: Literal["static", "dynamic"] | None = None,
        precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        hr_short_side: int | None = None,
        hr_long_side: int = DEFAULT_HR_LONG_SIDE,
        hr_max_pixels: int = DEFAULT_HR_MAX_PIXELS,
        *,
        mode: str | None = None,
        hr_blend: float | None = None,
        base_size: tuple[int, int] | int | None = None,
        backend: Literal["torch", "onnxruntime", "auto"] = "torch",
        compile: bool = False,
    ) -> None:
        max_pixels = check_options(max_pixels=max_pixels)["max_pixels"]
        if isinstance(model, Predictor):
            given = {name: value for name, value in (
                ("device", device), ("ckpt", ckpt), ("resize", resize), ("mode", mode), ("hr_blend", hr_blend),
                ("base_size", base_size), ("hr_short_side", hr_short_side),
            ) if value is not None}
            given.update({name: value for name, value, default in (
                ("precision", precision, "fp32"), ("backend", backend, "torch"), ("compile", compile, False),
                ("hr_long_side", hr_long_side, DEFAULT_HR_LONG_SIDE),
                ("hr_max_pixels", hr_max_pixels, DEFAULT_HR_MAX_PIXELS),
            ) if value != default})
            if given:
                raise ValueError(
                    f"Remover(predictor) takes the predictor's settings; {', '.join(given)} belong to "
                    "Predictor.from_pretrained(...) (or Remover.from_pretrained(...))"
                )
            self._adopt(model, max_pixels)
            return
        from . import model_source

        name = model_source.pick_name(model, mode)
        defaults = inference_defaults(model_source.MODELS.get(name))
        # Every option is checked before anything is loaded or downloaded.
        options = check_options(
            resize=resize if resize is not None else defaults["resize"],
            precision=precision,
            hr_short_side=hr_short_side if hr_short_side is not None else defaults["hr_short_side"],
            hr_long_side=hr_long_side,
            hr_max_pixels=hr_max_pixels,
            hr_blend=hr_blend if hr_blend is not None else defaults["hr_blend"],
        )
        check_precision_on(device, precision)
        predictor = Predictor.from_pretrained(
            name, ckpt=ckpt, base_size=base_size, device=device, backend=backend, compile=compile, **options
        )
        self._adopt(predictor, max_pixels)
        if resize == "dynamic" and max(self.base_size) <= _SMALL_BASE and defaults["resize"] != "dynamic":
            warnings.warn(
                f"resize='dynamic' runs {name!r} (trained at {self.base_size[1]}x{self.base_size[0]}) at the "
                "image's own size, which usually gives worse maps; prefer a model trained at 1024 (e.g. "
                "mode='base') for dynamic resizing, or hr_blend for high-resolution detail",
                UserWarning,
                stacklevel=2,
            )
        logger.info("Remover ready: model=%s device=%s", name, self.device)

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike[str] | None = None, **options: Any) -> Remover:
        """Load ``model`` (registry name, Hub repo, folder or checkpoint file) with the package's one
        loader; the options are the constructor's. The same as ``Remover(model, **options)``."""
        return cls(model, **options)

    def _adopt(self, predictor: Predictor, max_pixels: int | None) -> None:
        from .registry import MODELS

        self.predictor = predictor
        self.mode = predictor.name
        self.entry = MODELS.get(predictor.name)
        self.max_pixels: int | None = max_pixels
        # Pillow's process-wide guard is widened here if max_pixels is above it (never narrowed, never
        # toggled per decode: see image_io.allow_pixels).
        allow_pixels(max_pixels)

    # The Predictor's settings, readable (and for the per-call defaults, settable) here.
    model = property(lambda self: self.predictor.model)
    backend = property(lambda self: self.predictor.backend)
    device = property(lambda self: self.predictor.device)
    precision = property(lambda self: self.predictor.precision)
    base_size = property(lambda self: self.predictor.base_size)
    resize = _delegate("resize")
    hr_blend = _delegate("hr_blend")
    hr_short_side = _delegate("hr_short_side")
    hr_long_side = _delegate("hr_long_side")
    hr_max_pixels = _delegate("hr_max_pixels")
    checkpoint_path = property(lambda self: self.predictor.weights_file)

    def __repr__(self) -> str:
        return (
            f"Remover(model={self.mode!r}, device={str(self.device)!r}, resize={self.resize!r}, "
            f"precision={self.precision!r}, backend={self.backend.name!r})"
        )

    # ----------------------------------------------------------------- public
    def process(
        self,
        image: ImageInput | Sequence[ImageInput],
        type: OutputType = "rgba",
        threshold: float | None = None,
        hr_blend: float | None = None,
        reverse: bool = False,
        batch_size: int = 1,
        errors: Literal["raise", "skip"] = "raise",
    ) -> Any:
        """Remove the background of one image, or of each image of a list.

        Args:
            image: a PIL image, a uint8 numpy array (HxW, HxWx3, HxWx4), a
                path, an ``http(s)://`` address (fetched with a timeout and a
                size cap), encoded bytes, an open binary file (``io.BytesIO``),
                or a list of these. An alpha channel in the input is ignored
                for the prediction.
            type: ``"rgba"``, ``"map"``, ``"green"``, ``"white"``, a colour
                (``(r, g, b)`` or ``"#rrggbb"``), ``"blur"``, ``"overlay"``, or a
                background image (path or PIL image).
            threshold: if set (in [0, 1]), a hard mask: map values above it
                are foreground, the rest background.
            hr_blend: 0 runs one pass at the base size; above 0 (up to 1),
                pyramid blending of that pass with a high-resolution pass at
                the image's own size, with this strength (skipped, with a
                logged notice, where that pass is over ``hr_long_side`` or
                ``hr_max_pixels``). ``None``: the Remover's default (the
                model's, unless set in the constructor).
            reverse: keep the background instead of the foreground.
            batch_size: for lists, how many images go through the network at
                once (images of the same network size share a batch). Each
                image is normalised on its own, so a result is the same as one
                at a time up to float rounding in the convolution kernels (at
                most one grey level, on a few pixels).
            errors: for lists: ``"raise"`` (default) stops at the first item
                that fails; ``"skip"`` goes on, and the failed item's place in
                the returned list holds its exception (an ``Exception``
                instance: test with ``isinstance(result, Exception)``).

        Returns:
            The same kind as the input: PIL image for a PIL image, a path, an
            address or a file; numpy array for an array, PNG bytes for bytes, a
            list for a list.

        Raises:
            ImageLoadError: an input cannot be read (names the input).
            ValueError: a bad argument.
        """
        options = check_options(
            threshold=threshold,
            hr_blend=self.hr_blend if hr_blend is None else hr_blend,
            reverse=reverse,
            batch_size=batch_size,
            errors=errors,
        )
        output = OutputOptions(
            spec=parse_output_type(type, max_pixels=self.max_pixels),
            threshold=options["threshold"],
            reverse=options["reverse"],
        )
        hr_blend = options["hr_blend"]
        if isinstance(image, (list, tuple)):
            return list(self._process_many(image, output, hr_blend, batch_size, errors))
        loaded = pipeline.decode(image, max_pixels=self.max_pixels)
        pred = self._predict_loaded([loaded], hr_blend)[0]
        return self._finish(loaded, pred, output)

    def predict(self, image: ImageInput, hr_blend: float | None = None) -> np.ndarray:
        """The saliency map of one image: float32 HxW in [0, 1] at the image's size."""
        hr_blend = check_options(hr_blend=self.hr_blend if hr_blend is None else hr_blend)["hr_blend"]
        loaded = pipeline.decode(image, max_pixels=self.max_pixels)
        return self._predict_loaded([loaded], hr_blend)[0]

    def high_resolution_notice(self, size: tuple[int, int], hr_blend: float = 0.0) -> str | None:
        """Why an image of ``size`` (width, height) gets the base-size pass
        instead of the high-resolution (or dynamic) one it asked for, or
        ``None`` when it gets what it asked for."""
        return self.predictor.high_resolution_notice(size, hr_blend)

    # --------------------------------------------------------------- internals
    def _process_many(
        self,
        images: Sequence[ImageInput],
        output: OutputOptions,
        hr_blend: float,
        batch_size: int,
        errors: Literal["raise", "skip"],
    ) -> Iterator[Any]:
        skip = errors == "skip"
        # Decode one window of images at a time so memory stays bounded.
        for start in range(0, len(images), batch_size):
            window: list[LoadedImage | Exception] = []
            for img in images[start : start + batch_size]:
                try:
                    window.append(pipeline.decode(img, max_pixels=self.max_pixels))
                except Exception as exc:
                    if not skip:
                        raise
                    window.append(exc)
            loaded = [item for item in window if isinstance(item, LoadedImage)]
            preds = self._predict_loaded(loaded, hr_blend, errors) if loaded else []
            results = iter(zip(loaded, preds, strict=True))
            for item in window:
                if isinstance(item, Exception):
                    yield item
                    continue
                _, pred = next(results)
                if isinstance(pred, Exception):
                    yield pred
                elif skip:
                    yield self._try(lambda item=item, pred=pred: self._finish(item, pred, output))
                else:
                    yield self._finish(item, pred, output)

    @staticmethod
    def _try(work: Any) -> Any:
        """``work()``, or the exception it raised (for ``errors="skip"``)."""
        try:
            return work()
        except Exception as exc:
            return exc

    @staticmethod
    def _finish(loaded: LoadedImage, pred: np.ndarray, options: OutputOptions) -> Any:
        return to_kind(pipeline.render(loaded.rgb, pred, options), loaded.kind)

    def _predict_loaded(
        self, items: Sequence[LoadedImage], hr_blend: float, errors: Literal["raise", "skip"] = "raise"
    ) -> list[np.ndarray | Exception]:
        return pipeline.predict(self.predictor, items, hr_blend=hr_blend, errors=errors)
