"""Builder: maps a model name to its configuration."""

from __future__ import annotations

from typing import Any

from .inspyrenet import InSPyReNet

# Published configurations (INSPYRENET.md section 4) and the paper's backbones.
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "fast": {"backbone": "swinb", "base_size": (384, 384)},
    "base": {"backbone": "swinb", "base_size": (1024, 1024)},
    "base-nightly": {"backbone": "swinb", "base_size": (1024, 1024)},
    "swinb": {"backbone": "swinb", "base_size": (384, 384)},
    "res2net50": {"backbone": "res2net50", "base_size": (384, 384)},
}


def build_model(name: str = "fast", **overrides: Any) -> InSPyReNet:
    """Build an InSPyReNet with random weights for a configuration name; kwargs override it."""
    try:
        config = dict(MODEL_CONFIGS[name])
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODEL_CONFIGS)}") from None
    config.update(overrides)
    return InSPyReNet(**config).eval()
