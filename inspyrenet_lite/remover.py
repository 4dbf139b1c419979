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

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checks import STRIDE, check_options
from .compositing import OutputSpec, OutputType, apply_threshold_reverse, composite, parse_output_type
from .image_io import DEFAULT_MAX_PIXELS, ImageInput, LoadedImage, carry_metadata, load_image, to_kind

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Default cap on the shorter side of high-resolution (and dynamic) passes.
DEFAULT_HR_SHORT_SIDE = 1280
#: Default cap on the longer side of those passes (the axial attention is
#: quadratic in a side): above it the base-size pass is used instead.
DEFAULT_HR_LONG_SIDE = 2560
#: Default cap on the pixels of those passes (memory grows about 1 GB per
#: megapixel of the pass, see README "Limits"): above it the base-size pass is used.
DEFAULT_HR_MAX_PIXELS = 4_000_000
_STRIDE = STRIDE
_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks cuda, then mps, then cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def own_size(width: int, height: int, short_side: int = DEFAULT_HR_SHORT_SIDE) -> tuple[int, int]:
    """The network input size (H, W) for an image at its own resolution.

    The shorter side is capped at ``short_side`` (keeping the aspect ratio),
    then both sides are rounded to the nearest multiple of 32 (ties to even,
    at least 32).
    This is the size of the high-resolution pass of pyramid blending and of
    ``resize="dynamic"``.
    """
    scale = min(1.0, short_side / min(width, height))
    return (_round32(height * scale), _round32(width * scale))


def _round32(x: float) -> int:
    # Python's round() (ties to even), as the reference's dynamic resize rounds:
    # a 400-pixel side becomes 384, not 416.
    return max(_STRIDE, round(x / _STRIDE) * _STRIDE)


