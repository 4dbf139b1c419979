"""`inspyrenet-lite models` and `--model` in the default command."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from inspyrenet_lite.cli import main
from inspyrenet_lite import InSPyReNet
from inspyrenet_lite.registry import MODELS


def test_models_lists_every_name_with_its_facts_and_what_is_cached(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("INSPYRENET_LITE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "InSPyReNet_SwinB_DIS5K.pth").write_bytes(b"x")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:] if line and not line.startswith("*")}
    assert set(rows) == set(MODELS)
    assert rows["swinb-dis5k"].split()[1:4] == ["swinb", "1024x1024", "DIS-TR"]
    assert rows["swinb-dis5k"].rstrip().endswith("yes")
    assert rows["res2net50"].split()[1:4] == ["res2net50", "384x384", "DUTS-TR"]
    assert rows["res2net50"].rstrip().endswith("no")
    assert "plus-ultra *" in "\n".join(lines) and "benchmark" in lines[-1]


def test_model_flag_runs_a_saved_folder(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    args = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 2}
    InSPyReNet("swinb", depth=8, base_size=(64, 64), backbone_args=args).save_pretrained(tmp_path / "mine")
    photo = tmp_path / "a.png"
    Image.new("RGB", (70, 50), (200, 30, 30)).save(photo)
    assert main([str(photo), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "mine"), "--device", "cpu", "-q"]) == 0
    with Image.open(tmp_path / "out" / "a.png") as out:
        assert out.mode == "RGBA" and out.size == (70, 50)


def test_model_and_mode_that_disagree_exit_2(tmp_path: Path, capsys) -> None:
    photo = tmp_path / "a.png"
    Image.new("RGB", (40, 30)).save(photo)
    assert main([str(photo), "-o", str(tmp_path / "out"), "--model", "base", "--mode", "fast", "-q"]) == 2
    assert "alias" in capsys.readouterr().err


def test_bad_base_size_is_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.png"), "--base-size", "big"])
    assert "HxW" in capsys.readouterr().err
