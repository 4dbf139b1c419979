"""Checkpoint files and the one place where the authors' key layout is converted to ours.

The authors' checkpoints (``checkpoint_keys_*.tsv``) differ from this package's
modules in two ways, both in the Swin backbone:

* the reference keeps a stage's patch merging at the end of that stage
  (``backbone.layers.i.downsample``) where timm keeps it at the start of the
  next (``backbone.layers.{i+1}.downsample``);
* the reference stores each block's ``attn.relative_position_index``, a
  derived buffer that timm rebuilds itself (non-persistent).

Everything else maps one to one.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ._atomic import atomic_write

logger = logging.getLogger(__name__)

_DOWNSAMPLE = re.compile(r"^backbone\.layers\.(\d+)\.downsample\.")
_REL_INDEX = re.compile(r"^backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index$")
_MAX_NAMED = 10

StateDict = dict[str, torch.Tensor]


def _shift_downsample(key: str, offset: int) -> str:
    match = _DOWNSAMPLE.match(key)
    if match is None:
        return key
    return f"backbone.layers.{int(match.group(1)) + offset}.downsample." + key[match.end():]


def _is_swin(model: nn.Module) -> bool:
    return getattr(model, "backbone_name", None) == "swinb"


def to_reference_layout(model: nn.Module) -> StateDict:
    """The model's state dict renamed to the authors' layout (derived buffers included)."""
    ours = model.state_dict()
    if not _is_swin(model):
        return dict(ours)
    out: StateDict = {}
    for key, value in ours.items():
        out[_shift_downsample(key, -1)] = value
    for key, index in _derived_buffers(model):
        out[key] = index.clone()
    return out


def _derived_buffers(model: nn.Module):
    """(reference key, tensor) of each Swin block's relative position index."""
    for name, module in model.named_modules():
        index = getattr(module, "relative_position_index", None)
        if name.endswith(".attn") and isinstance(index, torch.Tensor):
            yield f"{name}.relative_position_index", index


def from_reference_layout(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """Split a reference-layout dict into (weights in our layout, derived buffers to check)."""
    if not _is_swin(model):
        return dict(state_dict), {}
    ours: StateDict = {}
    derived: StateDict = {}
    for key, value in state_dict.items():
        if _REL_INDEX.match(key):
            derived[key] = value
        else:
            ours[_shift_downsample(key, 1)] = value
    return ours, derived


def _describe(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMED])
    more = len(names) - _MAX_NAMED
    return shown + (f" (and {more} more)" if more > 0 else "")


def check_reference_layout(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """ValueError naming missing, unexpected or wrongly shaped keys unless ``state_dict`` fits ``model``."""
    expected = to_reference_layout_shapes(model)
    given = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(
        f"{k} (checkpoint {list(given[k])}, model {list(expected[k])})"
        for k in set(expected) & set(given)
        if expected[k] != given[k]
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if wrong:
        problems.append(f"wrongly shaped keys: {_describe(wrong)}")
    if problems:
        raise ValueError(
            "checkpoint does not match an InSPyReNet "
            f"({getattr(model, 'backbone_name', '?')}, depth {getattr(model, 'depth', '?')}) in the authors' "
            "layout; " + "; ".join(problems)
        )


def load_reference_layout(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], assign: bool = False
) -> None:
    """Strictly load an authors'-layout state dict into ``model``; ValueError on any mismatch."""
    check_reference_layout(model, state_dict)
    weights, _ = from_reference_layout(model, state_dict)
    if assign:
        params = model.state_dict()
        weights = {
            k: v.to(params[k].dtype) if v.is_floating_point() and v.dtype != params[k].dtype else v
            for k, v in weights.items()
        }
    model.load_state_dict(weights, strict=True, assign=assign)


def to_reference_layout_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the authors' layout for this model, without copying any weights."""
    swin = _is_swin(model)
    shapes = {_shift_downsample(k, -1) if swin else k: tuple(v.shape) for k, v in model.state_dict().items()}
    if swin:
        shapes.update((key, tuple(index.shape)) for key, index in _derived_buffers(model))
    return shapes


def detect_backbone(keys) -> str:
    """'swinb' or 'res2net50' from an authors'-layout checkpoint's key names; ValueError if neither."""
    keys = set(keys)
    if any(k.startswith("backbone.layers.") and ".blocks." in k for k in keys):
        return "swinb"
    if any(k.startswith("backbone.layer1.") for k in keys):
        return "res2net50"
    sample = ", ".join(sorted(keys)[:5])
    raise ValueError(
        "cannot tell the backbone from the checkpoint's keys (neither Swin 'backbone.layers.N.blocks' nor "
        f"Res2Net 'backbone.layer1' keys; first keys: {sample}); is it an InSPyReNet checkpoint in the authors' layout?"
    )


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
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if suffix in (".pth", ".pt", ".bin", ".ckpt"):
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc).lower() and "zip" not in str(exc).lower():
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)
            return _unwrap(obj, path)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # corrupt, truncated or foreign files
        # Not torch's message: it advises weights_only=False, unsafe for a file of unknown origin.
        raise ValueError(
            f"{path} is not a checkpoint: it is not a PyTorch file of tensors or a safetensors file "
            f"({type(exc).__name__}); it may be corrupt, truncated or something else renamed. "
            "Re-download it or pass the authors' .pth or a .safetensors file."
        ) from None
    raise ValueError(f"unsupported checkpoint format {path.suffix!r} for {path}; use .pth or .safetensors")


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
