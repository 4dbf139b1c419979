"""inspyrenet_lite.metrics against PySODMetrics 1.6.2 (the implementation behind
the paper's numbers) and against hand-computed mBA cases (mBA has no PyPI peer)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import py_sod_metrics as psm
from inspyrenet_lite import metrics
from scipy.ndimage import distance_transform_edt

TOL = 1e-6


def _pair(rng: np.random.Generator, h: int, w: int, gt_kind: int, pred_kind: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:h, :w]
    if gt_kind == 0:  # empty mask
        gt = np.zeros((h, w))
    elif gt_kind == 1:  # all foreground
        gt = np.ones((h, w))
    elif gt_kind == 2:  # salt and pepper (many distance-transform ties)
        gt = rng.random((h, w)) < rng.random()
    else:  # an ellipse, possibly touching the border
        cy, cx = rng.random() * h, rng.random() * w
        ry, rx = rng.random() * h / 2 + 0.5, rng.random() * w / 2 + 0.5
        gt = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    gt = (np.asarray(gt) * 255).astype(np.uint8)
    if pred_kind == 0:  # constant prediction
        pred = np.full((h, w), rng.integers(256))
    elif pred_kind == 1:
        pred = rng.integers(0, 256, (h, w))
    elif pred_kind == 2:
        pred = np.clip(gt * 0.7 + rng.normal(0, 40, (h, w)), 0, 255)
    elif pred_kind == 3:  # binary
        pred = (rng.random((h, w)) < 0.5) * 255
    else:
        pred = np.clip(gt * rng.random() + rng.integers(0, 60, (h, w)), 0, 255)
    return pred.astype(np.uint8), gt


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20260611)
    out = []
    tiny = [(1, 1), (1, 2), (2, 3), (3, 2), (1, 7), (5, 1)]
    for h, w in tiny:  # every kind of mask and prediction on tiny images
        for gk in range(4):
            for pk in range(5):
                out.append(_pair(rng, h, w, gk, pk))
    for _ in range(180):  # small, non-square
        h, w = rng.integers(2, 90, size=2)
        out.append(_pair(rng, int(h), int(w), int(rng.integers(4)), int(rng.integers(5))))
    for h, w in [(240, 320), (333, 197), (900, 1200)]:  # larger, the last about a megapixel
        out.append(_pair(rng, h, w, 3, 2))
    out.append(_pair(rng, 480, 640, 3, 0))
    return out


def _reference(pred: np.ndarray, gt: np.ndarray) -> dict:
    """PySODMetrics' per-image numbers (Fmeasure is the class the authors used)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm, fm, em, wfm, mae = psm.Smeasure(), psm.Fmeasure(), psm.Emeasure(), psm.WeightedFmeasure(), psm.MAE()
        for m in (sm, fm, em, wfm, mae):
            m.step(pred, gt)
        s = float(sm.sms[0])
        if math.isnan(s):
            s = _s_without_empty_quadrants(sm, pred, gt)
    return {
        "S": s,
        "adpF": float(fm.adaptive_fms[0]),
        "adpE": float(em.adaptive_ems[0]),
        "wF": float(wfm.weighted_fms[0]),
        "MAE": float(mae.maes[0]),
        "f_curve": np.asarray(fm.changeable_fms[0])[::-1],  # theirs runs from threshold 255 down
        "e_curve": np.asarray(em.changeable_ems[0])[::-1],
    }


def _s_without_empty_quadrants(sm, pred, gt) -> float:
    """PySODMetrics returns NaN when the foreground centroid lies on the last
    row/column (an empty quadrant, 0 pixels, weight 0, gives NaN * 0). We give
    that quadrant its weight, 0; here is the reference's own formula with the
    empty quadrant dropped, built from its own object/ssim pieces."""
    p, g = psm.utils.prepare_data(pred, gt)
    h, w = g.shape
    cy, cx = (int(v) + 1 for v in np.argwhere(g).mean(axis=0).round())
    region = 0.0
    for rows, cols in ((slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)),
                       (slice(cy, h), slice(0, cx)), (slice(cy, h), slice(cx, w))):
        pq, gq = p[rows, cols], g[rows, cols]
        if pq.size:
            region += sm.ssim(pq, gq) * pq.size / (h * w)
    return max(0.0, 0.5 * sm.object(p, g) + 0.5 * region)


PAIRS = _pairs()


def test_per_image_scores_equal_pysodmetrics():
    worst: dict[str, float] = {}
    for pred, gt in PAIRS:
        ref = _reference(pred, gt)
        ours = metrics.score_image(pred, gt, with_mba=False)
        for key in ("S", "adpF", "adpE", "wF", "MAE"):
            err = abs(getattr(ours, key) - ref[key])
            worst[key] = max(worst.get(key, 0.0), err)
            assert err <= TOL, (key, pred.shape, getattr(ours, key), ref[key])
        for key in ("f_curve", "e_curve"):
            np.testing.assert_allclose(getattr(ours, key), ref[key], rtol=0, atol=TOL)
    assert set(worst) == {"S", "adpF", "adpE", "wF", "MAE"}


