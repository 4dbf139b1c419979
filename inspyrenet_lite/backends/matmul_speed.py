"""How fast PyTorch and ONNX Runtime multiply float32 matrices on this CPU.

The network's CPU time is mostly float32 matrix products, and which runtime
wins depends on the CPU: PyTorch uses its BLAS (MKL in the pip wheels, slow
on AMD CPUs), ONNX Runtime its own kernels. Measured with 2 threads: on an
AMD EPYC ONNX Runtime ran them about 2.1x faster (and the whole network
1.8-2.1x); on an Intel Xeon both ran at about 235 GFLOP/s (and the network
1.03-1.12x). ``backend="auto"`` asks this module before it pays for an export.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

#: Tokens x channels x MLP width of a SwinB stage-1 product (4608 tokens: half of a 384 image's).
SHAPE = (4608, 512, 2048)


def _runner(runtime: str, a: torch.Tensor, b: torch.Tensor, threads: int):
    """A no-argument callable computing ``a @ b`` in ``runtime`` ("torch" or "onnxruntime")."""
    if runtime == "torch":
        return lambda: torch.mm(a, b)
    if runtime != "onnxruntime":
        raise ValueError(f"runtime must be 'torch' or 'onnxruntime', got {runtime!r}")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    (m, k), n = a.shape, b.shape[1]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])],
        "matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(b.numpy(), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # Idle ORT threads otherwise spin for a while after each run and slow down the torch run that follows.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"A": np.ascontiguousarray(a.numpy())}
    return lambda: session.run(None, feed)


def _best_gflops(runtimes: tuple[str, ...], threads: int | None, repeats: int, shape: tuple[int, int, int]) -> list[float]:
    """Best GFLOP/s of each runtime, their runs taking turns (a busy moment hits both alike).

    ``threads=None`` (the ``auto`` backend's probe) measures at torch's current
    thread count and never changes it (a process-wide setting other threads
    rely on); an explicit count (benchmarks) is set for the measurement and restored.
    """
    current = torch.get_num_threads()
    threads = threads or current
    m, k, n = shape
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    if threads != current:
        torch.set_num_threads(threads)
    try:
        runs = [_runner(runtime, a, b, threads) for runtime in runtimes]
        for run in runs:
            run(), run()  # warm-up: thread pools, packing
        best = [float("inf")] * len(runs)
        for _ in range(repeats):
            for i, run in enumerate(runs):
                start = time.perf_counter()
                run()
                best[i] = min(best[i], time.perf_counter() - start)
    finally:
        if threads != current:
            torch.set_num_threads(current)
    return [2 * m * k * n / seconds / 1e9 for seconds in best]


def matmul_gflops(runtime: str, threads: int | None = None, repeats: int = 5, shape: tuple[int, int, int] = SHAPE) -> float:
    """GFLOP/s of one float32 ``(m, k) @ (k, n)`` product in ``runtime`` ("torch" or "onnxruntime")."""
    return _best_gflops((runtime,), threads, repeats, shape)[0]


@functools.lru_cache(maxsize=8)
def onnxruntime_speedup(threads: int | None = None, repeats: int = 8) -> float:
    """ONNX Runtime's float32 matrix-product throughput over PyTorch's here (measured once per process, ~1 s)."""
    ort_gflops, torch_gflops = _best_gflops(("onnxruntime", "torch"), threads, repeats, SHAPE)
    return ort_gflops / torch_gflops
