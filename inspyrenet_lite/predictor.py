"""``Predictor``: the one inference engine, from decoded images to float saliency maps, in batches.

>>> from inspyrenet_lite.predictor import Predictor, MapRequest
>>> predictor = Predictor.from_pretrained("fast", device="cpu")
>>> maps = predictor.predict_maps([image_a, MapRequest(image_b, hr_blend=1.0)])

Every entry point (``Remover``, the CLI, video, evaluation, the Space, the
service) reaches the network through a Predictor. It holds the model, the
device, the precision and the backend; each item carries its own options
(``resize``, ``hr_blend``), and items that end up with the same network input
size (and blending) share one forward, up to ``batch_size`` at a time.
Options that only change what is done with a map (output type, threshold,
reverse) are not the Predictor's business, so they never split a batch.

Concurrency contract: one Predictor may be called from any number of threads
at once, with different options; each caller gets exactly its own maps.
Forwards of one Predictor run one at a time (a lock around the backend: the
device is one resource, and on a CPU one forward already uses every core);
resizing and normalising the inputs and resizing the maps back run in the
callers' threads. Nothing process-wide (Pillow's limits, torch's thread
count) is changed per call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from .checks import check_options
from .constants import STRIDE
from .transforms import (
    DEFAULT_HR_LONG_SIDE,
    DEFAULT_HR_MAX_PIXELS,
    DEFAULT_HR_SHORT_SIDE,
    map_to_image_size,
    own_size,
    to_tensor,
)

logger = logging.getLogger(__name__)

# int8 is ONNX Runtime's graph; the passes it leaves to PyTorch run in float32.
_AUTOCAST_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": None}
#: Memory of a high-resolution pass per megapixel of it (README, "Limits"), for the skipped-pass notice.
_PASS_GB_PER_MEGAPIXEL = 1.3
#: Default of ``batch_size`` for :meth:`Predictor.predict_maps`.
DEFAULT_BATCH_SIZE = 4

Size = tuple[int, int]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks cuda, then mps, then cpu.

    A device given that cannot run a model here (no CUDA, no such GPU, not a
    device name) raises ValueError saying why and which devices there are.
    """
    if device is not None:
        problem = device_problem(device, "device=")
        if problem is not None:
            raise ValueError(problem)
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_devices() -> list[str]:
    """The devices a model can run on here: ``cpu``, then each CUDA GPU, then ``mps``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def device_problem(device: str | torch.device, flag: str = "--device") -> str | None:
    """Why ``device``, given with option ``flag`` (``"--device"``, ``"device="``), cannot run a model
    here, naming the devices there are (``None`` if it can). Shared by ``Remover``, ``Predictor`` and
    the CLI."""
    given = f"{flag}{str(device)!r}" if flag.endswith("=") else f"{flag} {str(device)!r}"
    here = f"devices here: {', '.join(available_devices())}"
    omit = f"{here}: use one of them, or leave {flag} out"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        return f"{given} is not a torch device ({str(exc).split(' device type at')[0]}); {omit}"
    if parsed.type == "meta":
        return f"{given}: the meta device holds no data and cannot run a model; {omit}"
    mps = getattr(torch.backends, "mps", None)
    missing = {
        "cuda": not torch.cuda.is_available(),
        "mps": mps is None or not mps.is_available(),
    }
    if missing.get(parsed.type, False):
        what = {"cuda": "CUDA (an NVIDIA GPU with its driver)", "mps": "MPS (an Apple GPU)"}[parsed.type]
        return f"{given}: {what} is not available here; {omit}"
    try:
        torch.ones(1, device=parsed).add(1).cpu()
    except Exception as exc:  # not compiled in, no such GPU, driver problems...
        return f"{given} cannot run here ({str(exc).splitlines()[0][:200]}); {omit}"
    return None


def check_precision_on(device: str | torch.device | None, precision: str) -> None:
    """ValueError for a precision that must not run on ``device`` (fp16 on a CPU, int8 off it).

    Checked before the device's availability (:func:`pick_device`): a precision that cannot run on
    a kind of device is the first thing to fix, wherever the code runs.
    """
    try:
        device = pick_device(None) if device is None else torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        return  # not a device name: pick_device says so
    if precision == "int8" and device.type != "cpu":
        raise ValueError(
            f"precision='int8' runs in ONNX Runtime on the CPU, not on {device.type}; "
            "on a GPU use precision='fp32', 'bf16' or 'fp16'"
        )
    if precision == "fp16" and device.type == "cpu":
        raise ValueError(
            "precision='fp16' on a CPU is emulated and about 70x slower than fp32 (it looks like a hang); "
            "use precision='fp32' or 'bf16' on a CPU, or fp16 on a GPU"
        )


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def effective_precision(device: torch.device, precision: str) -> str:
    """The precision that will run: bf16 on a CPU without native bf16 is emulated (slower than
    fp32, never faster), so it falls back to fp32 with one log line."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        logger.warning(
            "precision='bf16': this CPU has no native bfloat16 (AVX-512 BF16 or AMX), where it is slower "
            "than float32; running in fp32"
        )
        return "fp32"
    return precision


