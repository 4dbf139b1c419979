"""Export the network to ONNX, and check an exported graph against PyTorch.

The graph (one per input size; the batch is a dynamic axis):

- input ``image``: float32 (batch, 3, H, W), RGB scaled to [0, 1], then
  normalised with the ImageNet mean (0.485, 0.456, 0.406) and standard
  deviation (0.229, 0.224, 0.225); H and W as exported (the mode's base size).
- output ``map``: float32 (batch, 1, H, W) in [0, 1], the saliency map
  min-max normalised per image (what ``InSPyReNet.predict`` returns).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from .._atomic import atomic_write
from ..constants import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

GRAPH_INPUT = "image"
GRAPH_OUTPUT = "map"
#: Largest allowed difference between the ONNX Runtime map and PyTorch's on the
#: probe images: a quarter of one grey level.
DEFAULT_ATOL = 1e-3


class OnnxVerificationError(RuntimeError):
    """An exported graph's maps disagree with PyTorch's; the graph is not kept."""


class _PredictGraph(nn.Module):
    """What is exported: ``model.predict`` on one normalised batch."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.predict(image)


def probe_input(size: tuple[int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Seeded images (a smooth blob on noise), ImageNet-normalised: (batch, 3, H, W)."""
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, 3, h, w, generator=gen)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    blob = (xx**2 + yy**2 < 0.4).float()
    rgb = 0.5 * noise + 0.5 * blob
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb - mean) / std


def session_options(threads: int | None = None):
    """ONNX Runtime session options: ``threads`` intra-op threads (default torch's
    count), full graph optimisation, no CPU memory arena.

    Without the arena, freed buffers go back to the system: on base mode the
    arena held about 4.2 GB at peak against 2.4 GB without (see README).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3
    return options


def load_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session on an exported graph."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def run_session(session, x: torch.Tensor) -> torch.Tensor:
    """Run an exported graph on a normalised batch; the map as a torch tensor."""
    array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
    (out,) = session.run([GRAPH_OUTPUT], {GRAPH_INPUT: array})
    return torch.from_numpy(out)


def probe_maps(
    path: str | os.PathLike, model: nn.Module, size: tuple[int, int], batch: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """The graph's maps and ``model``'s float32 maps of the same seeded probe images."""
    x = probe_input(size, batch=batch)
    session = load_session(path)
    got = run_session(session, x)
    del session  # its memory back before PyTorch's forward
    with torch.inference_mode():
        expected = model.predict(x).float()
    return got, expected


def verify_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    size: tuple[int, int] | None = None,
    atol: float = DEFAULT_ATOL,
    batch: int = 2,
) -> float:
    """Compare the graph at ``path`` with ``model`` on seeded probe images (a batch of ``batch``).

    Returns the largest absolute difference between the maps; raises
    :class:`OnnxVerificationError` when it exceeds ``atol`` (or is not finite).
    """
    got, expected = probe_maps(path, model, tuple(size or model.base_size), batch)
    if got.shape != expected.shape:
        raise OnnxVerificationError(f"the ONNX graph returned shape {tuple(got.shape)}, PyTorch {tuple(expected.shape)}")
    diff = float((got - expected).abs().max())
    if not diff <= atol:  # also catches NaN
        raise OnnxVerificationError(
            f"the ONNX graph's maps differ from PyTorch's by up to {diff:.3g} on the probe images "
            f"(allowed {atol:g}); the graph was not kept"
        )
    return diff


#: How the graph is recorded: "torchscript" (torch.onnx's tracing exporter) or
#: "dynamo" (torch.export). Both give the same graph up to float rounding; the
#: tracing exporter takes about a sixth of the time and memory (README, ONNX).
EXPORTERS = ("auto", "torchscript", "dynamo")
_OPSET = 17


def _export_takes_dynamo() -> bool:
    """True for torch.onnx.export with a ``dynamo`` switch (torch 2.5 and later)."""
    return "dynamo" in inspect.signature(torch.onnx.export).parameters


def _torchscript_exporter_available() -> bool:
    """True while this torch still ships torch.onnx's tracing exporter (the only one
    before 2.5, deprecated since 2.9)."""
    if not _export_takes_dynamo():
        return True
    try:
        from torch.onnx._internal import torchscript_exporter  # noqa: F401
    except ImportError:
        return hasattr(getattr(torch.onnx, "utils", None), "export")
    return True


def _record_torchscript(wrapper: nn.Module, example: torch.Tensor, tmp: str) -> None:
    with warnings.catch_warnings():
        # The deprecation notice concerns torch's choice of default, not something a user can act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        switch = {"dynamo": False} if _export_takes_dynamo() else {}
        torch.onnx.export(
            wrapper,
            (example,),
            tmp,
            **switch,
            input_names=[GRAPH_INPUT],
            output_names=[GRAPH_OUTPUT],
            dynamic_axes={GRAPH_INPUT: {0: "batch"}, GRAPH_OUTPUT: {0: "batch"}},
            opset_version=_OPSET,
            do_constant_folding=True,
        )


def _record_dynamo(wrapper: nn.Module, example: torch.Tensor, tmp: str) -> None:
    program = torch.onnx.export(
        wrapper,
        (example,),
        dynamo=True,
        input_names=[GRAPH_INPUT],
        output_names=[GRAPH_OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
        verbose=False,
    )
    program.save(tmp, external_data=False)


def _describe(path: str, size: tuple[int, int], exporter: str) -> None:
    """Write what the graph expects and returns into its metadata (as a viewer like Netron shows it)."""
    import onnx

    graph = onnx.load(path)
    props = {
        "inspyrenet_lite.version": __version__,
        "inspyrenet_lite.exporter": exporter,
        "inspyrenet_lite.input": f"{GRAPH_INPUT}: float32 (batch, 3, {size[0]}, {size[1]}), RGB/255 "
        f"normalised with mean {IMAGENET_MEAN} and std {IMAGENET_STD}",
        "inspyrenet_lite.output": f"{GRAPH_OUTPUT}: float32 (batch, 1, {size[0]}, {size[1]}) in [0, 1], "
        "min-max normalised per image",
    }
    kept = [p for p in graph.metadata_props if p.key not in props]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    for key, value in props.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, path)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    *,
    verify: bool = True,
    atol: float = DEFAULT_ATOL,
    exporter: str = "auto",
    before_rename: Callable[[str], None] | None = None,
) -> Path:
    """Export ``model.predict`` at input ``size`` (H, W; default the model's base
    size) to an ONNX file at ``path``, with a dynamic batch axis.

    ``exporter`` is "torchscript" (torch.onnx's tracing exporter), "dynamo"
    (torch.export) or "auto": the tracing exporter while torch ships it, which
    records the full-size model in seconds rather than minutes.

    With ``verify`` (the default) the graph is run by ONNX Runtime on a batch of
    two probe images and compared with PyTorch before the file appears; a graph
    that disagrees by more than ``atol`` raises :class:`OnnxVerificationError`
    and nothing is written. The write is atomic; ``before_rename(tmp)`` is
    called with the finished, verified temporary file just before it takes
    ``path`` (the backend writes the graph's checksum there). The model is
    left in the train/eval mode it came in.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if exporter == "auto":
        exporter = "torchscript" if _torchscript_exporter_available() else "dynamo"
    size = (int(size[0]), int(size[1])) if size is not None else tuple(model.base_size)
    was_training = model.training
    model.eval()
    example = probe_input(size, batch=2)  # not 1: exporters specialise size-1 axes
    model.check_input(example)
    wrapper = _PredictGraph(model).eval()
    record = _record_torchscript if exporter == "torchscript" else _record_dynamo

    def write(tmp: str) -> None:
        start = time.perf_counter()
        # Callers may be inside inference_mode (Remover's first use): export outside it.
        with torch.inference_mode(False), torch.no_grad():
            record(wrapper, example, tmp)
        _describe(tmp, size, exporter)
        logger.info(
            "exported the network at %dx%d to ONNX (%s exporter) in %.1f s",
            size[0], size[1], exporter, time.perf_counter() - start,
        )
        if verify:
            diff = verify_onnx(tmp, model, size, atol)
            logger.info("ONNX graph verified against PyTorch: maps within %.2g", diff)
        if before_rename is not None:
            before_rename(tmp)

    try:
        return atomic_write(path, write)
    finally:
        model.train(was_training)