def test_dataset_scores_equal_pysodmetrics_aggregation():
    """Curves are averaged over images before max/mean (not the mean of per-image maxima)."""
    ev = metrics.Evaluator(with_mba=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm, em, wfm, mae = psm.Fmeasure(), psm.Emeasure(), psm.WeightedFmeasure(), psm.MAE()
        sm = psm.Smeasure()
        s_ref = []
        for pred, gt in PAIRS[::3]:
            for m in (fm, em, wfm, mae, sm):
                m.step(pred, gt)
            s_ref.append(_reference(pred, gt)["S"])
            ev.update(pred, gt)
        f, e = fm.get_results()["fm"], em.get_results()["em"]
    got = ev.results()
    ref = {
        "S": float(np.mean(s_ref)),
        "maxF": f["curve"].max(), "meanF": f["curve"].mean(), "adpF": f["adp"],
        "maxE": e["curve"].max(), "meanE": e["curve"].mean(), "adpE": e["adp"],
        "wF": wfm.get_results()["wfm"], "MAE": mae.get_results()["mae"],
    }
    for key, value in ref.items():
        # 1-pixel images give E-measures of ~1/eps (the definition divides by
        # N - 1 + eps), so compare relatively as well
        assert got[key] == pytest.approx(float(value), abs=TOL, rel=1e-12), key
    per_image_max = np.mean([s.maxF for s in ev.images])
    assert got["maxF"] < per_image_max  # the averaging order matters on this set
    assert list(got) == list(metrics.METRIC_KEYS)


def test_float_maps_are_quantised_like_saved_pngs():
    rng = np.random.default_rng(1)
    pred, gt = _pair(rng, 40, 50, 3, 2)
    as_float = rng.random((40, 50))
    as_u8 = (as_float * 255).astype(np.uint8)
    assert metrics.s_measure(as_float, gt) == metrics.s_measure(as_u8, gt)
    assert metrics.mae(as_float, gt > 128) == metrics.mae(as_u8, gt)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="differ in size"):
        metrics.score_image(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.mae(np.full((3, 3), 2.0), np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        metrics.mae(np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 3), np.uint8))


def test_distance_transform_equals_scipy_including_ties():
    rng = np.random.default_rng(7)
    for h, w, p in [(1, 1, 1.0), (1, 9, 0.2), (9, 1, 0.2), (31, 47, 0.02), (64, 40, 0.5), (50, 50, 0.001)]:
        mask = rng.random((h, w)) < p
        mask.flat[rng.integers(mask.size)] = True
        dist, rows, cols = metrics.distance_transform(mask)
        ref_d, (ref_r, ref_c) = distance_transform_edt(~mask, return_indices=True)
        np.testing.assert_allclose(dist, ref_d, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(rows, ref_r)
        np.testing.assert_array_equal(cols, ref_c)


# ---------------------------------------------------------------- mBA, by hand


def test_mba_radii_follow_cascadepsp_rounding():
    assert metrics.mba_radii(4, 4) == [1, 1, 1, 1, 1]  # (w+h)/300 < 1: int() truncates toward 0
    assert metrics.mba_radii(600, 900) == [1, 1, 2, 3, 4]  # max 5: 1 + int(0.8 i)
    assert metrics.mba_radii(1080, 1920) == [1, 2, 4, 6, 8]  # max 10: 1 + int(1.8 i)


def test_ellipse_kernels_by_hand():
    plus = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    np.testing.assert_array_equal(metrics.ellipse_kernel(1), plus)
    # r=2: rows |dy|=2 -> round(0)=0; |dy|=1 -> round(sqrt 3)=2; dy=0 -> 2
    k2 = [[0, 0, 1, 0, 0]] + [[1] * 5] * 3 + [[0, 0, 1, 0, 0]]
    np.testing.assert_array_equal(metrics.ellipse_kernel(2), k2)
    # r=3: |dy|=3 -> 0; |dy|=2 -> round(sqrt 5 = 2.24) = 2; |dy|=1 -> round(sqrt 8 = 2.83) = 3
    k3 = metrics.ellipse_kernel(3).astype(int)
    assert k3.sum(axis=1).tolist() == [1, 5, 7, 7, 7, 5, 1]


def test_mba_hand_computed():
    gt = np.zeros((4, 4), np.uint8)
    gt[:, :2] = 255  # left half
    # Radius 1 everywhere (tiny image), plus-shaped kernel: the boundary is
    # columns 1 and 2 (8 pixels).
    all_fg = np.full((4, 4), 200, np.uint8)  # > 128: right on column 1, wrong on column 2
    assert metrics.mba(all_fg, gt) == pytest.approx(0.5)
    assert metrics.mba(gt, gt) == 1.0
    assert metrics.mba(255 - gt, gt) == 0.0
    exactly_128 = np.full((4, 4), 128, np.uint8)  # not > 128: background everywhere
    assert metrics.mba(exactly_128, gt) == pytest.approx(0.5)
    one_wrong = gt.copy()
    one_wrong[0, 1] = 0  # one boundary pixel wrong
    assert metrics.mba(one_wrong, gt) == pytest.approx(7 / 8)
    one_wrong_inside = gt.copy()
    one_wrong_inside[0, 0] = 0  # outside the boundary band: not counted
    assert metrics.mba(one_wrong_inside, gt) == 1.0


def test_mba_single_pixel_object_uses_the_plus_kernel():
    gt = np.zeros((5, 5), np.uint8)
    gt[2, 2] = 255
    # dilation by the plus gives 5 pixels; erosion of a single pixel is empty:
    # the boundary is the centre and its 4 neighbours.
    pred = np.zeros((5, 5), np.uint8)
    assert metrics.mba(pred, gt) == pytest.approx(4 / 5)
    pred[1, 1] = 255  # a diagonal neighbour is outside the plus: no change
    assert metrics.mba(pred, gt) == pytest.approx(4 / 5)


def test_mba_undefined_without_boundary_and_left_out_of_the_mean():
    empty = np.zeros((6, 6), np.uint8)
    assert math.isnan(metrics.mba(empty, empty))
    ev = metrics.Evaluator()
    gt = np.zeros((4, 4), np.uint8)
    gt[:, :2] = 255
    ev.update(np.full((4, 4), 200, np.uint8), gt)
    ev.update(empty, empty)
    assert ev.results()["mBA"] == pytest.approx(0.5)
