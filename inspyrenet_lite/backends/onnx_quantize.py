"""int8 graphs for ONNX Runtime: the network's linear layers quantised dynamically.

``precision="int8"`` runs the exported float32 graph with every matrix product
that has constant weights (the Swin backbone's linear layers: 41 % of fast
mode's FLOPs) turned into ONNX Runtime's integer product: weights int8 per
output channel, activations quantised per call (dynamic quantisation, so no
calibration data is needed). Convolutions, attention products, softmax and
the decoder stay float32: quantising the convolutions too made the whole
network 2.2-2.6x slower on the CPU measured (README, "int8").
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from torch import nn

from .._atomic import atomic_write
from .onnx_export import OnnxVerificationError, probe_maps

logger = logging.getLogger(__name__)

#: The sanity bound of an int8 graph against PyTorch's float32 maps on the probe
#: images: mean absolute difference. It catches a broken graph (the inverted map
#: of tests/backends/test_onnx_quantize.py), not small losses: the reduced random models
#: of the parity fixtures, whose maps sit near 0.5, reach 0.018 (bf16 autocast
#: 0.013); the quality of int8 on a trained model is measured in the tests.
INT8_MEAN_ATOL = 0.05

# One quantisation at a time in a process: the quantiser's logging guard below changes the root
# logger, and two replicas of one server warming up together would otherwise race on it.
_LOCK = threading.Lock()


def quantize_int8(
    source: str | os.PathLike,
    path: str | os.PathLike,
    model: nn.Module,
    size: tuple[int, int],
    *,
    before_rename: Callable[[str], None] | None = None,
) -> Path:
    """Write the int8 version of the float32 graph ``source`` to ``path`` (atomically).

    The result is checked against ``model``'s float32 maps on seeded probe
    images (:data:`INT8_MEAN_ATOL`); a graph that fails raises
    :class:`OnnxVerificationError` and nothing is written.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def write(tmp: str) -> None:
        # Given a path, the quantiser writes a scratch copy of the graph beside it under a fixed name
        # (<name>-inferred.onnx: in our cache, shared by every process, left behind if killed); given
        # the loaded graph, it uses a private temporary folder of its own.
        graph = onnx.load(str(source))
        with _LOCK, _quiet_quantizer():
            quantize_dynamic(
                graph,
                tmp,
                op_types_to_quantize=["MatMul"],
                weight_type=QuantType.QInt8,  # signed weights: the u8s8 kernels of VNNI and AMX
                per_channel=True,  # per output channel: measured 99.6 % of a trained model's pixels within
                # one grey level of float32, against 98.7 % per tensor, for the same speed
                reduce_range=needs_reduced_range(),
                extra_options={"MatMulConstBOnly": True},  # weights only, never activation x activation
            )
        quantized = _count_integer_products(tmp)
        if quantized == 0:
            logger.warning(
                "precision='int8': this network has no linear layers to quantise (a Res2Net backbone is all "
                "convolutions); it runs as float32"
            )
        diff = _mean_difference(tmp, model, size)
        if not diff <= INT8_MEAN_ATOL:
            raise OnnxVerificationError(
                f"the int8 graph's maps differ from PyTorch's float32 maps by {diff:.3g} on average on the probe "
                f"images (allowed {INT8_MEAN_ATOL}); the graph was not kept: use precision='fp32'"
            )
        logger.info("int8 graph: %d linear layers quantised, mean map difference %.2g", quantized, diff)
        if before_rename is not None:
            before_rename(tmp)

    return atomic_write(path, write)


def needs_reduced_range() -> bool:
    """Whether int8 weights must keep to 7 bits here: an x86 CPU without VNNI (AVX2 only) multiplies
    u8 x s8 through 16-bit sums that saturate with full-range weights (measured on an AVX2-only AMD EPYC:
    95.8 % of a trained model's pixels within two grey levels of float32, against 99.5 % and more with
    VNNI). ONNX Runtime's remedy is ``reduce_range``; with VNNI, AMX or on ARM the full range is exact.
    Unknown x86 flags (no /proc/cpuinfo) take the safe side."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None:
        return True
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags)


class _FromQuantizer(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname.replace("\\", "/").split("/")


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Keep ONNX Runtime's quantiser, which logs through the root logger, out of the user's logs.

    Its ``logging.warning`` calls would also configure logging for the whole
    process (``basicConfig``) where nothing has yet; a NullHandler stops that.
    """
    root = logging.getLogger()
    quiet = _FromQuantizer()
    placeholder = logging.NullHandler() if not root.handlers else None
    root.addFilter(quiet)
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeFilter(quiet)
        if placeholder is not None:
            root.removeHandler(placeholder)


def _count_integer_products(path: str) -> int:
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return sum(node.op_type == "MatMulInteger" for node in graph.node)


def _mean_difference(path: str, model: nn.Module, size: tuple[int, int]) -> float:
    got, expected = probe_maps(path, model, size)
    return float((got - expected).abs().mean())
