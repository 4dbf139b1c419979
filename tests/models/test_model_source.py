"""Remover(model=..., ckpt=...): the backbone read from a checkpoint's keys, the base size from
base_size=, the file's metadata or the model named; Hub folders by path; registry defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_helpers import TINY_SWIN, same_outputs

from inspyrenet_lite import InSPyReNet, Remover
from inspyrenet_lite.checkpoint import save_checkpoint
from inspyrenet_lite.serialization import architecture_config, safetensors_metadata


def tiny_swin(base_size=(64, 64)) -> InSPyReNet:
    torch.manual_seed(0)
    return InSPyReNet("swinb", depth=8, base_size=base_size, backbone_args=TINY_SWIN).eval()


def test_full_size_res2net50_file_is_detected_by_its_keys(tmp_path: Path) -> None:
    """A Res2Net50 checkpoint given by path with the default model (a SwinB) loads as a Res2Net50."""
    with torch.device("meta"):
        shapes = InSPyReNet("res2net50").reference_state_dict()
    state = {k: torch.full(v.shape, 0.01) if v.is_floating_point() else torch.zeros(v.shape, dtype=v.dtype)
             for k, v in shapes.items()}
    path = save_checkpoint(state, tmp_path / "latest.pth")
    del state
    remover = Remover(ckpt=path, device="cpu")
    assert remover.model.backbone_name == "res2net50" and remover.base_size == (384, 384)


def test_full_size_swinb_file_is_detected_for_a_res2net_name_given_a_base_size(random_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="base_size"):
        Remover(model="res2net50", ckpt=random_checkpoint, device="cpu")
    remover = Remover(model="res2net50", ckpt=random_checkpoint, device="cpu", base_size=384)
    assert remover.model.backbone_name == "swinb" and remover.base_size == (384, 384)


def test_saved_weights_load_by_path_with_the_base_size_from_their_metadata(tmp_path: Path) -> None:
    model = tiny_swin((96, 64))
    model.save_pretrained(tmp_path)
    by_file = Remover(ckpt=tmp_path / "model.safetensors", device="cpu")
    assert by_file.base_size == (96, 64) and same_outputs(model, by_file.model)
    by_folder = Remover(model=str(tmp_path), device="cpu")
    assert by_folder.base_size == (96, 64) and same_outputs(model, by_folder.model)
    assert (by_folder.resize, by_folder.hr_blend) == ("static", 0.0)


def test_metadata_base_size_wins_over_the_model_name_and_explicit_wins_over_both(tmp_path: Path) -> None:
    model = tiny_swin((64, 64))
    path = save_checkpoint(
        model.reference_state_dict(), tmp_path / "m.safetensors", metadata=safetensors_metadata(architecture_config(model))
    )
    assert Remover(model="swinb-dis5k", ckpt=path, device="cpu").base_size == (64, 64)
    assert Remover(model="swinb-dis5k", ckpt=path, device="cpu", base_size=(128, 96)).base_size == (128, 96)


def test_registry_inference_defaults_apply_unless_overridden(tmp_path: Path, random_checkpoint: Path) -> None:
    dis = Remover(model="swinb-dis5k-lr", ckpt=random_checkpoint, device="cpu")
    assert (dis.resize, dis.hr_blend, dis.hr_short_side) == ("dynamic", 1.0, 1280)
    mine = Remover(model="swinb-dis5k-lr", ckpt=random_checkpoint, device="cpu", resize="static", hr_blend=0.0)
    assert (mine.resize, mine.hr_blend) == ("static", 0.0)
    fast = Remover(mode="fast", ckpt=random_checkpoint, device="cpu")
    assert (fast.resize, fast.hr_blend) == ("static", 0.0)


def test_model_and_mode_must_agree(random_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="alias"):
        Remover(model="base", mode="fast", ckpt=random_checkpoint)
    with pytest.raises(ValueError, match="swinb-dis5k"):
        Remover(model="turbo")


def test_the_ckpt_variable_applies_to_registry_names_never_to_a_named_folder(tmp_path: Path, monkeypatch) -> None:
    """INSPYRENET_LITE_CKPT (or ckpt=) must not swap in other weights for a folder/file the caller named."""
    from inspyrenet_lite import model_source

    tiny_swin((64, 64)).save_pretrained(tmp_path / "a")
    tiny_swin((96, 96)).save_pretrained(tmp_path / "b")
    monkeypatch.setenv("INSPYRENET_LITE_CKPT", str(tmp_path / "b" / "model.safetensors"))
    assert model_source.load(str(tmp_path / "a")).model.base_size == (64, 64)
    with pytest.raises(ValueError, match="is not one"):
        model_source.load(str(tmp_path / "a"), ckpt=tmp_path / "b" / "model.safetensors")
    with pytest.raises(ValueError, match="is not one"):
        model_source.load(str(tmp_path / "a" / "model.safetensors"), ckpt=tmp_path / "b" / "model.safetensors")


def test_a_missing_checkpoint_path_with_a_slash_is_not_taken_for_a_hub_repo(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Remover(model="ckpts/model.pth", device="cpu")


def test_bad_metadata_in_a_checkpoint_file_names_the_file_and_field(tmp_path: Path) -> None:
    from inspyrenet_lite.serialization import ConfigError

    model = tiny_swin((64, 64))
    metadata = {**safetensors_metadata(architecture_config(model)), "base_size": "64xseven"}
    del metadata["config"]
    path = save_checkpoint(model.reference_state_dict(), tmp_path / "m.safetensors", metadata=metadata)
    with pytest.raises(ConfigError, match="base_size") as info:
        Remover(model=str(path), device="cpu")
    assert str(path) in str(info.value)


def test_a_path_object_loads_and_a_missing_local_path_is_said_to_be_missing(tmp_path: Path, monkeypatch) -> None:
    """A pathlib.Path is a model like its string; a name that can only be a local path and is not there says
    so, instead of being tried as a Hub repo (whose error spoke of an unreachable Hub)."""
    from inspyrenet_lite import model_source
    from training_helpers import tiny_model

    tiny_model().save_pretrained(tmp_path / "tiny")
    assert model_source.load(tmp_path / "tiny").model.base_size == (64, 64)
    assert Remover(model=tmp_path / "tiny", device="cpu").model.base_size == (64, 64)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Remover(model="~/tiny", device="cpu").model.base_size == (64, 64)
    monkeypatch.chdir(tmp_path)
    for missing in ("./nope", "nope/", str(tmp_path / "nope"), "~/nope", tmp_path / "nope"):
        with pytest.raises(FileNotFoundError, match="does not exist; check the path"):
            Remover(model=missing, device="cpu")
        with pytest.raises(FileNotFoundError, match="does not exist; check the path"):
            model_source.load(missing)
