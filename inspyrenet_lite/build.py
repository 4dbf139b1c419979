"""Builder: a registry name (or an architecture config) to a network, with random or given weights.

Every model the package hands out is :class:`inspyrenet_lite.hub.InSPyReNet`,
the network of :mod:`inspyrenet_lite.modeling` with the Hub methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .hub import InSPyReNet
from .modeling import build as _assemble
from .registry import MODELS

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
    """Build an InSPyReNet with random weights for a registry name; kwargs override its architecture."""
    return InSPyReNet(**_config(name, overrides)).eval()


def from_config(
    config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], device: torch.device | str = "cpu"
) -> InSPyReNet:
    """The network of an architecture config with an authors'-layout state dict's weights, in eval mode."""
    return _assemble.from_config(config, state_dict, device=device, cls=InSPyReNet)  # type: ignore[return-value]


def model_from_state_dict(
    name: str, state_dict: Mapping[str, torch.Tensor], device: torch.device | str = "cpu", **overrides: Any
) -> InSPyReNet:
    """Build the named model straight from an authors'-layout state dict (see :func:`from_config`)."""
    return from_config(_config(name, overrides), state_dict, device)
