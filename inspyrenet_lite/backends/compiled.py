"""The PyTorch model compiled by ``torch.compile`` (inductor), with eager PyTorch as the fallback.

``Predictor(compile=True)`` / ``Remover(compile=True)`` / ``--compile``:

- one graph per (batch and input size, blending, precision), compiled on the
  first call of that shape (or in :meth:`CompiledTorchBackend.warmup`) and
  kept for the life of the process; that first call runs the model eagerly
  once before compiling, so that the per-size index tensors the eager model
  caches enter the graph as constants; inductor's on-disk caches
  (``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_<user>``) make a
  later process compile much faster;
- a batch smaller than one already compiled for the same image size (the
  last, partial batch of a job) is padded with copies of its last image and
  runs in that graph: a few images' compute instead of minutes of compiling
  (each image is normalised on its own, so the padding changes no map);
- torch compiles at most ``torch._dynamo.config.recompile_limit`` (8) shapes
  of one function; past that, new shapes run eagerly (one log line), as torch
  itself would, without the extra eager pass a compile needs;
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
        self._batches: dict[tuple, set[int]] = {}  # compiled batch sizes per everything-but-the-batch
        self._limit_logged = False
        self._lock = threading.Lock()

    def predict(self, x: torch.Tensor, x_lr: torch.Tensor | None = None, hr_blend: float = 0.0) -> torch.Tensor:
        if self.failed is None:
            key, n = _graph_key(x, x_lr, hr_blend), x.shape[0]
            batch, new = self._batch_to_run(key, n)
            if batch is not None:
                if new:
                    super().predict(x, x_lr, hr_blend)  # fills the model's per-size caches (see the module docstring)
                try:
                    out = self._compiled_predict()(_pad_batch(x, batch), _pad_batch(x_lr, batch), hr_blend)
                except Exception as exc:  # compiling must never fail a user's run
                    self._give_up(exc)
                else:
                    with self._lock:
                        self._batches.setdefault(key, set()).add(batch)
                    return out[:n]
        return super().predict(x, x_lr, hr_blend)

    def _batch_to_run(self, key: tuple, n: int) -> tuple[int | None, bool]:
        """The batch size to run ``n`` images at (n, or a larger compiled one to pad to; None: eagerly)
        and whether that graph is still to be compiled."""
        with self._lock:
            compiled = self._batches.get(key, set())
            if n in compiled:
                return n, False
            larger = [b for b in compiled if b > n]
            if larger:
                return min(larger), False
            if self._graph_count() >= _recompile_limit():
                self._log_limit_once()
                return None, False
            return n, True

    def warmup(self, sizes: list[tuple[int, int]]) -> None:
        """Compile (or load from inductor's cache) the graph of each network size."""
        param = next(self.model.parameters())
        for height, width in sizes:
            self.predict(torch.zeros(1, 3, height, width, device=param.device))

    def _graph_count(self) -> int:
        return sum(len(batches) for batches in self._batches.values())

    def _log_limit_once(self) -> None:
        if not self._limit_logged:
            self._limit_logged = True
            logger.warning(
                "compile=True: %d input shapes are compiled, torch's limit (torch._dynamo.config.recompile_limit); "
                "other shapes run without compilation",
                self._graph_count(),
            )

    def _compiled_predict(self) -> Any:
        with self._lock:
            if self._compiled is None:
                self._compiled = torch.compile(super().predict, dynamic=False, options=COMPILE_OPTIONS)
            return self._compiled

    def _give_up(self, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        logger.warning("torch.compile failed (%s); the model runs without compilation from now on", self.failed)
        logger.debug("torch.compile failure", exc_info=exc)


def _graph_key(x: torch.Tensor, x_lr: torch.Tensor | None, hr_blend: float) -> tuple:
    """What selects a compiled graph, apart from the batch size."""
    autocast = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else None
    lr = None if x_lr is None else (tuple(x_lr.shape[1:]), float(hr_blend))
    return tuple(x.shape[1:]), lr, x.dtype, x.device, autocast


def _pad_batch(t: torch.Tensor | None, size: int) -> torch.Tensor | None:
    """``t`` with copies of its last item appended up to ``size`` items."""
    if t is None or t.shape[0] == size:
        return t
    return torch.cat([t, t[-1:].expand(size - t.shape[0], *t.shape[1:])])


def _recompile_limit() -> int:
    config = torch._dynamo.config
    return int(getattr(config, "recompile_limit", getattr(config, "cache_size_limit", 8)))
