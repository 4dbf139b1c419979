"""The PyTorch model compiled by ``torch.compile`` (inductor), with eager PyTorch as the fallback.

``Predictor(compile=True)`` / ``Remover(compile=True)`` / ``--compile``:

- one graph per (batch and input size, blending, precision), compiled on the
  first call of that shape (or in :meth:`CompiledTorchBackend.warmup`) and
  kept for the life of the process; that first call runs the model eagerly
  once before compiling, so that the per-size index tensors the eager model
  caches enter the graph as constants; inductor's on-disk caches
  (``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_<user>``) make a
  later process compile much faster;
- the weights stay inputs of the graph (inductor's ``freezing`` is off): its
  FX graph cache then serves a later process whole (fast mode on 2 CPU
  threads: about 40 s instead of 125-132 s with frozen weights), and both
  float32 and bf16 ran faster than frozen (``bench/paths.py``'s
  ``*+compile-frozen`` paths; README, "Which precision"); weights changed in
  place are seen by the graph;
- any failure of the compiler (no C++ compiler, an unsupported operator, a
  crash in inductor) is logged once and the model runs eagerly from then on:
  a user's run never fails because of compilation.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import torch

from . import TorchBackend

logger = logging.getLogger(__name__)

#: inductor options. Not ``freezing``: see the module docstring.
COMPILE_OPTIONS: dict[str, Any] = {"freezing": False}


class CompiledTorchBackend(TorchBackend):
    """:class:`TorchBackend` through ``torch.compile``; eager once compiling has failed."""

    name = "torch+compile"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.failed: str | None = None  # why the compiled path was given up, once it was
        self._compiled: Any = None
        self._seen: set[tuple] = set()
        self._lock = threading.Lock()

    def predict(self, x: torch.Tensor, x_lr: torch.Tensor | None = None, hr_blend: float = 0.0) -> torch.Tensor:
        if self.failed is None:
            shapes = (tuple(x.shape), None if x_lr is None else tuple(x_lr.shape), x.dtype, x.device)
            if shapes not in self._seen:
                super().predict(x, x_lr, hr_blend)  # fills the model's per-size caches (see the module docstring)
                self._seen.add(shapes)
            try:
                return self._compiled_predict()(x, x_lr, hr_blend)
            except Exception as exc:  # compiling must never fail a user's run
                self._give_up(exc)
        return super().predict(x, x_lr, hr_blend)

    def warmup(self, sizes: list[tuple[int, int]]) -> None:
        """Compile (or load from inductor's cache) the graph of each network size."""
        param = next(self.model.parameters())
        for height, width in sizes:
            self.predict(torch.zeros(1, 3, height, width, device=param.device))

    def _compiled_predict(self) -> Any:
        with self._lock:
            if self._compiled is None:
                self._compiled = torch.compile(super().predict, dynamic=False, options=COMPILE_OPTIONS)
            return self._compiled

    def _give_up(self, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        logger.warning("torch.compile failed (%s); the model runs without compilation from now on", self.failed)
        logger.debug("torch.compile failure", exc_info=exc)