class Remover:
    """Background removal with an InSPyReNet checkpoint.

    Args:
        model: a registry name (``inspyrenet-lite models`` lists them; default
            ``"fast"``), a Hub repo ``"owner/name"`` or a folder saved with
            ``InSPyReNet.save_pretrained``. ``mode=`` is an alias.
        device: a torch device; ``None`` picks cuda, then mps, then cpu.
        ckpt: a local checkpoint (``.pth`` or ``.safetensors``, authors' key
            layout) instead of the download; the environment variable
            ``INSPYRENET_LITE_CKPT`` does the same. Its backbone is read from
            its keys; its base size from ``base_size``, the file's metadata or
            the model named.
        resize: ``"static"`` (the network sees the image at the model's base
            size) or ``"dynamic"`` (at the image's own size, shorter side
            capped at ``hr_short_side``, both sides rounded to multiples of 32:
            sharper edges, less stable). ``None``: the model's default.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast). ``"fp16"``
            is refused on a CPU (ValueError): it is emulated there, about 70
            times slower than fp32; use ``"fp32"`` or ``"bf16"``.
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

    Each registry model brings the authors' inference defaults (resize,
    pyramid blending); arguments given here or to ``process`` override them.
    """

    def __init__(
        self,
        model: str | None = None,
        device: str | torch.device | None = None,
        ckpt: str | os.PathLike | None = None,
        resize: Literal["static", "dynamic"] | None = None,
        precision: Literal["fp32", "fp16", "bf16"] = "fp32",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        hr_short_side: int | None = None,
        hr_long_side: int = DEFAULT_HR_LONG_SIDE,
        hr_max_pixels: int = DEFAULT_HR_MAX_PIXELS,
        *,
        mode: str | None = None,
        hr_blend: float | None = None,
        base_size: tuple[int, int] | int | None = None,
        backend: Literal["torch", "onnxruntime", "auto"] = "torch",
    ) -> None:
        from . import model_source

        name = model_source.pick_name(model, mode)
        entry = model_source.MODELS.get(name)
        options = check_options(
            resize=resize if resize is not None else (entry.resize if entry else "static"),
            precision=precision,
            max_pixels=max_pixels,
            hr_short_side=hr_short_side if hr_short_side is not None else (entry.short_side if entry else DEFAULT_HR_SHORT_SIDE),
            hr_long_side=hr_long_side,
            hr_max_pixels=hr_max_pixels,
            hr_blend=hr_blend if hr_blend is not None else (entry.hr_blend if entry else 0.0),
        )
        device = pick_device(device)
        if precision == "fp16" and device.type == "cpu":
            raise ValueError(
                "precision='fp16' on a CPU is emulated and about 70x slower than fp32 (it looks like a hang); "
                "use precision='fp32' or 'bf16' on a CPU, or fp16 on a GPU"
            )
        if resize == "dynamic" and name == "fast":
            warnings.warn(
                "resize='dynamic' runs the fast model (trained at 384x384) at the image's own size, "
                "which usually gives worse maps; prefer mode='base' for dynamic resizing, or hr_blend "
                "for high-resolution detail with the fast model",
                UserWarning,
                stacklevel=2,
            )
        self.mode = name
        self.entry = entry
        self.resize = options["resize"]
        self.hr_blend: float = options["hr_blend"]
        self.precision = precision
        self.max_pixels: int | None = options["max_pixels"]
        self.hr_short_side: int = options["hr_short_side"]
        self.hr_long_side: int = options["hr_long_side"]
        self.hr_max_pixels: int = options["hr_max_pixels"]
        self.device = device

        loaded = model_source.load(name, ckpt=ckpt, base_size=base_size, device=self.device)
        self.checkpoint_path = Path(loaded.weights_file) if loaded.weights_file else None
        model = loaded.model
        self.model = model.eval()
        self.base_size: tuple[int, int] = tuple(model.base_size)  # (H, W)
        from .backends import create_backend

        self.backend = create_backend(
            backend, self.model, device=self.device, precision=precision, checkpoint_path=self.checkpoint_path
        )
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
        logger.info("Remover ready: model=%s device=%s source=%s", name, self.device, loaded.source)

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
                path, encoded bytes, or a list of these. An alpha channel in
                the input is ignored for the prediction.
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
            The same kind as the input: PIL image for a PIL image or a path,
            numpy array for an array, PNG bytes for bytes, a list for a list.

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
        spec = parse_output_type(type, max_pixels=self.max_pixels)
        threshold, hr_blend, reverse = options["threshold"], options["hr_blend"], options["reverse"]
        if isinstance(image, (list, tuple)):
            return list(self._process_many(image, spec, threshold, hr_blend, reverse, batch_size, errors))
        loaded = load_image(image, max_pixels=self.max_pixels)
        pred = self._predict_loaded([loaded], hr_blend)[0]
        return self._finish(loaded, pred, spec, threshold, reverse)

    def predict(self, image: ImageInput, hr_blend: float | None = None) -> np.ndarray:
        """The saliency map of one image: float32 HxW in [0, 1] at the image's size."""
        hr_blend = check_options(hr_blend=self.hr_blend if hr_blend is None else hr_blend)["hr_blend"]
        loaded = load_image(image, max_pixels=self.max_pixels)
        return self._predict_loaded([loaded], hr_blend)[0]

    def high_resolution_notice(self, size: tuple[int, int], hr_blend: float = 0.0) -> str | None:
        """Why an image of ``size`` (width, height) gets the base-size pass
        instead of the high-resolution (or dynamic) one it asked for, or
        ``None`` when it gets what it asked for."""
        if hr_blend <= 0.0 and self.resize != "dynamic":
            return None
        width, height = size
        pass_h, pass_w = own_size(width, height, self.hr_short_side)
        what = "high-resolution pass (hr_blend)" if hr_blend > 0.0 else "dynamic resize"
        if max(pass_h, pass_w) > self.hr_long_side:
            reason = f"its longer side would be {max(pass_h, pass_w)} px, above hr_long_side={self.hr_long_side}"
        elif pass_h * pass_w > self.hr_max_pixels:
            reason = f"it would have {pass_h * pass_w} pixels, above hr_max_pixels={self.hr_max_pixels}"
        else:
            return None
        return (
            f"{width}x{height} image: the {what} at {pass_w}x{pass_h} is skipped because {reason}; "
            f"the base-size pass ({self.base_size[1]}x{self.base_size[0]}) is used instead. "
            "Raise hr_long_side / hr_max_pixels if you have the memory."
        )

    # --------------------------------------------------------------- internals
    def _process_many(
        self,
        images: Sequence[ImageInput],
        spec: OutputSpec,
        threshold: float | None,
        hr_blend: float,
        reverse: bool,
        batch_size: int,
        errors: str,
    ) -> Iterator[Any]:
        skip = errors == "skip"
        # Decode one window of images at a time so memory stays bounded.
        for start in range(0, len(images), batch_size):
            window: list[LoadedImage | Exception] = []
            for img in images[start : start + batch_size]:
                try:
                    window.append(load_image(img, max_pixels=self.max_pixels))
                except Exception as exc:
                    if not skip:
                        raise
                    window.append(exc)
            loaded = [item for item in window if isinstance(item, LoadedImage)]
            preds: list[np.ndarray | Exception] = []
            if loaded:
                try:
                    preds = list(self._predict_loaded(loaded, hr_blend))
                except Exception:
                    if not skip:
                        raise
                    logger.debug("a batch failed; running its images one at a time", exc_info=True)
                    preds = [self._try(lambda item=item: self._predict_loaded([item], hr_blend)[0]) for item in loaded]
            results = iter(zip(loaded, preds, strict=True))
            for item in window:
                if isinstance(item, Exception):
                    yield item
                    continue
                _, pred = next(results)
                if isinstance(pred, Exception):
                    yield pred
                elif skip:
                    yield self._try(lambda item=item, pred=pred: self._finish(item, pred, spec, threshold, reverse))
                else:
                    yield self._finish(item, pred, spec, threshold, reverse)

    @staticmethod
    def _try(work: Any) -> Any:
        """``work()``, or the exception it raised (for ``errors="skip"``)."""
        try:
            return work()
        except Exception as exc:
            return exc

    def _finish(
        self, loaded: LoadedImage, pred: np.ndarray, spec: OutputSpec, threshold: float | None, reverse: bool
    ) -> Any:
        alpha = apply_threshold_reverse(pred, threshold, reverse)
        # The input's colour profile, DPI and EXIF go with the result, for the file it is saved to.
        result = carry_metadata(loaded.rgb, composite(loaded.rgb, alpha, spec))
        return to_kind(result, loaded.kind)

    def _network_sizes(self, loaded: LoadedImage, hr_blend: float) -> tuple[tuple[int, int], tuple[int, int] | None]:
        """(size of the main pass, size of the LR pass or None), sizes as (H, W)."""
        width, height = loaded.size
        if hr_blend <= 0.0 and self.resize != "dynamic":
            return self.base_size, None
        notice = self.high_resolution_notice(loaded.size, hr_blend)
        if notice is not None:
            logger.warning("%s: %s", loaded.name, notice)
            return self.base_size, None
        if hr_blend > 0.0:
            return own_size(width, height, self.hr_short_side), self.base_size
        return own_size(width, height, self.hr_short_side), None

    def _predict_loaded(self, items: Sequence[LoadedImage], hr_blend: float) -> list[np.ndarray]:
        """Maps (float32 HxW in [0, 1]) for decoded images, batched by network size.

        ``hr_blend`` has been checked by the public caller.
        """
        groups: dict[tuple, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(self._network_sizes(item, hr_blend), []).append(index)
        results: list[np.ndarray | None] = [None] * len(items)
        for (size, lr_size), indices in groups.items():
            batch = [items[i] for i in indices]
            x = torch.stack([self._to_tensor(item.rgb, size) for item in batch]).to(self.device)
            x_lr = None
            if lr_size is not None:
                x_lr = torch.stack([self._to_tensor(item.rgb, lr_size) for item in batch]).to(self.device)
            with torch.inference_mode(), self._autocast():
                pred = self.backend.predict(x, x_lr=x_lr, hr_blend=hr_blend)
                pred = pred.float()
                if not bool(torch.isfinite(pred).all()):
                    raise RuntimeError(
                        f"the network returned NaN or infinite values at precision {self.precision!r} "
                        "(fp16 overflows most easily); use precision='fp32' or 'bf16'"
                    )
                for row, (i, item) in enumerate(zip(indices, batch, strict=True)):
                    width, height = item.size
                    full = F.interpolate(pred[row : row + 1], size=(height, width), mode="bilinear", align_corners=True)
                    results[i] = full[0, 0].clamp_(0.0, 1.0).cpu().numpy()
        return results  # type: ignore[return-value]

    def _to_tensor(self, rgb: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        """PIL bilinear resize to ``size`` (H, W), /255, ImageNet mean/std, CHW float32."""
        height, width = size
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
        arr = torch.from_numpy(np.asarray(rgb, dtype=np.float32).copy()).permute(2, 0, 1)
        return (arr / 255.0 - self._mean) / self._std

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = _PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)
