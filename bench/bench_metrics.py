"""Metric speed: inspyrenet_lite.metrics against PySODMetrics, same pairs, one run.

    python bench/bench_metrics.py --n 500 --size 864x1152

Generates ``--n`` (prediction, mask) pairs of about a megapixel from a seed
(objects of varied size and place, noisy soft predictions, some constant or
empty), scores each pair with both (S, F, E, weighted F, MAE: the metrics
PySODMetrics has; mBA is timed apart, it has no PySODMetrics peer), checks that
the dataset scores agree within 1e-6 and prints the wall times side by side.
Pairs are made one at a time (memory stays small); making them is not timed.
Needs the ``test`` extra (pysodmetrics).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspyrenet_lite import metrics  # noqa: E402
from inspyrenet_lite.metrics import METRIC_KEYS  # noqa: E402


def make_pair(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A soft, noisy prediction of an elliptical object (1 in 50 masks empty, 1 in 50 maps constant)."""
    yy, xx = np.ogrid[:h, :w]
    cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    ry, rx = rng.uniform(0.05, 0.45) * h, rng.uniform(0.05, 0.45) * w
    r2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    gt = ((r2 < 1) * 255).astype(np.uint8)
    if rng.random() < 0.02:
        gt[:] = 0
    soft = 1 / (1 + np.exp((np.sqrt(r2 * 1.1) - 1) * rng.uniform(5, 30)))
    pred = np.clip(soft * 255 + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)
    if rng.random() < 0.02:
        pred[:] = rng.integers(256)
    return pred, gt


def pysod_scores(ms) -> dict[str, float]:
    s, f, e, wf, m = ms
    fr, er = f.get_results()["fm"], e.get_results()["em"]
    return {
        "S": float(s.get_results()["sm"]), "maxF": float(fr["curve"].max()), "meanF": float(fr["curve"].mean()),
        "adpF": float(fr["adp"]), "maxE": float(er["curve"].max()), "meanE": float(er["curve"].mean()),
        "adpE": float(er["adp"]), "wF": float(wf.get_results()["wfm"]), "MAE": float(m.get_results()["mae"]),
    }


def _trim(metric, n: int):
    """Drop a PySODMetrics accumulator's entries beyond the first ``n`` (an interrupted pair)."""
    for name, value in vars(metric).items():
        if isinstance(value, list):
            setattr(metric, name, value[:n])
    return metric


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--size", default="864x1152", help="HxW of every pair (default about 1 MP)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))

    import py_sod_metrics as psm

    warnings.simplefilter("ignore")  # PySODMetrics warns that Fmeasure is deprecated (FmeasureV2)
    ref = (psm.Smeasure(), psm.Fmeasure(), psm.Emeasure(), psm.WeightedFmeasure(), psm.MAE())
    ours = metrics.Evaluator(with_mba=False)
    t_ours = t_ref = t_mba = 0.0
    rng = np.random.default_rng(args.seed)
    done = 0
    try:
        for i in range(args.n):
            pred, gt = make_pair(rng, h, w)
            t0 = time.perf_counter()
            ours.update(pred, gt)
            t1 = time.perf_counter()
            for metric in ref:
                metric.step(pred, gt)
            t2 = time.perf_counter()
            metrics.mba(pred, gt)
            t3 = time.perf_counter()
            t_ours, t_ref, t_mba = t_ours + t1 - t0, t_ref + t2 - t1, t_mba + t3 - t2
            done = i + 1
            if done % 50 == 0:
                print(f"  {done}/{args.n} pairs: ours {t_ours:.1f} s, PySODMetrics {t_ref:.1f} s", file=sys.stderr)
    except KeyboardInterrupt:  # report the pairs done so far
        print(f"interrupted after {done} pairs", file=sys.stderr)
        ref = tuple(_trim(m, done) for m in ref)
        ours.images = ours.images[:done]
    if not done:
        return 130
    args.n = done

    got, want = ours.results(), pysod_scores(ref)
    worst = max(abs(got[k] - want[k]) for k in want)
    print(f"{args.n} pairs of {h}x{w} ({h * w / 1e6:.2f} MP), seed {args.seed}\n")
    print("| metric | inspyrenet_lite | PySODMetrics 1.6.2 | abs diff |")
    print("| --- | --- | --- | --- |")
    for k in METRIC_KEYS:
        if k in want:
            print(f"| {k} | {got[k]:.6f} | {want[k]:.6f} | {abs(got[k] - want[k]):.1e} |")
    print()
    print("| wall time (S, F, E, wF, MAE) | total | per pair |")
    print("| --- | --- | --- |")
    print(f"| PySODMetrics 1.6.2 | {t_ref:.1f} s | {1e3 * t_ref / args.n:.0f} ms |")
    print(f"| inspyrenet_lite.metrics | {t_ours:.1f} s | {1e3 * t_ours / args.n:.0f} ms |")
    print(f"| speed-up | {t_ref / t_ours:.2f}x | |")
    print(f"| mBA alone (ours; no PySODMetrics peer) | {t_mba:.1f} s | {1e3 * t_mba / args.n:.0f} ms |")
    if worst > 1e-6:
        print(f"\nMISMATCH: largest difference {worst:.2e} > 1e-6", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