@dataclass(frozen=True)
class MapRequest:
    """One image for :meth:`Predictor.predict_maps`, with its own options.

    ``image``: a PIL image (converted to RGB) or a uint8 HxWx3 array; other arrays (float, bool,
    grey, RGBA) are refused with a ValueError saying how to convert them (floats in [0, 1]:
    ``(arr * 255).round().astype(np.uint8)``), or use ``Remover``, which takes every kind of image.
    ``resize`` / ``hr_blend``: ``None`` takes the Predictor's default.
    ``name``: how log messages call it.
    """

    image: Image.Image | np.ndarray
    resize: Literal["static", "dynamic"] | None = None
    hr_blend: float | None = None
    name: str = "image"


@dataclass(frozen=True)
class _Planned:
    index: int
    rgb: Image.Image
    key: tuple[Size, Size | None, float]  # (network size, LR size or None, blending strength)


class Predictor:
    """A model on a device, ready to turn images into maps (see the module docstring).

    Args:
        model: a built, loaded InSPyReNet (e.g. ``model_source.load(...).model``).
        device: where it runs; ``None`` picks cuda, then mps, then cpu.
        precision: ``"fp32"``, ``"fp16"`` (GPU only), ``"bf16"`` (autocast) or ``"int8"`` (CPU, ONNX
            Runtime: the linear layers in int8, see :mod:`inspyrenet_lite.backends.onnx_quantize`).
        backend: ``"torch"``, ``"onnxruntime"`` or ``"auto"`` (see :mod:`inspyrenet_lite.backends`).
        resize: default ``"static"`` (the model's base size) or ``"dynamic"`` (the image's own size, capped).
        hr_blend: default pyramid-blending strength in [0, 1].
        hr_short_side / hr_long_side / hr_max_pixels: caps of the high-resolution (and dynamic) pass.
        weights_file: the checkpoint file the weights came from (keys the ONNX cache).
        name: how logs call the model.
        compile: compile the network with ``torch.compile`` (see :mod:`inspyrenet_lite.backends.compiled`):
            minutes on the first call of each input size, then faster forwards; falls back to
            eager PyTorch, with one log line, wherever compiling fails.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: str | torch.device | None = None,
        precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32",
        backend: Literal["torch", "onnxruntime", "auto"] = "torch",
        resize: Literal["static", "dynamic"] = "static",
        hr_blend: float = 0.0,
        hr_short_side: int = DEFAULT_HR_SHORT_SIDE,
        hr_long_side: int = DEFAULT_HR_LONG_SIDE,
        hr_max_pixels: int = DEFAULT_HR_MAX_PIXELS,
        weights_file: str | os.PathLike[str] | None = None,
        name: str = "model",
        compile: bool = False,
    ) -> None:
        options = check_options(
            compile=compile,
            precision=precision,
            resize=resize,
            hr_blend=hr_blend,
            hr_short_side=hr_short_side,
            hr_long_side=hr_long_side,
            hr_max_pixels=hr_max_pixels,
        )
        check_precision_on(device, options["precision"])
        self.device = pick_device(device)
        self.name = name
        self.precision: str = effective_precision(self.device, options["precision"])
        self.resize: str = options["resize"]
        self.hr_blend: float = options["hr_blend"]
        self.hr_short_side: int = options["hr_short_side"]
        self.hr_long_side: int = options["hr_long_side"]
        self.hr_max_pixels: int = options["hr_max_pixels"]
        self.model = model.to(self.device).eval()
        self.base_size: Size = tuple(int(v) for v in model.base_size)  # type: ignore[assignment]
        self.weights_file = Path(weights_file) if weights_file else None
        from .backends import create_backend

        self.backend = create_backend(
            backend,
            self.model,
            device=self.device,
            precision=self.precision,
            checkpoint_path=self.weights_file,
            compile=options["compile"],
        )
        if self.precision == "int8" and (self.resize == "dynamic" or self.hr_blend > 0):
            logger.warning(
                "precision='int8' runs only the pass at the model's base size; with %s (this model's default "
                "unless you set it) the passes run in PyTorch float32: give resize='static' and hr_blend=0 "
                "to run in int8",
                "resize='dynamic'" if self.resize == "dynamic" else f"hr_blend={self.hr_blend:g}",
            )
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        model: str = "fast",
        *,
        ckpt: str | os.PathLike[str] | None = None,
        base_size: tuple[int, int] | int | None = None,
        device: str | torch.device | None = None,
        precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32",
        backend: Literal["torch", "onnxruntime", "auto"] = "torch",
        resize: Literal["static", "dynamic"] | None = None,
        hr_blend: float | None = None,
        hr_short_side: int | None = None,
        hr_long_side: int = DEFAULT_HR_LONG_SIDE,
        hr_max_pixels: int = DEFAULT_HR_MAX_PIXELS,
        compile: bool = False,
    ) -> Predictor:
        """Load ``model`` with the package's one loader (:func:`inspyrenet_lite.model_source.load`:
        registry name, Hub repo, folder or checkpoint file) and wrap it. ``None`` options take the
        registry row's inference defaults (the authors' settings), else static without blending."""
        from . import model_source

        check_precision_on(device, check_options(precision=precision)["precision"])  # before loading
        loaded = model_source.load(model, ckpt=ckpt, base_size=base_size, device=pick_device(device))
        defaults = inference_defaults(loaded.entry)
        return cls(
            loaded.model,
            device=device,
            precision=precision,
            backend=backend,
            resize=resize if resize is not None else defaults["resize"],
            hr_blend=hr_blend if hr_blend is not None else defaults["hr_blend"],
            hr_short_side=hr_short_side if hr_short_side is not None else defaults["hr_short_side"],
            hr_long_side=hr_long_side,
            hr_max_pixels=hr_max_pixels,
            weights_file=loaded.weights_file,
            name=loaded.name,
            compile=compile,
        )

    def __repr__(self) -> str:
        return (
            f"Predictor(model={self.name!r}, device={str(self.device)!r}, precision={self.precision!r}, "
            f"backend={self.backend.name!r}, resize={self.resize!r}, hr_blend={self.hr_blend})"
        )

    # ------------------------------------------------------------------ sizes
    def network_sizes(
        self, size: tuple[int, int], resize: str | None = None, hr_blend: float | None = None, name: str = "image"
    ) -> tuple[Size, Size | None]:
        """(main pass size, LR pass size or None) as (H, W) for an image of ``size`` (width, height)."""
        resize = self.resize if resize is None else resize
        hr_blend = self.hr_blend if hr_blend is None else hr_blend
        if hr_blend <= 0.0 and resize != "dynamic":
            return self.base_size, None
        notice = self.high_resolution_notice(size, hr_blend, resize)
        if notice is not None:
            logger.warning("%s: %s", name, notice)
            return self.base_size, None
        width, height = size
        pass_size = own_size(width, height, self.hr_short_side)
        return pass_size, (self.base_size if hr_blend > 0.0 else None)

    def high_resolution_notice(
        self, size: tuple[int, int], hr_blend: float = 0.0, resize: str | None = None
    ) -> str | None:
        """Why an image of ``size`` (width, height) gets the base-size pass instead of the
        high-resolution (or dynamic) one it asked for, or ``None`` when it gets what it asked for."""
        resize = self.resize if resize is None else resize
        if hr_blend <= 0.0 and resize != "dynamic":
            return None
        width, height = size
        pass_h, pass_w = own_size(width, height, self.hr_short_side)
        what = "high-resolution pass (hr_blend)" if hr_blend > 0.0 else "dynamic resize"
        reasons, needed = [], []
        if max(pass_h, pass_w) > self.hr_long_side:
            reasons.append(f"its longer side would be {max(pass_h, pass_w)} px, above hr_long_side={self.hr_long_side}")
            needed.append(f"hr_long_side={max(pass_h, pass_w)}")
        if pass_h * pass_w > self.hr_max_pixels:
            reasons.append(f"it would have {pass_h * pass_w} pixels, above hr_max_pixels={self.hr_max_pixels}")
            needed.append(f"hr_max_pixels={pass_h * pass_w}")
        if not reasons:
            return None
        # Only the caps that stop this pass are named, each with the value that lets it run.
        return (
            f"{width}x{height} image: the {what} at {pass_w}x{pass_h} is skipped because {' and '.join(reasons)}; "
            f"the base-size pass ({self.base_size[1]}x{self.base_size[0]}) is used instead. To run it, give "
            f"{' and '.join(needed)} or more (about {_PASS_GB_PER_MEGAPIXEL * pass_h * pass_w / 1e6:.0f} GB "
            "of memory for that pass)."
        )

    # -------------------------------------------------------------- inference
    def predict_torch(
        self, x: torch.Tensor, x_lr: torch.Tensor | None = None, hr_blend: float = 0.0
    ) -> torch.Tensor:
        """The network's maps (B, 1, H, W), float32 in [0, 1], for a normalised batch (B, 3, H, W).

        ``x`` is ImageNet-normalised with H and W multiples of 32; with ``x_lr``
        (the batch at the base size) the two passes are pyramid-blended with
        strength ``hr_blend``. Raises RuntimeError if the precision overflowed.
        """
        if x.shape[0] == 0:  # an empty batch: nothing to run (the network's reshapes cannot take it)
            return torch.zeros((0, 1, *x.shape[2:]), dtype=torch.float32, device=self.device)
        x = x.to(self.device)
        x_lr = None if x_lr is None else x_lr.to(self.device)
        with self._lock, torch.inference_mode(), self._autocast():
            pred = self.backend.predict(x, x_lr=x_lr, hr_blend=hr_blend).float()
        pred = pred.clone()  # an ordinary tensor: callers may change it in place outside inference mode
        if not bool(torch.isfinite(pred).all()):
            raise RuntimeError(
                f"the network returned NaN or infinite values at precision {self.precision!r} "
                "(fp16 overflows most easily); use precision='fp32' or 'bf16'"
            )
        return pred

    def predict_maps(
        self,
        items: Iterable[MapRequest | Image.Image | np.ndarray],
        batch_size: int = DEFAULT_BATCH_SIZE,
        errors: Literal["raise", "skip"] = "raise",
    ) -> list[np.ndarray | Exception]:
        """One float32 HxW map in [0, 1] per item, at the item's own size, in the items' order.

        Items of the same network size (and blending) go through the network
        together, ``batch_size`` at a time; each image is normalised on its
        own, so a map equals the one for that item alone up to float rounding.
        ``errors="skip"``: an item that fails (bad option, or its batch and then
        itself alone fail) gets its exception in its place instead of raising. No items: ``[]``.
        """
        batch_size = check_options(batch_size=batch_size, errors=errors)["batch_size"]
        skip = errors == "skip"
        items = list(items)
        results: list[np.ndarray | Exception | None] = [None] * len(items)
        groups: dict[tuple, list[_Planned]] = {}
        for index, item in enumerate(items):
            try:
                planned = self._plan(index, item)
            except Exception as exc:
                if not skip:
                    raise
                results[index] = exc
                continue
            groups.setdefault(planned.key, []).append(planned)
        for key, group in groups.items():
            for start in range(0, len(group), batch_size):
                batch = group[start : start + batch_size]
                for planned, result in zip(batch, self._run_batch(key, batch, skip), strict=True):
                    results[planned.index] = result
        return results  # type: ignore[return-value]

    def warmup(self, sizes: Sequence[tuple[int, int] | int] | tuple[int, int] | int | None = None) -> None:
        """Run the network once at each network size (default: the base size), so that the
        first real request pays no one-time cost (backend graphs, per-size caches, allocator).

        A size is ``(H, W)`` or one int for a square, each side a positive multiple of 32;
        ``sizes`` is a list of them, or one of them alone. Anything else raises ValueError.
        """
        sizes = [self.base_size] if sizes is None else [_network_size(size) for size in _size_list(sizes)]
        warm = getattr(self.backend, "warmup", None)
        if warm is not None:
            with self._lock, torch.inference_mode(), self._autocast():
                warm(sizes)
            return
        for height, width in sizes:
            self.predict_torch(torch.zeros(1, 3, height, width))

    # -------------------------------------------------------------- internals
    def _plan(self, index: int, item: MapRequest | Image.Image | np.ndarray) -> _Planned:
        request = item if isinstance(item, MapRequest) else MapRequest(item)
        options = check_options(
            resize=self.resize if request.resize is None else request.resize,
            hr_blend=self.hr_blend if request.hr_blend is None else request.hr_blend,
        )
        rgb = _as_rgb(request.image)
        size, lr_size = self.network_sizes(rgb.size, options["resize"], options["hr_blend"], request.name)
        blend = options["hr_blend"] if lr_size is not None else 0.0
        return _Planned(index, rgb, (size, lr_size, blend))

    def _run_batch(self, key: tuple, batch: list[_Planned], skip: bool) -> list[np.ndarray | Exception]:
        try:
            return self._forward(key, batch)
        except Exception as exc:
            if not skip:
                raise
            if len(batch) == 1:
                return [exc]
            logger.debug("a batch failed; running its images one at a time", exc_info=True)
            return [self._run_batch(key, [planned], skip)[0] for planned in batch]

    def _forward(self, key: tuple, batch: list[_Planned]) -> list[np.ndarray]:
        size, lr_size, blend = key
        x = torch.stack([to_tensor(planned.rgb, size) for planned in batch])
        x_lr = None if lr_size is None else torch.stack([to_tensor(planned.rgb, lr_size) for planned in batch])
        pred = self.predict_torch(x, x_lr, blend)
        return [map_to_image_size(pred[row : row + 1], *planned.rgb.size) for row, planned in enumerate(batch)]

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = _AUTOCAST_DTYPES[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def inference_defaults(entry: Any) -> dict[str, Any]:
    """resize, hr_blend, hr_short_side of a registry row (the authors' settings), or the plain defaults."""
    if entry is None:
        return {"resize": "static", "hr_blend": 0.0, "hr_short_side": DEFAULT_HR_SHORT_SIDE}
    return {"resize": entry.resize, "hr_blend": entry.hr_blend, "hr_short_side": entry.short_side}


def _size_list(sizes: Any) -> list[Any]:
    """``warmup``'s argument as a list of sizes: one int or one (H, W) tuple is a list of one."""
    if isinstance(sizes, (int, np.integer)) or (
        isinstance(sizes, tuple) and len(sizes) == 2 and all(isinstance(v, (int, np.integer)) for v in sizes)
    ):
        return [sizes]
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise ValueError(f"warmup sizes must be a list of (H, W) pairs or ints, got {type(sizes).__name__}")
    return list(sizes)


def _network_size(size: Any) -> Size:
    """One warmup size, ``(H, W)`` or an int for a square, as (H, W); ValueError unless both are
    positive multiples of :data:`~inspyrenet_lite.constants.STRIDE`."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else size
    ok = (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 and v % STRIDE == 0 for v in pair)
    )
    if not ok:
        raise ValueError(
            f"a warmup size must be (H, W) or an int (a square), positive multiples of 32, got {size!r}; "
            "e.g. warmup([(384, 384), 1024])"
        )
    return int(pair[0]), int(pair[1])


def _as_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return Image.fromarray(image)
    hint = "decode files with inspyrenet_lite.image_io.load_image or use Remover"
    if isinstance(image, np.ndarray) and image.dtype.kind == "f":
        hint = "for floats in [0, 1] pass (arr * 255).round().astype(np.uint8)"
    elif isinstance(image, np.ndarray) and image.dtype.kind == "b":
        hint = "for True/False values pass arr.astype(np.uint8) * 255"
    raise ValueError(
        f"a Predictor item must be a PIL image or a uint8 HxWx3 array, got {type(image).__name__}"
        + (f" {image.dtype} {image.shape}" if isinstance(image, np.ndarray) else "")
        + f"; {hint}"
    )

