"""One interface over the two packages being measured: load a mode, turn a photo into a grey map.

Both sides are driven through what a user calls (``Remover.process``), so
latency includes pre- and post-processing. Pyramid blending is not a packaged
mode of transparent-background; there its network is called the way the
paper's evaluation does (LR pass at 384, HR pass at the photo's size).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)

from inspyrenet_lite.constants import IMAGENET_MEAN, IMAGENET_STD
PB_SHORT_SIDE_CAP = 1280
PB_THRESHOLD = 512


class NotAvailable(Exception):
    """A variant that one package does not offer (yet); the reason goes into the table as n/a."""


def pb_hr_size(width: int, height: int, cap: int = PB_SHORT_SIDE_CAP) -> tuple[int, int]:
    """(W, H) of the HR pass: shorter side capped at ``cap``, both sides rounded to multiples of 32."""
    scale = min(1.0, cap / min(width, height))
    return (max(32, int(round(width * scale / 32)) * 32), max(32, int(round(height * scale / 32)) * 32))


def _grey(output: Any) -> np.ndarray:
    """(H, W) uint8 map from a PIL image or array, grey or 3-channel."""
    arr = np.asarray(output)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 map, got {arr.dtype}")
    return arr


def _to_map(pred: torch.Tensor, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize a (1,1,h,w) prediction to the photo (align_corners=True) and truncate to uint8 as the reference does."""
    pred = F.interpolate(pred.float(), size_hw, mode="bilinear", align_corners=True)
    return (pred[0, 0].cpu().numpy() * 255).astype(np.uint8)


class Adapter:
    """Common interface; subclasses load one package."""

    label = ""

    def version(self) -> str:
        raise NotImplementedError

    def import_libraries(self) -> None:
        """Import everything ``load`` would import, so RSS before ``load`` counts the libraries."""

    def load(self, mode: str, ckpt: Path, device: str, precision: str) -> None:
        raise NotImplementedError

    def run(self, image: Image.Image) -> np.ndarray:
        raise NotImplementedError

    def run_batch(self, images: Sequence[Image.Image], batch_size: int) -> list[np.ndarray]:
        raise NotAvailable(f"{self.label} has no batched API")


class ReferenceAdapter(Adapter):
    """transparent-background 1.3.4, the authors' package."""

    label = "transparent-background"

    def version(self) -> str:
        from importlib.metadata import version

        return version("transparent-background")

    def import_libraries(self) -> None:
        import transparent_background.InSPyReNet  # noqa: F401
        from transparent_background import Remover  # noqa: F401

        try:  # Remover imports pymatting (numba) in its constructor
            import pymatting  # noqa: F401
        except ImportError:
            pass

    def load(self, mode: str, ckpt: Path, device: str, precision: str) -> None:
        if precision != "fp32":
            raise NotAvailable("transparent-background 1.3.4 has no precision option (float32 only)")
        self.device = device
        self.mode = mode
        if mode == "pb":
            self._load_pb(ckpt)
            return
        from transparent_background import Remover

        # Remover prints its settings to stdout; keep the worker's output clean.
        with contextlib.redirect_stdout(io.StringIO()):
            self.remover = Remover(mode=mode, ckpt=str(ckpt), device=device, resize="static", jit=False)
        self.model = self.remover.model

    def _load_pb(self, ckpt: Path) -> None:
        from transparent_background.InSPyReNet import InSPyReNet_SwinB
        from transparent_background import utils as tbu

        model = InSPyReNet_SwinB(depth=64, pretrained=False, base_size=[384, 384], threshold=PB_THRESHOLD)
        model.eval()
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True), strict=True)
        self.model = model.to(self.device)
        self._lr_tf = [tbu.static_resize([384, 384]), tbu.tonumpy(), tbu.normalize(IMAGENET_MEAN, IMAGENET_STD), tbu.totensor()]
        self._hr_tf = [tbu.dynamic_resize(L=PB_SHORT_SIDE_CAP), tbu.tonumpy(), tbu.normalize(IMAGENET_MEAN, IMAGENET_STD), tbu.totensor()]

    @staticmethod
    def _apply(transforms: list, image: Image.Image) -> torch.Tensor:
        x: Any = image
        for tf in transforms:
            x = tf(x)
        return x.unsqueeze(0)

    def run(self, image: Image.Image) -> np.ndarray:
        if self.mode != "pb":
            return _grey(self.remover.process(image, type="map"))
        lr = self._apply(self._lr_tf, image).to(self.device)
        hr = self._apply(self._hr_tf, image).to(self.device)
        with torch.no_grad():
            pred = self.model(hr, lr)
        return _to_map(pred, (image.height, image.width))


