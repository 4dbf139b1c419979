"""Inference backends behind one contract: ``predict(x, x_lr=None, hr_blend=0.0) -> map``.

``x`` is an ImageNet-normalised float32 batch (B, 3, H, W); the result is the
network's map (B, 1, H, W) in [0, 1], as :meth:`InSPyReNet.predict` returns it.

- ``torch``: the PyTorch model itself (every device, precision and path);
  with ``compile=True``, compiled by ``torch.compile`` (:mod:`.compiled`).
- ``onnxruntime``: the network exported to ONNX once per model and input size,
  run by ONNX Runtime on the CPU; passes it does not cover run in PyTorch.
  The one backend of ``precision="int8"`` (:mod:`.onnx_quantize`).
- ``auto``: ``onnxruntime`` on the CPU in float32 when it is installed and
  its matrix products are clearly faster than PyTorch's on this CPU
  (:mod:`.matmul_speed`: about 2x on AMD CPUs, where MKL is slow; equal on
  Intel ones, where the export would not pay), else ``torch``; with
  ``precision="int8"``, always ``onnxruntime`` (only it runs int8).

Nothing heavy is imported here; onnxruntime and the exporter load on first use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import torch

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "auto")
#: ``auto`` takes ONNX Runtime when its float32 matrix products run at least this much faster.
AUTO_MIN_SPEEDUP = 1.5  # far from both measured cases: ~1.0 (Intel, MKL) and ~2.1 (AMD)


class Backend(Protocol):
    name: str

    def predict(self, x: torch.Tensor, x_lr: torch.Tensor | None = None, hr_blend: float = 0.0) -> torch.Tensor:
        """The map (B, 1, H, W) in [0, 1] for a normalised batch, as ``InSPyReNet.predict``."""

    def warmup(self, sizes: list[tuple[int, int]]) -> None:
        """Pay each network size's one-time costs (graphs, caches) before the first request."""


class TorchBackend:
    """The PyTorch model as it is."""

    name = "torch"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def predict(self, x: torch.Tensor, x_lr: torch.Tensor | None = None, hr_blend: float = 0.0) -> torch.Tensor:
        if x_lr is None:
            return self.model.predict(x)
        return self.model.predict(x, x_lr=x_lr, hr_blend=hr_blend)

    def warmup(self, sizes: list[tuple[int, int]]) -> None:
        param = next(self.model.parameters())
        for height, width in sizes:
            self.model.predict(torch.zeros(1, 3, height, width, device=param.device))


