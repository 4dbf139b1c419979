"""A short description of the machine a run came from."""

from __future__ import annotations

import os
import platform
from typing import Any


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """The matrix-relevant CPU features (AVX-512, BF16, VNNI, AMX) the kernel reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    # the matrix engines: float32 (AVX-512), bf16, fp16, and the int8 dot products of precision="int8"
                    wanted = ("avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile",
                              "avx512_vnni", "avx_vnni", "amx_int8")
                    return [f for f in wanted if f in flags]
    except OSError:
        pass
    return []


def describe(device: str, threads: int) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
