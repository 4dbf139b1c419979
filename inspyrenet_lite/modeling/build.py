"""Builder: maps a model name to its configuration, with random or given weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..registry import MODELS
from .inspyrenet import InSPyReNet

# Every named model of the registry (``swinb`` and ``res2net50`` are also the
# paper's architectures at 384, so those names keep building them).
MODEL_CONFIGS: dict[str, dict[str, Any]] = {name: entry.architecture() for name, entry in MODELS.items()}


def _config(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    try:
        config = dict(MODEL_CONFIGS[name])
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODEL_CONFIGS)}") from None
    config.update(overrides)
    return config


def build_model(name: str = "fast", **overrides: Any) -> InSPyReNet:
    """Build an InSPyReNet with random weights for a configuration name; kwargs override it."""
    return InSPyReNet(**_config(name, overrides)).eval()


def _materialise_derived_buffers(model: nn.Module, device: torch.device | str) -> None:
    """Give non-persistent buffers left on the meta device real storage and recompute them."""
    for module in model.modules():
        persistent = set(module.state_dict(keep_vars=True).keys())
        rebuilt = False
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf is not None and buf.is_meta and name not in persistent:
                module.register_buffer(name, torch.empty_like(buf, device=device), persistent=False)
                rebuilt = True
        if rebuilt:
            init = getattr(module, "init_non_persistent_buffers", None)
            if init is None:
                raise RuntimeError(f"cannot rebuild buffers of {type(module).__name__}")
            init()


def from_config(
    config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], device: torch.device | str = "cpu"
) -> InSPyReNet:
    """Build a model with ``InSPyReNet(**config)`` straight from an authors'-layout state dict, in eval mode.

    The module is created on the meta device and takes the given tensors
    as they are (no random initialisation, no second copy of the weights), so
    a memory-mapped checkpoint stays memory-mapped until it is moved.
    """
    with torch.device("meta"):
        model = InSPyReNet(**config)
    model.load_reference_state_dict(state_dict, assign=True)
    _materialise_derived_buffers(model, "cpu")
    return model.to(device).eval()


def load_model(
    name: str, state_dict: Mapping[str, torch.Tensor], device: torch.device | str = "cpu", **overrides: Any
) -> InSPyReNet:
    """Build the named model straight from an authors'-layout state dict (see :func:`from_config`)."""
    return from_config(_config(name, overrides), state_dict, device)
