"""``inspyrenet-lite train`` end to end on a reduced model, and the full-size SwinB smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inspyrenet_lite import InSPyReNet
from inspyrenet_lite.cli import main
from training_helpers import photo_crops, tiny_model, write_pairs


def test_train_command_from_a_saved_reduced_model_to_a_loadable_best_model(tmp_path, images_dir):
    data = write_pairs(tmp_path / "data", 10, photo_crops(images_dir), 64, seed=0)
    start = tmp_path / "start"
    tiny_model(seed=0).save_pretrained(start)
    out = tmp_path / "out"
    code = main(["train", "--data", str(data), "--init", str(start), "--epochs", "2", "--batch-size", "2",
                 "--lr", "1e-3", "--val-fraction", "0.2", "-o", str(out), "-q"])
    assert code == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "val_s_measure" in r]
    assert len(epochs) == 2 and all("agreement" in r for r in epochs)  # guard on: trained weights given
    best = InSPyReNet.from_pretrained(out)
    assert best.base_size == (64, 64)
    best_epoch = max(epochs, key=lambda r: r["val_s_measure"])["epoch"]
    state = torch.load(out / "checkpoints" / f"epoch{best_epoch:03d}.pt", weights_only=False)["model"]
    for key, value in best.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)  # the best epoch's weights were exported
    from inspyrenet_lite.checkpoint import load_checkpoint

    assert load_checkpoint(out / "model.pth").keys() == load_checkpoint(out / "model.safetensors").keys()


def test_train_command_refuses_a_broken_resume_file_with_exit_status_2(tmp_path, images_dir, capsys):
    data = write_pairs(tmp_path / "data", 4, photo_crops(images_dir), 64, seed=0)
    start = tmp_path / "start"
    tiny_model().save_pretrained(start)
    broken = tmp_path / "last.pt"
    broken.write_bytes(b"PK\x03\x04 half a zip")
    code = main(["train", "--data", str(data), "--init", str(start), "--resume", str(broken),
                 "--batch-size", "2", "-o", str(tmp_path / "out"), "-q"])
    assert code == 2
    assert "corrupted or half-written" in capsys.readouterr().err


@pytest.mark.slow
def test_full_size_swinb_takes_two_optimiser_steps_at_384_on_the_cpu(tmp_path):
    from torch.utils.data import TensorDataset

    from inspyrenet_lite.build import build_model
    from inspyrenet_lite.training import TrainConfig, Trainer

    torch.manual_seed(0)
    model = build_model("fast")
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(2, 3, 384, 384, generator=g), torch.rand(2, 1, 384, 384, generator=g))
    before = model.attention0.conv_out4.conv.weight.detach().clone()
    config = TrainConfig(epochs=1, batch_size=1, size=384, lr=1e-5, warmup=0)
    result = Trainer(model, data, tmp_path, config).fit()
    assert result.step == 2 and result.epoch == 1
    assert torch.isfinite(model.attention0.conv_out4.conv.weight).all()
    assert not torch.equal(model.attention0.conv_out4.conv.weight, before)


def _finished_run(folder: Path) -> dict[str, bytes]:
    """A stand-in for an earlier run's folder: 30 epoch checkpoints, last.pt, a metrics log, a model, a note."""
    (folder / "checkpoints").mkdir(parents=True)
    files = {f"checkpoints/epoch{e:03d}.pt": f"old epoch {e}".encode() for e in range(1, 31)}
    files["checkpoints/last.pt"] = b"old last"
    files["metrics.jsonl"] = b'{"epoch": 30, "step": 9999, "val_s_measure": 0.9}\n'
    files["model.safetensors"] = b"old model"
    files["notes.txt"] = b"mine"
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_train_refuses_the_init_models_folder_as_output_even_with_overwrite(tmp_path, images_dir, capsys):
    data = write_pairs(tmp_path / "data", 4, photo_crops(images_dir), 64, seed=0)
    start = tmp_path / "start"
    tiny_model().save_pretrained(start)
    before = _snapshot(start)
    for extra in ([], ["--overwrite"]):
        code = main(["train", "--data", str(data), "--init", str(start), "--batch-size", "2", "--epochs", "1",
                     "-o", str(start), "-q", *extra])
        assert code == 2
        err = capsys.readouterr().err
        assert "starting model" in err and "Traceback" not in err
    assert _snapshot(start) == before


def test_train_refuses_an_earlier_runs_folder_and_overwrite_replaces_only_its_files(tmp_path, images_dir, capsys):
    data = write_pairs(tmp_path / "data", 6, photo_crops(images_dir), 64, seed=0)
    start = tmp_path / "start"
    tiny_model().save_pretrained(start)
    out = tmp_path / "out"
    old = _finished_run(out)
    args = ["train", "--data", str(data), "--init", str(start), "--batch-size", "2", "--epochs", "1",
            "--val-fraction", "0.34", "-o", str(out), "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds" in err and "--overwrite" in err and "--resume" in err
    assert _snapshot(out) == old  # nothing touched
    assert main([*args, "--overwrite"]) == 0
    after = _snapshot(out)
    assert sorted(n for n in after if n.startswith("checkpoints/")) == ["checkpoints/epoch001.pt", "checkpoints/last.pt"]
    assert after["notes.txt"] == b"mine"  # not ours: kept
    records = [json.loads(line) for line in after["metrics.jsonl"].decode().splitlines()]
    assert records and all(r["step"] < 9999 for r in records)  # the old log is gone, not appended to
    assert after["model.safetensors"] != b"old model"
