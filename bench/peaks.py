"""Measured matrix-multiply peaks: the ceiling that model throughput is compared with."""

from __future__ import annotations

import time

import torch

_CPU_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_CUDA_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(dtype: torch.dtype, device: torch.device, n: int, min_seconds: float) -> float:
    """Best-of-rounds GFLOP/s of ``torch.mm`` on two random n x n matrices."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    flops = 2.0 * n**3
    for _ in range(2):  # warm-up: first calls pick kernels and fault pages in
        torch.mm(a, b, out=out)
    _sync(device)
    best = 0.0
    spent = 0.0
    rounds = 0
    while spent < min_seconds or rounds < 3:
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        elapsed = time.perf_counter() - start
        spent += elapsed
        rounds += 1
        best = max(best, flops / elapsed / 1e9)
    return best


def measure_peaks(device: str = "cpu", min_seconds: float = 2.0) -> dict[str, float]:
    """GFLOP/s of big matrix products per precision on ``device`` (fp32 and bf16; also tf32, fp16 on CUDA).

    The best round is taken: the question is what the hardware can do at all,
    and other processes on a shared machine only ever make a round slower.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        peaks: dict[str, float] = {}
        previous = torch.backends.cuda.matmul.allow_tf32
        try:
            for name, dtype in _CUDA_DTYPES.items():
                torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
                peaks[name] = matmul_gflops(dtype, dev, 8192, min_seconds)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
        return peaks
    return {name: matmul_gflops(dtype, dev, 2048, min_seconds) for name, dtype in _CPU_DTYPES.items()}
