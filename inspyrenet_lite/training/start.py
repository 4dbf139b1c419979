"""Starting points of a run: a registry name, a checkpoint file, a Hub repo, a save_pretrained folder, or new weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FRESH_PREFIX = "new:"


def load_start(
    init: str, base_size: int | tuple[int, int] | None = None, device: str = "cpu"
) -> tuple[Any, bool]:
    """(model, published): the model to start from, and whether it came with trained weights.

    ``new:swinb`` / ``new:res2net50`` build random weights (ImageNet backbone
    weights cannot be downloaded here); anything else goes through the
    package's one loader, :func:`inspyrenet_lite.model_source.load`: a registry
    name, a Hub repo, a ``save_pretrained`` folder, or a checkpoint file whose
    backbone is read from its keys and whose base size comes from
    ``base_size``, its metadata, or is refused when it cannot be known.
    """
    if init.startswith(FRESH_PREFIX):
        from ..hub import InSPyReNet

        size = base_size if base_size is not None else 384
        return InSPyReNet(backbone=init[len(FRESH_PREFIX) :], base_size=size).to(device), False
    from ..model_source import load

    return load(init, base_size=base_size, device=device).model, True


def export_model(model: Any, folder: str | os.PathLike[str], config: dict[str, Any] | None = None) -> None:
    """Write the model in ``save_pretrained`` form (config.json + model.safetensors) plus ``model.pth``.

    Both weight files hold the authors' key layout; the safetensors header
    and config.json record the backbone and base size.
    """
    from ..checkpoint import save_checkpoint
    from ..hub import with_hub_methods

    folder = Path(folder)
    with_hub_methods(model).save_pretrained(folder, config=config)
    save_checkpoint(model.reference_state_dict(), folder / "model.pth")
