"""``inspyrenet-lite eval`` and inspyrenet_lite.evaluate on small folders, with
PySODMetrics (the paper's evaluation code) as the truth for the scores."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import py_sod_metrics as psm
from inspyrenet_lite.cli import main
from inspyrenet_lite.evaluate import pair_files
from inspyrenet_lite.metrics import METRIC_KEYS


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) < 1).astype(np.uint8) * 255


def _pysod(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s, f, e, w, m = psm.Smeasure(), psm.Fmeasure(), psm.Emeasure(), psm.WeightedFmeasure(), psm.MAE()
        for pred, gt in pairs:
            for metric in (s, f, e, w, m):
                metric.step(pred, gt)
        fr, er = f.get_results()["fm"], e.get_results()["em"]
    return {
        "S": s.get_results()["sm"], "maxF": fr["curve"].max(), "meanF": fr["curve"].mean(), "adpF": fr["adp"],
        "maxE": er["curve"].max(), "meanE": er["curve"].mean(), "adpE": er["adp"],
        "wF": w.get_results()["wfm"], "MAE": m.get_results()["mae"],
    }


@pytest.fixture
def folders(tmp_path: Path):
    """gt: a, b, c, d; pred: a, b (JPEG), d (corrupt), e (no mask); c has no prediction."""
    rng = np.random.default_rng(3)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    masks = {
        "a": _ellipse(48, 64, 20, 30, 12, 20),
        "b": _ellipse(50, 40, 30, 10, 15, 9),
        "c": _ellipse(30, 30, 15, 15, 5, 5),
        "d": _ellipse(30, 30, 10, 10, 5, 5),
    }
    for stem, mask in masks.items():
        Image.fromarray(mask).save(gt_dir / f"{stem}.png")
    good = {}
    for stem in ("a", "b"):
        pred = np.clip(masks[stem] * 0.8 + rng.normal(0, 40, masks[stem].shape), 0, 255).astype(np.uint8)
        Image.fromarray(pred).save(pred_dir / f"{stem}.png")
        good[stem] = (pred, masks[stem])
    (pred_dir / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    Image.fromarray(masks["a"]).save(pred_dir / "e.png")
    (pred_dir / "notes.txt").write_text("ignored: not an image suffix")
    return gt_dir, pred_dir, good


def test_pairing_lists_what_is_left_out(folders):
    gt_dir, pred_dir, _ = folders
    pairs, problems = pair_files(pred_dir, gt_dir)
    assert [p[0] for p in pairs] == ["a", "b", "d"]
    assert any("no prediction for mask" in p and "c.png" in p for p in problems)
    assert any("no mask for prediction" in p and "e.png" in p for p in problems)


def test_eval_cli_scores_a_folder_with_a_missing_and_a_corrupt_file(folders, tmp_path, capsys):
    gt_dir, pred_dir, good = folders
    out_json, out_csv = tmp_path / "scores.json", tmp_path / "scores.csv"
    code = main(["eval", "--pred", str(pred_dir), "--gt", str(gt_dir), "--json", str(out_json),
                 "--csv", str(out_csv), "-q"])
    captured = capsys.readouterr()
    assert code == 1  # a file could not be read; the rest is still scored
    assert "d.png" in captured.err and "unreadable" in captured.err
    assert "c.png" in captured.err and "e.png" in captured.err
    header = captured.out.splitlines()[0].split()
    assert header[-len(METRIC_KEYS):] == list(METRIC_KEYS)

    rows = json.loads(out_json.read_text())
    assert len(rows) == 1 and rows[0]["images"] == 2
    ref = _pysod([good["a"], good["b"]])
    for key, value in ref.items():
        assert rows[0][key] == pytest.approx(value, abs=1e-6), key
    assert 0.0 <= rows[0]["mBA"] <= 1.0

    with open(out_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 1 and table[0]["images"] == "2"
    assert float(table[0]["S"]) == pytest.approx(ref["S"], abs=1e-6)


def test_eval_cli_side_by_side_and_resized_maps(folders, tmp_path, capsys):
    gt_dir, pred_dir, good = folders
    other = tmp_path / "other"
    other.mkdir()
    # A map at twice the mask's size is resized to the mask before scoring;
    # a constant map of the mask's size is scored as is.
    big = np.kron(good["a"][0], np.ones((2, 2), np.uint8))
    Image.fromarray(big).save(other / "a.png")
    Image.fromarray(np.full((50, 40), 77, np.uint8)).save(other / "b.png")
    out_json = tmp_path / "s.json"
    assert main(["eval", "--pred", str(pred_dir), "--pred", str(other), "--gt", str(gt_dir), "--json",
                 str(out_json), "-q", "--no-mba"]) == 1
    rows = json.loads(out_json.read_text())
    assert [r["name"] for r in rows] == [str(pred_dir), str(other)]
    assert rows[1]["mBA"] is None
    ref_b = _pysod([(np.full((50, 40), 77, np.uint8), good["b"][1])])
    assert rows[1]["images"] == 2
    # the constant map alone: check its share through a one-image folder
    solo = tmp_path / "solo"
    solo.mkdir()
    Image.fromarray(np.full((50, 40), 77, np.uint8)).save(solo / "b.png")
    assert main(["eval", "--pred", str(solo), "--gt", str(gt_dir), "--json", str(out_json), "-q"]) == 0
    row = json.loads(out_json.read_text())[0]
    for key, value in ref_b.items():
        assert row[key] == pytest.approx(value, abs=1e-6), key
    capsys.readouterr()


def test_eval_cli_argument_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--gt", str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["eval", "--gt", str(tmp_path / "missing"), "--pred", str(tmp_path)])
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_cli_predicts_saves_and_scores(random_checkpoint, images_dir, tmp_path, capsys):
    """--images/--model: one forward pass (random-weight checkpoint); the saved map is what is scored."""
    imgs, gts, maps, out = tmp_path / "images", tmp_path / "gt", tmp_path / "maps", tmp_path / "s.json"
    imgs.mkdir()
    gts.mkdir()
    with Image.open(images_dir / "cat.png") as im:
        im.convert("RGB").resize((96, 64)).save(imgs / "cat.png")
    gt = _ellipse(64, 96, 30, 50, 20, 30)
    Image.fromarray(gt).save(gts / "cat.png")
    (imgs / "broken.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(gt).save(gts / "broken.png")

    code = main(["eval", "--images", str(imgs), "--gt", str(gts), "--model", "fast", "--ckpt",
                 str(random_checkpoint), "--device", "cpu", "--save-maps", str(maps), "--json", str(out), "-q"])
    assert code == 1
    assert "broken.jpg" in capsys.readouterr().err
    row = json.loads(out.read_text())[0]
    assert row["name"] == "fast" and row["images"] == 1
    assert sorted(p.name for p in (maps / "fast").iterdir()) == ["cat.png"]  # nothing half-written left
    saved = np.asarray(Image.open(maps / "fast" / "cat.png"))
    assert saved.shape == gt.shape and len(np.unique(saved)) > 10  # a real map at the mask's size
    for key, value in _pysod([(saved, gt)]).items():
        assert row[key] == pytest.approx(value, abs=1e-6), key


def _one_pair(tmp_path: Path, pred: np.ndarray, gt: np.ndarray, tag: str) -> tuple[Path, Path]:
    pred_dir, gt_dir = tmp_path / f"pred_{tag}", tmp_path / f"gt_{tag}"
    pred_dir.mkdir()
    gt_dir.mkdir()
    Image.fromarray(pred).save(pred_dir / "a.png")
    Image.fromarray(gt).save(gt_dir / "a.png")
    return pred_dir, gt_dir


def test_16_bit_maps_and_masks_are_scaled_not_clipped(tmp_path):
    from inspyrenet_lite.evaluate import evaluate_folder

    gt8 = _ellipse(48, 64, 20, 30, 12, 20)
    ramp16 = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))  # a soft map, 16-bit
    ramp8 = np.rint(ramp16 / 257.0).astype(np.uint8)
    result = evaluate_folder(*_one_pair(tmp_path, ramp16, gt8, "map16"), with_mba=False)
    ref = _pysod([(ramp8, gt8)])
    for key, value in ref.items():
        assert result.scores[key] == pytest.approx(value, abs=1e-6), key
    # A 16-bit mask at half scale (32896 -> 128) is background (foreground is > 128), not 255.
    gt16 = (gt8 > 0).astype(np.uint16) * 65535
    gt16[:, :8] = 32896
    result = evaluate_folder(*_one_pair(tmp_path, ramp8, gt16, "mask16"), with_mba=False)
    gt_ref = np.where(gt16 == 32896, 128, gt8).astype(np.uint8)
    assert result.scores["S"] == pytest.approx(_pysod([(ramp8, gt_ref)])["S"], abs=1e-6)


def test_masks_stored_as_0_and_1_are_scored_as_0_and_255_with_a_warning(tmp_path, caplog):
    from inspyrenet_lite.evaluate import evaluate_folder

    gt = _ellipse(48, 64, 20, 30, 12, 20)
    pred = np.clip(gt * 0.7 + 40, 0, 255).astype(np.uint8)
    with caplog.at_level("WARNING", logger="inspyrenet_lite"):
        zero_one = evaluate_folder(*_one_pair(tmp_path, pred, (gt // 255).astype(np.uint8), "01"), with_mba=False)
    assert any("0 and 1" in r.getMessage() for r in caplog.records)
    ref = _pysod([(pred, gt)])
    for key, value in ref.items():
        assert zero_one.scores[key] == pytest.approx(value, abs=1e-6), key


def test_save_maps_with_an_absolute_model_path_writes_inside_the_maps_folder(tmp_path, images_dir, capsys):
    """--model /abs/folder: the maps go to DIR/<folder's name>/, never into the model's own folder."""
    from training_helpers import tiny_model

    imgs, gts, maps = tmp_path / "images", tmp_path / "gt", tmp_path / "maps"
    imgs.mkdir()
    gts.mkdir()
    with Image.open(images_dir / "cat.png") as im:
        im.convert("RGB").resize((96, 64)).save(imgs / "config.png")  # a stem that a model folder also has
    Image.fromarray(_ellipse(64, 96, 30, 50, 20, 30)).save(gts / "config.png")
    model_dir = (tmp_path / "models" / "my model").resolve()
    tiny_model().save_pretrained(model_dir)
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    code = main(["eval", "--images", str(imgs), "--gt", str(gts), "--model", str(model_dir), "--device", "cpu",
                 "--save-maps", str(maps), "--no-mba", "-q"])
    assert code == 0, capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before  # the model folder is untouched
    assert [p.relative_to(maps).as_posix() for p in sorted(maps.rglob("*"))] == ["my_model", "my_model/config.png"]


def test_map_folder_labels_are_safe_and_unique():
    from inspyrenet_lite.evaluate import map_folder_labels

    labels = map_folder_labels(["fast", "/abs/a/run/", "/other/run", "owner/repo", "..", "/", "fast"])
    assert labels == ["fast", "run", "run-2", "owner--repo", "model", "model-2", "fast-2"]


def test_scoring_a_folder_against_itself_warns(folders, caplog):
    """--pred X --gt X scores a perfect 1.0 that says nothing: the library warns (and the CLI shows it)."""
    from inspyrenet_lite.evaluate import evaluate_folder

    gt_dir, pred_dir, _ = folders
    with caplog.at_level("WARNING", logger="inspyrenet_lite"):
        evaluate_folder(gt_dir, gt_dir, with_mba=False)
        assert [r.levelname for r in caplog.records if "same folder" in r.getMessage()] == ["WARNING"]
        caplog.clear()
        evaluate_folder(pred_dir, gt_dir, with_mba=False)
        assert not [r for r in caplog.records if "same folder" in r.getMessage()]


def test_eval_cli_says_on_stderr_that_pred_and_gt_are_the_same_folder(folders):
    import os
    import subprocess
    import sys

    gt_dir, _, _ = folders
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    same = str(gt_dir.parent / "." / gt_dir.name)  # another spelling of the same folder
    proc = subprocess.run([sys.executable, "-m", "inspyrenet_lite", "eval", "--pred", same, "--gt", str(gt_dir),
                           "-q", "--no-mba"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "same folder" in line]
    assert len(lines) == 1, proc.stderr


def test_cutouts_are_scored_by_their_alpha_and_opaque_colour_maps_by_their_luma(tmp_path):
    """The library's default output is an RGBA cut-out: eval scores the map it carries (its alpha), not the
    photo's brightness; an RGBA file that is fully opaque is a map like any other (its luma)."""
    from inspyrenet_lite.evaluate import evaluate_folder

    gt = _ellipse(48, 64, 20, 30, 12, 20)
    soft = np.clip(gt * 0.8 + np.tile(np.linspace(0, 40, 64), (48, 1)), 0, 255).astype(np.uint8)
    photo = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cutout = np.dstack([photo, soft])
    result = evaluate_folder(*_one_pair(tmp_path, cutout, gt, "cutout"), with_mba=False)
    ref = _pysod([(soft, gt)])
    for key, value in ref.items():
        assert result.scores[key] == pytest.approx(value, abs=1e-6), key

    opaque = np.dstack([np.repeat(soft[..., None], 3, axis=2), np.full((48, 64), 255, np.uint8)])
    result = evaluate_folder(*_one_pair(tmp_path, opaque, gt, "opaque"), with_mba=False)
    assert result.scores["S"] == pytest.approx(ref["S"], abs=1e-6)


def test_16_bit_masks_holding_8_bit_values_are_scored_as_those_values_with_a_warning(tmp_path, caplog):
    """A 16-bit mask of 0/255 (an export that kept 8-bit values in 16 bits) scaled would be all background."""
    from inspyrenet_lite.evaluate import evaluate_folder

    gt = _ellipse(48, 64, 20, 30, 12, 20)
    pred = np.clip(gt * 0.7 + 40, 0, 255).astype(np.uint8)
    with caplog.at_level("WARNING", logger="inspyrenet_lite"):
        result = evaluate_folder(*_one_pair(tmp_path, pred, gt.astype(np.uint16), "m16_255"), with_mba=False)
    assert any("0..255" in r.getMessage() and "16-bit" in r.getMessage() for r in caplog.records)
    for key, value in _pysod([(pred, gt)]).items():
        assert result.scores[key] == pytest.approx(value, abs=1e-6), key
