"""Access to the reference parity fixtures (INSPYRENET.md section 5): models, inputs, outputs.

The fixtures are made from the authors' own package by ``fixtures/make_parity.py`` and cached;
``$INSPYRENET_PARITY_DIR`` points at a folder of ready-made ones instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fixtures.make_parity import parity_fixtures
from inspyrenet_lite import InSPyReNet

CASES = ("swin_small_lr", "swin_small_hr", "res2net_small_lr")


def parity_dir() -> Path:
    """$INSPYRENET_PARITY_DIR if set, else the generated fixtures (made on first use, then cached)."""
    override = os.environ.get("INSPYRENET_PARITY_DIR")
    if not override:
        return parity_fixtures()
    path = Path(override)
    if not (path / "manifest.json").is_file():
        pytest.fail(f"INSPYRENET_PARITY_DIR={override}: no manifest.json there; unset it to generate the fixtures")
    return path


def manifest() -> dict:
    return json.loads((parity_dir() / "manifest.json").read_text())


def build_case_model(case: str) -> InSPyReNet:
    """The reduced model of a fixture case, with the fixture's weights loaded."""
    spec = manifest()
    config = spec["cases"][case]
    backbone = config.get("backbone", spec["backbone"])
    if backbone["kind"].startswith("res2net"):
        model = InSPyReNet(
            "res2net50",
            depth=config.get("depth", spec["depth"]),
            base_size=tuple(config["base_size"]),
            backbone_args={"layers": backbone["layers"]},
        )
    else:
        model = InSPyReNet(
            "swinb",
            depth=config.get("depth", spec["depth"]),
            base_size=tuple(config["base_size"]),
            backbone_args={k: backbone[k] for k in ("embed_dim", "depths", "num_heads", "window_size")},
        )
    model.load_reference_state_dict(load_file(str(parity_dir() / config["weights"])))
    return model.eval()


def case_io(case: str) -> dict[str, torch.Tensor]:
    return load_file(str(parity_dir() / manifest()["cases"][case]["io"]))
