"""Assembles a network from an architecture config and an authors'-layout state dict (names live above: :mod:`inspyrenet_lite.build`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .inspyrenet import InSPyReNet


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
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    device: torch.device | str = "cpu",
    cls: type[InSPyReNet] = InSPyReNet,
) -> InSPyReNet:
    """Build a model with ``InSPyReNet(**config)`` straight from an authors'-layout state dict, in eval mode.

    The module is created on the meta device and takes the given tensors
    as they are (no random initialisation, no second copy of the weights), so
    a memory-mapped checkpoint stays memory-mapped until it is moved. ``cls``
    is the class built (the Hub-enabled subclass, for the package's loaders).
    """
    with torch.device("meta"):
        model = cls(**config)
    model.load_reference_state_dict(state_dict, assign=True)
    _materialise_derived_buffers(model, "cpu")
    return model.to(device).eval()
