"""Checkpoint files in the authors' key layout: read (``.pth``, ``.safetensors``), write, convert.

The key layout itself is :mod:`inspyrenet_lite.modeling.key_layout`; its
public functions are re-exported here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ._atomic import atomic_write
from .modeling.key_layout import (  # noqa: F401  (re-exported: the checkpoint API)
    StateDict,
    check_reference_layout,
    detect_backbone,
    from_reference_layout,
    load_reference_layout,
    to_reference_layout,
    to_reference_layout_shapes,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------- files
def _unwrap(obj: object, path: Path) -> StateDict:
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return dict(obj)


def load_checkpoint(path: str | os.PathLike[str]) -> StateDict:
    """Read a checkpoint in the authors' layout from ``.pth`` or ``.safetensors``, on the CPU.

    ``.pth`` files are read with ``torch.load(weights_only=True)`` (no arbitrary
    unpickling) and memory-mapped where the file format allows, so the weights
    are not held twice in memory.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pth", ".pt", ".bin", ".ckpt"):
        raise ValueError(f"unsupported checkpoint format {path.suffix!r} for {path}; use .pth or .safetensors")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc).lower() and "zip" not in str(exc).lower():
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # corrupt, truncated or foreign files (the unpickler's ValueErrors included)
        # Not torch's message: it advises weights_only=False, unsafe for a file of unknown origin.
        raise ValueError(
            f"{path} is not a checkpoint: it is not a PyTorch file of tensors or a safetensors file "
            f"({type(exc).__name__}); it may be corrupt, truncated or something else renamed. "
            "Re-download it or pass the authors' .pth or a .safetensors file."
        ) from None
    return _unwrap(obj, path)


def save_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a state dict as ``.pth`` or ``.safetensors`` (by suffix), atomically.

    ``metadata`` (string to string) goes into a safetensors header; ``.pth`` has none.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".pth", ".pt", ".safetensors"):
        raise ValueError(f"unsupported checkpoint format {path.suffix!r}; use .pth or .safetensors")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}

    def write(tmp: str) -> None:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.clone() for k, v in tensors.items()}, tmp, metadata=dict(metadata or {}) or None)
        else:
            torch.save(tensors, tmp)

    return atomic_write(path, write)


def convert_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Convert a checkpoint between ``.pth`` and ``.safetensors`` (same authors' layout)."""
    return save_checkpoint(load_checkpoint(src), dst)
