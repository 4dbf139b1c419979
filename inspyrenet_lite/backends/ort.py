"""The ONNX Runtime backend: export once per model and size, cache, verify, run."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from .._atomic import atomic_write_text
from .._download import file_digest
from . import TorchBackend
from .onnx_export import export_onnx, load_session, run_session

logger = logging.getLogger(__name__)


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
    digest = hashlib.sha256()
    for source in sorted([*(root / "modeling").glob("*.py"), root / "backends" / "onnx_export.py"]):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:8]


def export_notice(size: tuple[int, int], cache_dir: Path, asked: bool) -> str:
    """What a user is told before an export: how long it takes, what it costs, and whether it pays."""
    text = (
        f"exporting the network to ONNX at {size[0]}x{size[1]} for ONNX Runtime (once per model and size, then "
        f"cached in {cache_dir}): tracing it and checking the graph against PyTorch takes about a minute for fast "
        "and two to three for base, with about twice PyTorch's memory at its peak. "
    )
    if asked:
        return text + (
            "It pays only where ONNX Runtime is faster than PyTorch (about 2x on AMD CPUs); on Intel CPUs "
            "(MKL) it is no faster: backend='auto' measures this and picks the faster one"
        )
    return text + "backend='auto' measured ONNX Runtime's matrix products clearly faster than PyTorch's here"


class OrtBackend:
    """Runs the network's base-size pass in ONNX Runtime; other passes in PyTorch.

    The graph for a size is exported on first use, verified against PyTorch and
    cached as ``<checkpoint>.<sha256[:16]>.<H>x<W>.lite<v>-<code digest>.torch<v>.ort<v>.onnx``
    with a ``.sha256`` file beside it; a cached graph whose digest does not
    match, or that ONNX Runtime cannot load, is rebuilt. With ``strict`` an
    export failure raises, else the backend falls back to PyTorch and logs why.
    """

    name = "onnxruntime"

    def __init__(
        self, model: nn.Module, checkpoint_path: str | os.PathLike, strict: bool = True, cache_dir: Path | None = None
    ) -> None:
        self.model = model
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
    def cache_path(self, size: tuple[int, int]) -> Path:
        """Where the graph for ``size`` is cached (keyed by checkpoint, size and versions)."""
        import onnxruntime

        if self._checkpoint_digest is None:
            self._checkpoint_digest = file_digest(self.checkpoint_path, "sha256")
        stem = self.checkpoint_path.name.split(".")[0]
        name = (
            f"{stem}.{self._checkpoint_digest[:16]}.{size[0]}x{size[1]}"
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
        digest_path = path.with_name(path.name + ".sha256")
        if path.is_file():
            session = self._open_cached(path, digest_path)
            if session is not None:
                return session
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        logger.warning(export_notice(size, self.cache_dir, asked=self.strict))
        # The checksum is in place before the graph appears: another process never sees one without it.
        def write_digest(tmp: str) -> None:
            atomic_write_text(digest_path, file_digest(tmp, "sha256") + "\n")

        export_onnx(self.model, path, size, before_rename=write_digest)
        return load_session(path)

    def _open_cached(self, path: Path, digest_path: Path):
        """A session on the cached graph, or None (and the file removed) if it does not check out."""
        try:
            expected = digest_path.read_text().strip()
        except OSError:
            expected = None
        if expected is not None and file_digest(path, "sha256") == expected:
            try:
                session = load_session(path)
                logger.debug("using the cached ONNX graph %s", path)
                return session
            except Exception as exc:  # a file that passed its digest but does not load
                reason = f"ONNX Runtime cannot load it ({exc})"
        else:
            reason = "its checksum does not match" if expected is not None else "its checksum file is missing"
        logger.warning("rebuilding the cached ONNX graph %s: %s", path, reason)
        path.unlink(missing_ok=True)
        digest_path.unlink(missing_ok=True)
        return None

    def _fallback(self, reason: str, *args) -> torch.Tensor:
        if reason not in self._logged:
            self._logged.add(reason)
            logger.info(reason)
        return self._torch.predict(*args)
