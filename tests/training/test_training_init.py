"""``train --init FILE`` goes through the package's one loader (issue 17): the backbone is read from
the file's keys, the base size from the file or ``--base-size``, and refused when it cannot be known."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspyrenet_lite import InSPyReNet
from inspyrenet_lite.checkpoint import load_checkpoint, save_checkpoint
from inspyrenet_lite.cli import main
from inspyrenet_lite.serialization import safetensors_metadata
from inspyrenet_lite.training.start import load_start


def test_a_res2net50_file_starts_a_res2net50_at_384(tmp_path: Path) -> None:
    with torch.device("meta"):
        shapes = InSPyReNet("res2net50").reference_state_dict()
    state = {k: torch.full(v.shape, 0.01) if v.is_floating_point() else torch.zeros(v.shape, dtype=v.dtype)
             for k, v in shapes.items()}
    path = save_checkpoint(state, tmp_path / "my_res2net.pth")
    del state
    model, published = load_start(str(path))
    assert published and model.backbone_name == "res2net50" and model.base_size == (384, 384)
    assert isinstance(model, InSPyReNet)  # save_pretrained works on what training exports


def test_a_swinb_file_that_does_not_say_its_base_size_is_refused(random_checkpoint: Path, capsys) -> None:
    with pytest.raises(ValueError, match="base size") as info:
        load_start(str(random_checkpoint))
    assert "--base-size" in str(info.value)
    code = main(["train", "--data", "nowhere", "--init", str(random_checkpoint), "-o", "unused", "-q"])
    assert code == 2
    assert "does not say its base size" in capsys.readouterr().err


def test_a_swinb_file_gets_its_base_size_from_the_argument_or_its_metadata(random_checkpoint: Path, tmp_path: Path) -> None:
    model, _ = load_start(str(random_checkpoint), base_size=1024)
    assert model.backbone_name == "swinb" and model.base_size == (1024, 1024)
    del model
    path = tmp_path / "base1024.safetensors"
    metadata = safetensors_metadata({"backbone": "swinb", "depth": 64, "base_size": [1024, 1024]})
    save_checkpoint(load_checkpoint(random_checkpoint), path, metadata=metadata)
    model, _ = load_start(str(path))
    assert model.base_size == (1024, 1024)
