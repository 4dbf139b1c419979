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
    weights cannot be downloaded here); anything else is resolved as
    :class:`~inspyrenet_lite.Remover` resolves ``model=`` (a checkpoint file is
    read directly).
    """
    if init.startswith(FRESH_PREFIX):
        from ..modeling.inspyrenet import InSPyReNet

        size = base_size if base_size is not None else 384
        return InSPyReNet(backbone=init[len(FRESH_PREFIX) :], base_size=size).to(device), False
    from ..modeling.inspyrenet import InSPyReNet

    overrides = {"base_size": base_size} if base_size is not None else {}
    path = Path(init)
    if path.is_dir() or (init.count("/") == 1 and not path.exists()):  # save_pretrained folder or Hub repo
        return InSPyReNet.from_pretrained(init, **overrides).to(device), True
    from ..checkpoint import load_checkpoint
    from ..modeling.build import load_model
    from ..weights import resolve_checkpoint

    if path.is_file():  # a checkpoint in the authors' layout (SwinB; give the base size if not 384)
        return load_model("swinb", load_checkpoint(path), device, **overrides), True
    return load_model(init, load_checkpoint(resolve_checkpoint(init)), device, **overrides), True


def export_model(model: Any, folder: str | os.PathLike[str], config: dict[str, Any] | None = None) -> None:
    """Write the model in ``save_pretrained`` form (config.json + model.safetensors) plus ``model.pth``.

    Both weight files hold the authors' key layout; the safetensors header
    and config.json record the backbone and base size.
    """
    from ..checkpoint import save_checkpoint

    folder = Path(folder)
    model.save_pretrained(folder, config=config)
    save_checkpoint(model.reference_state_dict(), folder / "model.pth")
