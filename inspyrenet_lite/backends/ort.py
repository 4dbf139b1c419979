"""The ONNX Runtime backend: export once per model and size, cache, verify, run."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from .._atomic import atomic_write_text
from .._download import file_digest
from . import TorchBackend
from .onnx_export import export_onnx, load_session, run_session
from .onnx_quantize import needs_reduced_range

logger = logging.getLogger(__name__)

#: What the graphs run in: float32, or float32 with the linear layers in int8 (:mod:`.onnx_quantize`).
GRAPH_PRECISIONS = ("fp32", "int8")


def default_cache_dir() -> Path:
    """``$INSPYRENET_LITE_ONNX_DIR``, else ``onnx/`` in the weights cache (:func:`~inspyrenet_lite.weights.cache_dir`).

    Never beside the checkpoint: a Hub download lives in the Hub's own cache,
    whose scanner reports any other file there as corruption, and a user's
    checkpoint folder should not fill with 400 MB graphs.
    """
    env = os.environ.get("INSPYRENET_LITE_ONNX_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    from ..weights import cache_dir

    return cache_dir() / "onnx"


def cache_dir_problem(folder: Path) -> str | None:
    """Why graphs cannot be cached in ``folder`` (None if they can: it is a folder or can be made one)."""
    env = os.environ.get("INSPYRENET_LITE_ONNX_DIR", "").strip()
    what = f"INSPYRENET_LITE_ONNX_DIR={env}" if env else f"the ONNX graph cache {folder}"
    fix = "point INSPYRENET_LITE_ONNX_DIR at a folder (it is created if missing)" + (" or unset it" if env else "")
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        return f"{what} is a file, not a folder; {fix}"
    if not existing.is_dir():
        return f"{what} cannot be made: {existing} is a file, not a folder; {fix}"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{what} cannot be written ({existing} is not writable); {fix}"
    return None


@functools.cache
def code_digest() -> str:
    """8 hex digits of the sources that decide the exported graph (the model and the exporter).

    Part of the cache key, so that a graph exported by other model code is not
    reused under the same version number (an editable install, a patch).
    """
    root = Path(__file__).resolve().parents[1]
    return _sources_digest([*(root / "modeling").glob("*.py"), root / "backends" / "onnx_export.py"])


@functools.cache
def quantizer_digest() -> str:
    """8 hex digits of the quantiser's source: part of the int8 graphs' cache key only."""
    return _sources_digest([Path(__file__).resolve().parent / "onnx_quantize.py"])


def _sources_digest(sources: list[Path]) -> str:
    digest = hashlib.sha256()
    for source in sorted(sources):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:8]


def export_notice(size: tuple[int, int], cache_dir: Path, asked: bool, precision: str = "fp32") -> str:
    """What a user is told before an export: how long it takes, what it costs, and whether it pays."""
    text = (
        f"exporting the network to ONNX at {size[0]}x{size[1]} for ONNX Runtime (once per model and size, then "
        f"cached in {cache_dir}): tracing it and checking the graph against PyTorch takes about a minute for fast "
        "and two to three for base, with about twice PyTorch's memory at its peak. "
    )
    if precision == "int8":
        return text + "precision='int8' then quantises that graph's linear layers (seconds) and caches it too"
    if asked:
        return text + (
            "It pays only where ONNX Runtime is faster than PyTorch (about 2x on AMD CPUs); on Intel CPUs "
            "(MKL) it is no faster: backend='auto' measures this and picks the faster one"
        )
    return text + "backend='auto' measured ONNX Runtime's matrix products clearly faster than PyTorch's here"


class OrtBackend:
    """Runs the network's base-size pass in ONNX Runtime; other passes in PyTorch (float32).

    ``precision="int8"`` runs the graph with its linear layers quantised
    (:mod:`.onnx_quantize`), made from the float32 graph (cached beside it).

    The graph for a size is exported on first use, verified against PyTorch and
    cached as ``<checkpoint>.<sha256[:16]>.<H>x<W>[.int8-<quantiser digest>].lite<v>-<code digest>``
    ``.torch<v>.ort<v>.onnx`` with a ``.sha256`` file beside it; a cached graph whose digest does not
    match, or that ONNX Runtime cannot load, is rebuilt. With ``strict`` an
    export failure raises, else the backend falls back to PyTorch and logs why.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: nn.Module,
        checkpoint_path: str | os.PathLike,
        strict: bool = True,
        cache_dir: Path | None = None,
        precision: str = "fp32",
    ) -> None:
        if precision not in GRAPH_PRECISIONS:
            raise ValueError(f"the ONNX Runtime backend runs in {' or '.join(GRAPH_PRECISIONS)}, not {precision}")
        self.model = model
        self.precision = precision
        self.checkpoint_path = Path(checkpoint_path)
        self.strict = strict
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._torch = TorchBackend(model)
        self._sessions: dict[tuple[int, int], object | None] = {}
        self._failures: dict[tuple[int, int], Exception] = {}
        self._lock = threading.Lock()  # one export per size, even for a Remover shared by threads
        self._checkpoint_digest: str | None = None
        self._logged: set[str] = set()

    def predict(self, x: torch.Tensor, x_lr: torch.Tensor | None = None, hr_blend: float = 0.0) -> torch.Tensor:
        if x_lr is not None:
            return self._fallback(
                "pyramid blending (hr_blend > 0) runs in PyTorch: its high-resolution pass has a different size per image",
                x, x_lr, hr_blend,
            )
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if size != tuple(self.model.base_size):
            return self._fallback(
                f"a {size[0]}x{size[1]} pass runs in PyTorch: ONNX graphs are exported at the base size only "
                "(dynamic resizing gives every image its own size)",
                x,
            )
        session = self.session(size)
        if session is None:
            return self._torch.predict(x)
        return run_session(session, x)

    def warmup(self, sizes: list[tuple[int, int]]) -> None:
        """Export (or open the cached) graph for the base size, the one it covers (no forward: the
        export already verified it); other sizes run in PyTorch, which is warmed with one forward."""
        for size in sizes:
            if tuple(size) == tuple(self.model.base_size):
                self.session(tuple(size))
            else:
                self._torch.warmup([tuple(size)])

    # ------------------------------------------------------------------ cache
    def cache_path(self, size: tuple[int, int], precision: str | None = None) -> Path:
        """Where the graph for ``size`` is cached (keyed by checkpoint, size, precision and versions;
        ``precision`` defaults to the backend's)."""
        import onnxruntime

        precision = precision or self.precision

        if self._checkpoint_digest is None:
            self._checkpoint_digest = file_digest(self.checkpoint_path, "sha256")
        stem = self.checkpoint_path.name.split(".")[0]
        variant = "" if precision == "fp32" else f".{precision}-{quantizer_digest()}"
        if precision == "int8" and needs_reduced_range():
            variant += "-r7"  # 7-bit weights for a CPU without VNNI: another graph
        name = (
            f"{stem}.{self._checkpoint_digest[:16]}.{size[0]}x{size[1]}{variant}"
            f".lite{__version__}-{code_digest()}.torch{torch.__version__}.ort{onnxruntime.__version__}.onnx"
        )
        return self.cache_dir / name

    def session(self, size: tuple[int, int]):
        """The ONNX Runtime session for ``size`` (None: this size runs in PyTorch).

        A failed export is not retried: strict backends raise its error again,
        others run PyTorch.
        """
        with self._lock:
            if size in self._failures:
                raise self._failures[size]
            if size not in self._sessions:
                try:
                    self._sessions[size] = self._open_or_export(size)
                except Exception as exc:
                    if self.strict:
                        self._failures[size] = exc
                        raise
                    self._sessions[size] = None
                    logger.warning("ONNX Runtime backend unavailable at %dx%d, using PyTorch: %s", size[0], size[1], exc)
            return self._sessions[size]

    def _open_or_export(self, size: tuple[int, int]):
        path = self.cache_path(size)
        if path.is_file():
            session = self._open_cached(path)
            if session is not None:
                return session
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        if self.precision == "int8":
            from .onnx_quantize import quantize_int8

            source = self._float_graph(size)
            logger.info("quantising the ONNX graph at %dx%d to int8 (once, then cached)", size[0], size[1])
            quantize_int8(source, path, self.model, size, before_rename=_digest_writer(path))
        else:
            self._export(size, path)
        return load_session(path)

    def _float_graph(self, size: tuple[int, int]) -> Path:
        """The float32 graph for ``size`` (the int8 one is made from it): cached, else exported now."""
        path = self.cache_path(size, "fp32")
        if not (path.is_file() and self._check_cached(path) is None):
            self._export(size, path)
        return path

    def _export(self, size: tuple[int, int], path: Path) -> None:
        logger.warning(export_notice(size, self.cache_dir, asked=self.strict, precision=self.precision))
        export_onnx(self.model, path, size, before_rename=_digest_writer(path))

    def _check_cached(self, path: Path) -> str | None:
        """Why the cached graph at ``path`` cannot be used (None: its checksum matches); a bad one is removed."""
        digest_path = _digest_path(path)
        try:
            expected = digest_path.read_text().strip()
        except OSError:
            expected = None
        if expected is not None and file_digest(path, "sha256") == expected:
            return None
        reason = "its checksum does not match" if expected is not None else "its checksum file is missing"
        self._discard(path, reason)
        return reason

    def _open_cached(self, path: Path):
        """A session on the cached graph, or None (and the file removed) if it does not check out."""
        if self._check_cached(path) is not None:
            return None
        try:
            session = load_session(path)
        except Exception as exc:  # a file that passed its digest but does not load
            self._discard(path, f"ONNX Runtime cannot load it ({exc})")
            return None
        logger.debug("using the cached ONNX graph %s", path)
        return session

    @staticmethod
    def _discard(path: Path, reason: str) -> None:
        logger.warning("rebuilding the cached ONNX graph %s: %s", path, reason)
        path.unlink(missing_ok=True)
        _digest_path(path).unlink(missing_ok=True)

    def _fallback(self, reason: str, *args) -> torch.Tensor:
        if reason not in self._logged:
            self._logged.add(reason)
            if self.precision == "int8":  # asked for by name: say that this pass is not int8
                logger.warning("precision='int8': %s, in float32", reason)
            else:
                logger.info(reason)
        return self._torch.predict(*args)


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _digest_writer(path: Path) -> Callable[[str], None]:
    """``before_rename`` for a graph at ``path``: the checksum is in place before the graph appears,
    so another process never sees one without it."""

    def write_digest(tmp: str) -> None:
        atomic_write_text(_digest_path(path), file_digest(tmp, "sha256") + "\n")

    return write_digest