def onnxruntime_missing() -> str | None:
    """None when onnxruntime and onnx import, else why not (with the extra to install)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or 'onnxruntime'} is not installed ({exc}); pip install 'inspyrenet-lite[onnx]'"
    return None


def _cache_problem() -> str | None:
    from .ort import cache_dir_problem, default_cache_dir

    return cache_dir_problem(default_cache_dir())


def _onnxruntime_unavailable(device: torch.device, checkpoint_path: Path | None, precision: str = "fp32") -> str | None:
    """Why ONNX Runtime cannot run this model here in ``precision``, or None when it can.

    int8 asks about fp32: its graph is quantised from the float32 one.
    """
    if device.type != "cpu":
        return f"the ONNX Runtime backend runs on the CPU, not on {device.type}"
    if precision != "fp32":
        return f"the ONNX Runtime backend runs in fp32, not {precision}"
    if checkpoint_path is None:
        return "the model has no checkpoint file to key the ONNX graph cache on"
    return onnxruntime_missing() or _cache_problem()


def create_backend(
    name: str,
    model: torch.nn.Module,
    *,
    device: torch.device,
    precision: str,
    checkpoint_path: Path | None,
    compile: bool = False,
) -> Backend:
    """The backend ``name`` ('torch', 'onnxruntime' or 'auto') for a loaded model.

    ``compile=True`` compiles the PyTorch model (``backend='torch'``, or what
    ``'auto'`` picks: always torch then, since the ONNX graph is compiled already).
    Raises ValueError for an unknown name, for 'onnxruntime' off the CPU, in
    another precision than fp32 or int8, without onnxruntime installed, or with
    ``compile``; and for ``precision='int8'`` wherever ONNX Runtime cannot run it.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if precision == "int8":
        return _int8_backend(name, model, device=device, checkpoint_path=checkpoint_path, compile=compile)
    if compile:
        if name == "onnxruntime":
            raise ValueError("compile=True compiles the PyTorch model; it does not apply to backend='onnxruntime'")
        from .compiled import CompiledTorchBackend

        if name == "auto":
            logger.info("backend='auto' with compile=True uses torch (compiled)")
        return CompiledTorchBackend(model)
    if name == "torch":
        return TorchBackend(model)
    reason = _onnxruntime_unavailable(device, checkpoint_path, precision)
    if reason is None and name == "auto":
        from .matmul_speed import onnxruntime_speedup

        try:
            speedup = onnxruntime_speedup()
        except Exception as exc:  # auto never fails: it falls back
            reason = f"ONNX Runtime's speed could not be measured ({exc})"
        else:
            if not speedup >= AUTO_MIN_SPEEDUP:  # a NaN measurement is no evidence of speed either
                reason = (
                    f"ONNX Runtime multiplies float32 matrices only {speedup:.2f}x as fast as PyTorch on this CPU "
                    f"(auto wants {AUTO_MIN_SPEEDUP}x to pay for the export); backend='onnxruntime' forces it"
                )
            else:
                logger.info(
                    "backend='auto' uses onnxruntime: its float32 matrix products run %.2fx PyTorch's here", speedup
                )
    if reason is not None:
        if name == "onnxruntime":
            raise ValueError(f"backend='onnxruntime' is not available: {reason}; use backend='torch' or 'auto'")
        logger.info("backend='auto' uses torch: %s", reason)
        return TorchBackend(model)
    from .ort import OrtBackend

    return OrtBackend(model, checkpoint_path, strict=name == "onnxruntime")


def _int8_backend(
    name: str, model: torch.nn.Module, *, device: torch.device, checkpoint_path: Path | None, compile: bool
) -> Backend:
    """``precision='int8'``: ONNX Runtime's int8 graph, whatever ``auto`` would have measured."""
    fix = "use precision='fp32' (or 'bf16' on a CPU with native bf16)"
    if name == "torch" or compile:
        what = "compile=True" if compile else "backend='torch'"
        raise ValueError(
            f"precision='int8' runs in ONNX Runtime, not with {what}: use backend='onnxruntime' or 'auto' "
            f"(--backend onnxruntime on the command line; pip install 'inspyrenet-lite[onnx]'), or {fix}"
        )
    reason = _onnxruntime_unavailable(device, checkpoint_path)
    if reason is not None:
        raise ValueError(f"precision='int8' is not available: {reason}; {fix}")
    from .ort import OrtBackend

    # Strict even for auto: a failed int8 graph raises rather than run float32 under the name int8.
    return OrtBackend(model, checkpoint_path, strict=True, precision="int8")


def __getattr__(name: str):
    # The export API without importing the exporter at package import.
    if name == "CompiledTorchBackend":
        from .compiled import CompiledTorchBackend

        return CompiledTorchBackend
    if name in ("export_onnx", "verify_onnx", "OnnxVerificationError", "GRAPH_INPUT", "GRAPH_OUTPUT"):
        from . import onnx_export

        return getattr(onnx_export, name)
    raise AttributeError(name)


__all__ = [
    "AUTO_MIN_SPEEDUP",
    "BACKENDS",
    "Backend",
    "TorchBackend",
    "CompiledTorchBackend",
    "create_backend",
    "export_onnx",
    "verify_onnx",
    "OnnxVerificationError",
    "GRAPH_INPUT",
    "GRAPH_OUTPUT",
]
