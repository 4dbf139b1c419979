"""inspyrenet-lite: background removal with InSPyReNet (Kim et al., ACCV 2022).

The public names are imported lazily so that ``import inspyrenet_lite`` stays
cheap and a command-line ``--help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> "module" or "module:attribute".
_EXPORTS = {
    "Remover": "inspyrenet_lite.remover",
    "remove": "inspyrenet_lite.cached",
    "clear_cache": "inspyrenet_lite.cached",
    "Predictor": "inspyrenet_lite.predictor",
    "MapRequest": "inspyrenet_lite.predictor",
    "load_model": "inspyrenet_lite.model_source:load",
    "OutputOptions": "inspyrenet_lite.options",
    "InSPyReNet": "inspyrenet_lite.hub",
    "build_model": "inspyrenet_lite.build",
    "load_checkpoint": "inspyrenet_lite.checkpoint",
    "convert_checkpoint": "inspyrenet_lite.checkpoint",
    "ImageLoadError": "inspyrenet_lite.image_io",
    "TooManyPixelsError": "inspyrenet_lite.image_io",
    "WeightsUnavailableError": "inspyrenet_lite.weights",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inspyrenet_lite' has no attribute {name!r}")
    module, _, attribute = module.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
