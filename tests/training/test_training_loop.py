"""The training loop: resume equals an uninterrupted run, broken checkpoints are refused, data handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspyrenet_lite.training import (
    CheckpointError,
    PairDataset,
    TrainConfig,
    Trainer,
    find_samples,
    lr_at,
)
from training_helpers import photo_crops, tiny_model, write_pairs


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, images_dir: Path) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"), 8, photo_crops(images_dir), 64, seed=0)


def _trainer(data: Path, out: Path, trainer_args: dict | None = None, **overrides) -> Trainer:
    samples, _ = find_samples(data)
    settings = dict(epochs=2, batch_size=2, size=64, lr=1e-3, warmup=3, checkpoint_every=2, metric="mae")
    config = TrainConfig(**{**settings, **overrides})
    val = PairDataset(samples[:2], 64, augment=False)
    return Trainer(tiny_model(seed=3), PairDataset(samples, 64, seed=5), out, config, val_set=val, guard=True,
                   **(trainer_args or {}))


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(small_data, tmp_path):
    """Stochastic depth, augmentation, shuffling and the guard all draw the same numbers after a
    resume (RNG states are restored; augmentation is seeded per sample and epoch), and the CPU
    kernels are deterministic on one thread: the weights are bitwise equal."""
    whole = _trainer(small_data, tmp_path / "whole")
    whole.fit()
    cut = _trainer(small_data, tmp_path / "cut", max_steps=3)  # stops mid-epoch 1 (4 steps an epoch)
    assert cut.fit().interrupted
    resumed = _trainer(small_data, tmp_path / "cut")
    result = resumed.fit(resume=tmp_path / "cut" / "checkpoints" / "last.pt")
    assert result.step == 8 and result.epoch == 2
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The run did move the weights, so the equality says something.
    start = tiny_model(seed=3).state_dict()
    assert not torch.equal(a["attention0.conv_out4.conv.weight"], start["attention0.conv_out4.conv.weight"])


@pytest.mark.parametrize("damage", ["truncated", "garbage", "weights"])
def test_a_broken_checkpoint_is_refused_on_resume_with_a_clear_error(small_data, tmp_path, damage):
    path = tmp_path / "last.pt"
    if damage == "weights":  # a model file, not a training state
        torch.save(tiny_model().state_dict(), path)
        message = "not an inspyrenet-lite training checkpoint"
    else:
        _trainer(small_data, tmp_path / "run", max_steps=1).fit()
        data = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00garbage" * 100)
        message = "corrupted or half-written"
    trainer = _trainer(small_data, tmp_path / "again")
    with pytest.raises(CheckpointError, match=message):
        trainer.fit(resume=path)


def test_checkpoints_leave_no_temporary_files_and_the_log_has_every_epoch(small_data, tmp_path):
    _trainer(small_data, tmp_path).fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch001.pt", "epoch002.pt", "last.pt"]
    import json

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "val_mae" in r]
    assert [r["epoch"] for r in epochs] == [1, 2] and all("agreement" in r for r in epochs)
    assert all(r["lr"] > 0 and r["loss"] > 0 for r in records if "loss" in r)


@pytest.mark.parametrize("links", [True, False])
def test_each_epoch_keeps_its_own_checkpoint_while_last_moves_on(small_data, tmp_path, monkeypatch, links, current_umask):
    """epochNNN.pt is the state last.pt had at that epoch's end (a hard link, or a copy where the file
    system has none), and later writes of last.pt leave it as it was: each resumes where it says."""
    import os
    import stat

    from inspyrenet_lite.training import checkpoints

    if not links:
        def no_links(*args, **kwargs):
            raise OSError("hard links are not supported here")

        monkeypatch.setattr(os, "link", no_links)
    _trainer(small_data, tmp_path, checkpoint_every=0).fit()
    folder = tmp_path / "checkpoints"
    first, second, last = (checkpoints.load_state(folder / n) for n in ("epoch001.pt", "epoch002.pt", "last.pt"))
    assert (first["epoch"], first["step"]) == (1, 4) and (second["epoch"], second["step"]) == (2, 8)
    assert (folder / "epoch002.pt").read_bytes() == (folder / "last.pt").read_bytes()
    assert (folder / "epoch002.pt").samefile(folder / "last.pt") == links
    assert not (folder / "epoch001.pt").samefile(folder / "last.pt")
    key = "attention0.conv_out4.conv.weight"
    assert not torch.equal(first["model"][key], last["model"][key])
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~current_umask for p in folder.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["epoch001.pt", "epoch002.pt", "last.pt"]  # no temporaries


def test_schedule_is_poly_with_warm_up_from_a_tenth():
    base, max_it, warmup = 1e-4, 1000, 100
    assert lr_at(0, base, max_it, warmup) == pytest.approx(1e-5)
    assert lr_at(50, base, max_it, warmup) == pytest.approx(base * (0.1 + 0.9 * 0.5))
    assert lr_at(500, base, max_it, warmup) == pytest.approx((base - 1e-7) * 0.5**0.9 + 1e-7)
    assert lr_at(1000, base, max_it, warmup) == pytest.approx(1e-7)
    # Late in a short run the poly decay is below the warm-up line: the smaller wins.
    assert lr_at(99, base, 100, 12000) == pytest.approx((base - 1e-7) * 0.01**0.9 + 1e-7)


@pytest.mark.parametrize("backbone_lr", [None, 3e-4])
def test_a_training_step_runs_the_backbone_at_a_tenth_of_the_rate_unless_told(small_data, tmp_path, backbone_lr):
    """The optimiser Trainer.fit really steps: two groups, the backbone's parameters at lr/10 by default
    (or at --backbone-lr), both scheduled from their own base rate."""
    trainer = _trainer(small_data, tmp_path, max_steps=1, lr=1e-3, backbone_lr=backbone_lr)
    trainer.fit()
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    expected = 1e-4 if backbone_lr is None else backbone_lr
    assert groups["decoder"]["initial_lr"] == pytest.approx(1e-3)
    assert groups["backbone"]["initial_lr"] == pytest.approx(expected)
    assert groups["backbone"]["lr"] / groups["decoder"]["lr"] == pytest.approx(expected / 1e-3)
    backbone = {id(p) for p in trainer.model.backbone.parameters()}
    assert {id(p) for p in groups["backbone"]["params"]} == backbone
    assert not backbone & {id(p) for p in groups["decoder"]["params"]}
    assert all(g["weight_decay"] == 0 for g in trainer.optimizer.param_groups)
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["optimizer"]["param_groups"]
    assert [g["initial_lr"] for g in saved] == pytest.approx([1e-3, expected])  # and a resume keeps them


def test_bad_pairs_are_listed_and_skipped_labels_stay_soft(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "images" / "good.jpg")
    soft = np.tile(np.arange(40, dtype=np.uint8) * 6, (30, 1))  # a ramp 0..234
    Image.fromarray(soft).save(tmp_path / "masks" / "good.png")
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "lonely.jpg")
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "wrong.png")
    Image.new("L", (41, 30)).save(tmp_path / "masks" / "wrong.png")
    (tmp_path / "images" / "broken.png").write_bytes(b"not an image")
    Image.new("L", (40, 30)).save(tmp_path / "masks" / "broken.png")
    samples, bad = find_samples(tmp_path)
    assert [s.image.name for s in samples] == ["good.jpg"]
    reasons = {b.path.name: b.reason for b in bad}
    assert set(reasons) == {"lonely.jpg", "wrong.png", "broken.png"}
    assert "no mask" in reasons["lonely.jpg"] and "41x30" in reasons["wrong.png"] and "unreadable" in reasons["broken.png"]
    _, y = PairDataset(samples, 64, augment=False)[0]
    values = torch.unique(y)
    assert len(values) > 20 and 0 < float(values[len(values) // 2]) < 1  # soft, not binarised


def test_rgba_cutouts_train_on_their_alpha(tmp_path):
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    rgba = np.dstack([np.full((64, 64, 3), 90, np.uint8), alpha])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "no_alpha.jpg")
    samples, bad = find_samples(tmp_path)
    assert [s.image.name for s in samples] == ["a.png"] and [b.path.name for b in bad] == ["no_alpha.jpg"]
    _, y = PairDataset(samples, 64, augment=False)[0]
    np.testing.assert_allclose(y[0].numpy(), alpha / 255.0, atol=1e-6)


def test_bf16_autocast_trains_and_fp16_needs_cuda(small_data, tmp_path):
    trainer = _trainer(small_data, tmp_path / "bf16", precision="bf16", max_steps=2)
    start = trainer.model.attention0.conv_out4.conv.weight.detach().clone()
    trainer.fit()
    weight = trainer.model.attention0.conv_out4.conv.weight
    assert weight.dtype == torch.float32 and torch.isfinite(weight).all() and not torch.equal(weight, start)
    with pytest.raises(ValueError, match="CUDA"):
        TrainConfig(precision="fp16", device="cpu").check()


def test_frozen_backbone_stays_put_and_accumulation_counts_steps(small_data, tmp_path):
    trainer = _trainer(small_data, tmp_path, freeze_backbone=True, accumulate=2, epochs=1)
    before = {k: v.clone() for k, v in trainer.model.backbone.state_dict().items()}
    result = trainer.fit()
    assert result.step == 2  # 8 samples / (batch 2 x 2 accumulated)
    for key, value in trainer.model.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


def _keep_set(data: Path) -> PairDataset:
    samples, _ = find_samples(data)
    return PairDataset(samples[:5], 64, augment=False)  # 5 images, batches of 2: the cycle has a short batch


@pytest.mark.parametrize("where", ["epoch_boundary", "mid_epoch_with_keep_set"])
def test_resume_with_the_guard_is_bitwise_equal_to_an_uninterrupted_run(small_data, tmp_path, where):
    """The guard's data position and the random numbers drawn around validation are part of the run's
    future: resuming after an epoch (validation, and the guard's agreement, ran in between) or in the
    middle of one with a --keep set gives the uninterrupted run's weights, bitwise."""
    keep = _keep_set(small_data) if where != "epoch_boundary" else None

    def trainer(out: Path, **overrides) -> Trainer:
        return _trainer(small_data, out, {"guard_set": keep}, epochs=3, **overrides)

    whole = trainer(tmp_path / "whole")
    whole.fit()
    if where == "epoch_boundary":
        checkpoint = tmp_path / "whole" / "checkpoints" / "epoch001.pt"
    else:
        assert trainer(tmp_path / "cut", max_steps=6).fit().interrupted  # mid epoch 2, guard cycle part-way
        checkpoint = tmp_path / "cut" / "checkpoints" / "last.pt"
    resumed = trainer(tmp_path / "resumed")
    assert resumed.fit(resume=checkpoint).step == 12
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _pair_folder(folder: Path, masks: dict[str, np.ndarray]) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for stem, mask in masks.items():
        Image.new("RGB", mask.shape[::-1], (90, 120, 30)).save(folder / "images" / f"{stem}.jpg")
        Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")
    return folder


def test_16_bit_masks_are_scaled_not_clipped(tmp_path):
    """A 16-bit soft edge stays soft: 32896/65535 is a label of 128/255, not 1."""
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    ramp[:, 32] = 32896
    samples, _ = find_samples(_pair_folder(tmp_path, {"a": ramp}))
    _, y = PairDataset(samples, 64, augment=False)[0]
    assert float(y[0, 0, 32]) == pytest.approx(128 / 255)
    np.testing.assert_allclose(y[0].numpy(), np.rint(ramp / 257.0) / 255.0, atol=1e-6)


def test_masks_stored_as_0_and_1_are_read_as_0_and_255_with_one_warning(tmp_path, caplog):
    blob = np.zeros((64, 64), np.uint8)
    blob[16:48, 20:44] = 1
    samples, _ = find_samples(_pair_folder(tmp_path, {"a": blob, "b": blob.T.copy()}))
    dataset = PairDataset(samples, 64, augment=False)
    with caplog.at_level("WARNING", logger="inspyrenet_lite"):
        labels = [dataset[i][1] for i in (0, 1, 0, 1)]
    assert torch.equal(labels[0][0], torch.from_numpy(blob.astype(np.float32)))  # 1 is foreground, not 1/255
    warnings = [r for r in caplog.records if "0 and 1" in r.getMessage()]
    assert len(warnings) == 1 and "masks" in warnings[0].getMessage()


def test_trainer_refuses_a_folder_that_is_not_this_runs_own(small_data, tmp_path):
    from inspyrenet_lite.training import OutputFolderError

    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "epoch007.pt").write_bytes(b"an earlier run")
    with pytest.raises(OutputFolderError, match="already holds"):
        _trainer(small_data, out, max_steps=1).fit()
    assert (out / "checkpoints" / "epoch007.pt").read_bytes() == b"an earlier run"
    # Its own folder on resume is fine; a starting model's folder never is, overwrite or not.
    run = tmp_path / "run"
    _trainer(small_data, run, max_steps=1).fit()
    _trainer(small_data, run, max_steps=2).fit(resume=run / "checkpoints" / "last.pt")
    start = tmp_path / "start"
    tiny_model().save_pretrained(start)
    before = (start / "model.safetensors").read_bytes()
    trainer = _trainer(small_data, start, {"overwrite": True, "protect": [start]}, max_steps=1)
    with pytest.raises(OutputFolderError, match="starting model"):
        trainer.fit()
    assert (start / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", float("nan")), ("lr", 0), ("epochs", True), ("epochs", 1.5), ("batch_size", 0), ("size", 16),
     ("drop_path", 1.5), ("guard_weight", -1), ("max_steps", 0), ("precision", "fp8"), ("freeze_backbone", "no")],
)
def test_train_config_is_checked_by_the_one_check(field, value):
    """TrainConfig goes through checks.check_options like every other entry point (issue 17)."""
    from inspyrenet_lite.training import TrainConfig

    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value}).check()
