"""The benchmark's checkpoint: a full-size SwinB InSPyReNet with random weights in the authors' layout.

The real checkpoints cannot be downloaded here, and the speed and memory of
the network do not depend on the weight values, so random checkpoints,
written once and cached, stand in for ``ckpt_fast.pth`` and ``ckpt_base.pth``
(one architecture; only the base size differs by mode).

Plain random initialisation makes the final logits explode (tens of
thousands), so every map would be sigmoid = 1 everywhere, normalised to all
zeros, and any two implementations would "agree" trivially. The BatchNorm
running statistics are therefore calibrated on the shared photos (batch
statistics of one forward pass at the mode's base size), which keeps every
level's logits near unit scale and the maps full of structure that a wrong
implementation would change. Statistics taken at 384 do not carry over to
1024 (the maps saturate again), hence one checkpoint per mode, like the real
ones; and a random network's offsets depend on the photo, so the benchmarked
photo must be in the calibration batch (the caller puts it first).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

SEED = 0
#: Calibration input side and how many photos go into the batch (1024 is memory-hungry).
CALIBRATION = {"fast": (384, 8), "base": (1024, 2)}
from inspyrenet_lite.constants import IMAGENET_MEAN, IMAGENET_STD


def _calibration_batch(photos: list[Path], size: int) -> torch.Tensor:
    """The photos at ``size`` squared, ImageNet-normalised, as one batch."""
    import numpy as np
    from PIL import Image

    batch = []
    for path in photos:
        with Image.open(path) as im:
            rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        batch.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1))
    x = torch.stack(batch)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def calibrate_batchnorm(model: torch.nn.Module, forward: Callable[[torch.Tensor], Any], x: torch.Tensor) -> None:
    """Set every BatchNorm's running mean/var to the batch statistics of one forward pass on ``x``."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
        bn.train()
    with torch.no_grad():
        forward(x)
    for bn in norms:
        bn.momentum = 0.1
        bn.eval()


def _state_dict_from_core(mode: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
    from inspyrenet_lite.build import build_model

    model = build_model(mode)
    calibrate_batchnorm(model, model.pyramid, x)
    return model.reference_state_dict()


def _state_dict_from_reference(mode: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
    # Only used when inspyrenet_lite's core is not importable: the authors'
    # own module yields the authors' key layout by definition.
    from transparent_background.InSPyReNet import InSPyReNet_SwinB

    side = CALIBRATION[mode][0]
    model = InSPyReNet_SwinB(depth=64, pretrained=False, base_size=[side, side], threshold=None)
    calibrate_batchnorm(model, model.forward_inspyre, x)
    return model.state_dict()


def _save(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Write atomically: a crash never leaves a truncated checkpoint behind in the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.pth", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            from inspyrenet_lite.checkpoint import save_checkpoint
        except ImportError:
            torch.save(state_dict, tmp)
        else:
            save_checkpoint(state_dict, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def random_checkpoint(cache_dir: Path, photos: list[Path], mode: str = "fast") -> tuple[Path, str]:
    """Path of the cached random SwinB checkpoint for ``mode`` (created on first use) and which code built it.

    ``photos`` calibrate the BatchNorm statistics (see the module docstring).
    """
    if mode not in CALIBRATION:
        raise ValueError(f"no benchmark checkpoint for mode {mode!r}; choose one of {', '.join(CALIBRATION)}")
    side, count = CALIBRATION[mode]
    used = photos[:count]
    tag = hashlib.sha1("\n".join(sorted(p.name for p in used)).encode()).hexdigest()[:8]
    for source, make in (("inspyrenet_lite", _state_dict_from_core), ("transparent_background", _state_dict_from_reference)):
        path = cache_dir / f"swinb_{mode}_random_seed{SEED}_bncal-{tag}_{source}.pth"
        if path.is_file():
            return path, source
        try:
            torch.manual_seed(SEED)
            state_dict = make(mode, _calibration_batch(used, side))
        except ImportError as exc:
            log.info("cannot build the checkpoint with %s: %s", source, exc)
            continue
        _save(state_dict, path)
        log.info("wrote %s (%.0f MiB)", path, path.stat().st_size / 2**20)
        return path, source
    raise RuntimeError(
        "cannot build a random SwinB checkpoint: neither inspyrenet_lite.modeling.build "
        "nor transparent_background is importable; install the bench extra "
        '(pip install -e ".[bench]")'
    )