class LiteAdapter(Adapter):
    """inspyrenet-lite, this package."""

    label = "inspyrenet-lite"

    def version(self) -> str:
        import inspyrenet_lite

        return inspyrenet_lite.__version__

    def import_libraries(self) -> None:
        try:
            import inspyrenet_lite.checkpoint  # noqa: F401
            import inspyrenet_lite.modeling.build  # noqa: F401
            import inspyrenet_lite.remover  # noqa: F401
        except ImportError:
            pass  # load() reports what is missing

    def load(self, mode: str, ckpt: Path, device: str, precision: str) -> None:
        self.device = device
        self.mode = mode
        self.precision = precision
        try:
            from inspyrenet_lite import Remover
        except (ImportError, AttributeError) as exc:
            raise NotAvailable(f"inspyrenet_lite.Remover not importable yet ({exc})") from exc
        params = inspect.signature(Remover).parameters
        kwargs: dict[str, Any] = {"mode": "fast" if mode == "pb" else mode, "ckpt": str(ckpt), "device": device}
        if precision != "fp32":
            if "precision" not in params:
                raise NotAvailable("Remover has no precision option yet")
            kwargs["precision"] = precision
        try:
            self.remover = Remover(**kwargs)
        except NotImplementedError as exc:
            raise NotAvailable(f"Remover(precision={precision!r}): {exc}") from exc
        except ValueError as exc:
            if precision != "fp32" and "precision" in str(exc).lower():
                raise NotAvailable(f"Remover(precision={precision!r}): {exc}") from exc
            raise
        self.model = getattr(self.remover, "model", None)
        self._process_params = inspect.signature(self.remover.process).parameters
        if mode == "pb" and "hr_blend" not in self._process_params:
            raise NotAvailable("Remover.process has no hr_blend (pyramid blending) option yet")

    def run(self, image: Image.Image) -> np.ndarray:
        if self.mode == "pb":
            return _grey(self.remover.process(image, type="map", hr_blend=1.0))
        return _grey(self.remover.process(image, type="map"))

    def run_batch(self, images: Sequence[Image.Image], batch_size: int) -> list[np.ndarray]:
        if "batch_size" not in self._process_params:
            raise NotAvailable("Remover.process has no batch_size option yet")
        return [_grey(out) for out in self.remover.process(list(images), type="map", batch_size=batch_size)]


class LiteOrtAdapter(LiteAdapter):
    """inspyrenet-lite on its ONNX Runtime backend (graph exported once, cached beside the checkpoint)."""

    label = "inspyrenet-lite (ORT)"

    def import_libraries(self) -> None:
        super().import_libraries()
        import onnxruntime  # noqa: F401

        import inspyrenet_lite.backends.ort  # noqa: F401

    def load(self, mode: str, ckpt: Path, device: str, precision: str) -> None:
        from inspyrenet_lite import Remover

        if device != "cpu" or precision != "fp32":
            raise NotAvailable("the ONNX Runtime backend is CPU float32 only")
        self.device, self.mode, self.precision = device, mode, precision
        self.remover = Remover(mode="fast" if mode == "pb" else mode, ckpt=str(ckpt), device=device, backend="onnxruntime")
        self.model = self.remover.model
        self._process_params = inspect.signature(self.remover.process).parameters
        # Export (or open the cached graph) now, so that latency is inference only.
        self.remover.predictor.warmup()


ADAPTERS: dict[str, type[Adapter]] = {"tb": ReferenceAdapter, "lite": LiteAdapter, "ort": LiteOrtAdapter}
