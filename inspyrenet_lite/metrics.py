"""Salient-object-detection metrics, computed as the field computes them.

Pure array code (numpy), no model. The definitions follow the papers (Fan 2017
S-measure, Fan 2018 E-measure, Margolin 2014 weighted F-measure, CascadePSP
mBA) with the conventions of PySODMetrics, whose numbers the InSPyReNet paper
reports:

- ``pred`` is a uint8 map (as saved to PNG); a float map in [0, 1] is first
  quantised as the authors save it (x255, truncated). ``gt`` is ``mask > 128``
  (a bool mask is taken as is).
- For every metric but mBA, ``pred / 255`` is min-max normalised unless it is
  constant.
- F- and E-measure curves have 256 thresholds (index ``t``: positive =
  quantised pred >= t); the dataset curve is the mean of the image curves, and
  maxF/meanF (maxE/meanE) are its max/mean. Adaptive threshold =
  ``min(2 * mean(pred), 1)``.

Most statistics come from one histogram of (pred value, gt, S-measure quadrant)
per image, so the cost per image is a few passes over the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "METRIC_KEYS",
    "ImageScores",
    "Evaluator",
    "prepare",
    "score_image",
    "s_measure",
    "f_measure",
    "e_measure",
    "weighted_f_measure",
    "mae",
    "mba",
    "mba_radii",
    "ellipse_kernel",
    "distance_transform",
]

#: The keys of a dataset-level result, in report order.
METRIC_KEYS = ("S", "maxF", "meanF", "adpF", "maxE", "meanE", "adpE", "wF", "MAE", "mBA")

EPS = float(np.spacing(1))  # MATLAB's eps, as the reference implementations use
BETA2 = 0.3  # F-measure beta^2
ALPHA = 0.5  # S-measure balance between object and region scores


# --------------------------------------------------------------------------- inputs


def _as_array(x: Any) -> np.ndarray:
    """A 2-D numpy array; a torch tensor or a single-channel (1,H,W)/(H,W,1) map is accepted."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    elif x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    return x


def _to_u8(pred: Any) -> np.ndarray:
    pred = _as_array(pred)
    if pred.ndim != 2:
        raise ValueError(f"a prediction must be a 2-D map, got shape {pred.shape}")
    if pred.dtype == np.uint8:
        return pred
    if pred.dtype == bool:
        return pred.astype(np.uint8) * 255
    if np.issubdtype(pred.dtype, np.floating):
        if pred.size and not (np.nanmin(pred) >= 0.0 and np.nanmax(pred) <= 1.0):
            raise ValueError("a float prediction must lie in [0, 1]; pass uint8 maps (0..255) as uint8")
        return (pred.astype(np.float64) * 255).astype(np.uint8)
    raise ValueError(f"a prediction must be uint8, bool or float in [0, 1], got dtype {pred.dtype}")


def _to_mask(gt: Any) -> np.ndarray:
    gt = _as_array(gt)
    if gt.ndim != 2:
        raise ValueError(f"a ground-truth mask must be 2-D, got shape {gt.shape}")
    if gt.dtype == bool:
        return gt
    if gt.dtype == np.uint8:
        return gt > 128
    raise ValueError(f"a ground-truth mask must be uint8 (0..255; foreground > 128) or bool, got {gt.dtype}")


def prepare(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check a pair and return ``(pred_u8, gt_bool)`` of the same 2-D shape."""
    p8, g = _to_u8(pred), _to_mask(gt)
    if p8.shape != g.shape:
        raise ValueError(
            f"prediction {p8.shape} and mask {g.shape} differ in size; resize the prediction to the mask first"
        )
    if p8.size == 0:
        raise ValueError("empty prediction/mask (0 pixels)")
    return p8, g


def _levels(p8: np.ndarray) -> np.ndarray:
    """Float value of each uint8 level after ``/255`` and min-max normalisation.

    Same operations, in the same order, as normalising every pixel, so the
    values are bit-identical; levels absent from the image are set to 0.
    """
    lo, hi = int(p8.min()), int(p8.max())
    lut = np.arange(256, dtype=np.float64) / 255
    if hi != lo:
        lut = (lut - lut[lo]) / (lut[hi] - lut[lo])
        lut[:lo] = 0.0
        lut[hi + 1 :] = 0.0
    return lut


# --------------------------------------------------------------------------- per-image pieces


@dataclass
class _Stats:
    """Histogram statistics of one (pred, gt) pair."""

    lut: np.ndarray  # (256,) float value of each level
    fg: np.ndarray  # (256,) counts of each level on gt foreground
    bg: np.ndarray  # (256,) counts on gt background
    n: int
    n_fg: int
    # S-measure split at the foreground centroid (1-based, as MATLAB):
    # quad[i, gt, level] for quadrants top-left, top-right, bottom-left, bottom-right.
    cy: int = 0
    cx: int = 0
    quad: np.ndarray | None = None


def _stats(p8: np.ndarray, g: np.ndarray) -> _Stats:
    h, w = g.shape
    rows = np.count_nonzero(g, axis=1)
    n_fg = int(rows.sum())
    code = p8.astype(np.intp)
    np.add(code, 256, out=code, where=g)
    if n_fg in (0, g.size):
        hist = np.bincount(code.ravel(), minlength=512).reshape(2, 256)
        return _Stats(_levels(p8), hist[1], hist[0], g.size, n_fg)
    cols = np.count_nonzero(g, axis=0)
    cy = int(np.round((rows * np.arange(h)).sum() / n_fg)) + 1
    cx = int(np.round((cols * np.arange(w)).sum() / n_fg)) + 1
    code[cy:] += 1024
    code[:, cx:] += 512
    quad = np.bincount(code.ravel(), minlength=2048).reshape(4, 2, 256)
    both = quad.sum(axis=0)
    return _Stats(_levels(p8), both[1], both[0], g.size, n_fg, cy, cx, quad)


def _mean_pred(st: _Stats) -> float:
    return float(((st.fg + st.bg) * st.lut).sum() / st.n)


def _adaptive_threshold(st: _Stats) -> float:
    return min(2 * _mean_pred(st), 1.0)


def _f_from_counts(tp: np.ndarray, pos: np.ndarray, n_fg: int) -> np.ndarray:
    precision = tp / np.where(pos == 0, 1, pos)
    recall = tp / max(n_fg, 1)
    num = (1 + BETA2) * precision * recall
    den = np.where(num == 0, 1, BETA2 * precision + recall)
    return num / den


def _e_from_counts(tp: np.ndarray, pos: np.ndarray, n: int, n_fg: int) -> np.ndarray:
    """Enhanced-alignment score (Fan 2018) of a binarised map from its counts."""
    tp = np.asarray(tp, dtype=np.float64)
    pos = np.asarray(pos, dtype=np.float64)
    neg = n - pos
    if n_fg == 0:
        total = neg
    elif n_fg == n:
        total = pos
    else:
        fp = pos - tp
        fn = n_fg - tp
        tn = neg - fn
        mp = pos / n  # mean of the binarised prediction
        mg = n_fg / n
        total = np.zeros_like(tp)
        for count, a, b in ((tp, 1 - mp, 1 - mg), (fp, 1 - mp, -mg), (fn, -mp, 1 - mg), (tn, -mp, -mg)):
            align = 2 * (a * b) / (a**2 + b**2 + EPS)
            total = total + (align + 1) ** 2 / 4 * count
    return total / (n - 1 + EPS)


def _curves(st: _Stats) -> tuple[np.ndarray, np.ndarray]:
    """F and E curves over thresholds 0..255 (ascending)."""
    q = (st.lut * 255).astype(np.uint8)
    fg_q = np.bincount(q, weights=st.fg, minlength=256)
    bg_q = np.bincount(q, weights=st.bg, minlength=256)
    tp = np.cumsum(fg_q[::-1])[::-1]  # pixels >= t on the foreground
    pos = tp + np.cumsum(bg_q[::-1])[::-1]
    return _f_from_counts(tp, pos, st.n_fg), _e_from_counts(tp, pos, st.n, st.n_fg)


def _adaptive(st: _Stats) -> tuple[float, float]:
    """(adaptive F, adaptive E)."""
    on = st.lut >= _adaptive_threshold(st)
    tp = int(st.fg[on].sum())
    pos = tp + int(st.bg[on].sum())
    if tp == 0:
        adp_f = 0.0
    else:
        pre, rec = tp / pos, tp / st.n_fg
        adp_f = (1 + BETA2) * pre * rec / (BETA2 * pre + rec)
    return float(adp_f), float(_e_from_counts(tp, pos, st.n, st.n_fg))


def _mae(st: _Stats) -> float:
    return float(((st.bg * st.lut).sum() + (st.fg * (1 - st.lut)).sum()) / st.n)


# ---- S-measure


def _object_score(counts: np.ndarray, values: np.ndarray) -> float:
    n = counts.sum()
    mean = (counts * values).sum() / n
    std = math.sqrt((counts * (values - mean) ** 2).sum() / (n - 1)) if n > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + std + EPS)


def _ssim(fg: np.ndarray, bg: np.ndarray, lut: np.ndarray) -> float:
    """SSIM of a region from its pred histograms on gt foreground/background."""
    n_fg, n_bg = int(fg.sum()), int(bg.sum())
    n = n_fg + n_bg
    if n == 0:  # an empty quadrant has zero weight
        return 0.0
    counts = fg + bg
    x = (counts * lut).sum() / n
    y = n_fg / n
    dx = lut - x
    sx = (counts * dx**2).sum() / (n - 1 + EPS)
    sy = (n_fg * (1 - y) ** 2 + n_bg * y**2) / (n - 1 + EPS)
    sxy = ((fg * dx).sum() * (1 - y) - (bg * dx).sum() * y) / (n - 1 + EPS)
    a = 4 * x * y * sxy
    b = (x**2 + y**2) * (sx + sy)
    if a != 0:
        return a / (b + EPS)
    return 1.0 if b == 0 else 0.0


def _s_measure(p8: np.ndarray, g: np.ndarray, st: _Stats) -> float:
    if st.n_fg == 0:
        return 1 - _mean_pred(st)
    if st.n_fg == st.n:
        return _mean_pred(st)
    y = st.n_fg / st.n
    obj = _object_score(st.fg, st.lut) * y + _object_score(st.bg, 1 - st.lut) * (1 - y)

    h, w = g.shape
    cy, cx, hist = st.cy, st.cx, st.quad
    area = h * w
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    weights = (w_lt, w_rt, w_lb, 1 - w_lt - w_rt - w_lb)
    bounds = ((slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)), (slice(cy, h), slice(0, cx)))
    bounds += ((slice(cy, h), slice(cx, w)),)
    full = None
    region = 0.0
    for i, wq in enumerate(weights):
        fg, bg = hist[i, 1], hist[i, 0]
        levels = np.flatnonzero(fg + bg)
        if len(levels) == 1 and (fg.sum() == 0 or bg.sum() == 0):
            # Constant prediction on constant truth: SSIM is 1 when the
            # region's mean equals its value exactly, else 0 (alpha = 0 and
            # a float-noise variance). The reference decides this with a
            # float mean of the region, so reproduce that mean bit for bit.
            c = st.lut[levels[0]]
            if c not in (0.0, 1.0):
                full = st.lut[p8] if full is None else full
                region += wq * float(full[bounds[i]].mean() == c)
            else:
                region += wq
            continue
        region += wq * _ssim(fg, bg, st.lut)
    return float(max(0.0, ALPHA * obj + (1 - ALPHA) * region))


# ---- weighted F-measure


def _lower_envelope(fq: np.ndarray, sites: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower envelope of the parabolas ``(x - sites[i])^2 + f_i`` for every row at once.

    ``fq[i, row] = f_i + sites[i]^2``. Returns ``(env, z, k)``: per row, the
    envelope's site indices ``env[:k+1, row]`` and their left boundaries
    ``z[:k+1, row]`` (``z[0] = -inf``). Stored site-major so each step reads
    contiguous rows; the top of each stack is kept apart to spare gathers.
    """
    m, h = fq.shape
    rows = np.arange(h)
    env = np.zeros((m, h), dtype=np.int32)
    z = np.full((m + 1, h), np.inf)
    z[0] = -np.inf
    env_f, z_f, fq_f = env.reshape(-1), z.reshape(-1), fq.reshape(-1)
    at = rows.copy()  # flat index of each row's stack top: k * h + row
    # The top of every stack is the last site pushed, the same for all rows,
    # until some row pops: then its position differs per row (an array).
    top_v, top_p, top_z = fq[0], float(sites[0]), z[0]
    for i in range(1, m):
        q, fqi = float(sites[i]), fq[i]
        s = (fqi - top_v) / (2.0 * (q - top_p))
        pop = s <= top_z
        if pop.any():
            top_p = np.full(h, top_p)
            while True:  # pop the parabolas the new one hides, row by row
                at = at - h * pop
                top = env_f[at]
                top_v = np.where(pop, fq_f[top * h + rows], top_v)
                top_p = np.where(pop, sites[top], top_p)
                top_z = np.where(pop, z_f[at], top_z)
                s = np.where(pop, (fqi - top_v) / (2.0 * (q - top_p)), s)
                pop &= s <= top_z
                if not pop.any():
                    break
        at = at + h
        env_f[at] = i
        z_f[at] = s
        top_v, top_p, top_z = fqi, q, s
    k = (at - rows) // h
    return env, z, k


def _nearest(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared distance to the nearest ``True`` pixel, and where it is.

    Returns ``(d2, col, near_row)``: ``d2`` (h, w) float64 (exact integers);
    the nearest pixel of ``(i, j)`` is in column ``col[i, j]``, at row
    ``near_row[i, s]`` where ``s`` is that column's index among the columns
    holding a ``True`` pixel (``near_row`` is (h, that many)).
    """
    h, w = mask.shape
    sites = np.flatnonzero(mask.any(axis=0)).astype(np.int32)  # columns without True are never nearest
    m = len(sites)
    ms = mask[:, sites]
    r = np.arange(h, dtype=np.int32)[:, None]
    big = np.int32(h + w + 1)
    above = np.maximum.accumulate(np.where(ms, r, -big), axis=0)
    below = np.minimum.accumulate(np.where(ms, r, 2 * big)[::-1], axis=0)[::-1]
    near_row = np.where(below - r < r - above, below, above)  # (h, m); ties: above
    sites_f = sites.astype(np.float64)
    fq = (near_row - r).astype(np.float64).T ** 2 + (sites_f**2)[:, None]  # (m, h): f(q) + q^2
    fq = np.ascontiguousarray(fq)
    env, z, k = _lower_envelope(fq, sites_f)

    # Expand each row's envelope into runs of columns: segment t of a row
    # covers the columns j with z[t] < j <= z[t+1].
    in_env = np.arange(m)[None, :] <= k[:, None]  # (h, m), row-major entry order
    seg_site = env.T[in_env]
    seg_row = np.repeat(np.arange(h), k + 1)
    seg_start = np.clip(np.floor(z[:m].T[in_env]) + 1, 0, w).astype(np.int64)
    seg_end = np.empty_like(seg_start)
    seg_end[:-1] = seg_start[1:]
    seg_end[np.cumsum(k + 1) - 1] = w  # a row's last segment runs to its end
    runs = seg_end - seg_start
    d2 = np.repeat(sites_f[seg_site], runs).reshape(h, w)  # nearest column c, then in place:
    col = d2.astype(np.int32)
    j = np.arange(w, dtype=np.float64)[None, :]
    d2 *= -2.0
    d2 += j
    d2 *= j
    d2 += np.repeat(fq[seg_site, seg_row], runs).reshape(h, w)  # (j - c)^2 + f = j(j - 2c) + (f + c^2)
    return d2, col, near_row


def distance_transform(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Euclidean distance from every pixel to the nearest ``True`` pixel.

    Returns ``(distance, row, col)``: the distance (float64) and the
    coordinates of the nearest ``True`` pixel. Separable algorithm: nearest in
    each column, then the lower envelope of parabolas along each row
    (Felzenszwalb & Huttenlocher 2012), vectorised across rows; ties are
    broken as scipy's ``distance_transform_edt`` does, which the weighted
    F-measure of the reference depends on. ``mask`` must have a ``True`` pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("distance_transform needs at least one True pixel")
    d2, col, near_row = _nearest(mask)
    rows = np.arange(mask.shape[0])[:, None]
    return np.sqrt(d2), near_row[rows, _site_index(mask, col)], col


def _site_index(mask: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Index of each column of ``col`` among the columns of ``mask`` holding a True pixel."""
    return (np.cumsum(mask.any(axis=0)) - 1)[col]


def _gauss_1d() -> np.ndarray:
    # fspecial('gaussian', 7, 5) is the outer product of this normalised 1-D kernel
    k = np.exp(-(np.arange(-3, 4) ** 2) / (2 * 5.0**2))
    return k / k.sum()


def _filter_7x7(x: np.ndarray) -> np.ndarray:
    """7x7 Gaussian (sigma 5) with zeros outside the image, separably."""
    k = _gauss_1d()
    h, w = x.shape
    p = np.pad(x, 3)
    t = sum(k[i] * p[i : i + h, :] for i in range(7))
    return sum(k[i] * t[:, i : i + w] for i in range(7))


def _weighted_f(p8: np.ndarray, g: np.ndarray, lut: np.ndarray) -> float:
    if not g.any():
        return 0.0
    pred = lut[p8]
    d2, col, near_row = _nearest(g)
    # Pixel dependency: a background pixel takes the error of its nearest
    # foreground pixel before smoothing; only pixels within 3 of the
    # foreground reach a foreground pixel's 7x7 window, so crop to them.
    ys, xs = np.flatnonzero(g.any(axis=1)), np.flatnonzero(g.any(axis=0))
    y0, y1 = max(ys[0] - 3, 0), min(ys[-1] + 4, g.shape[0])
    x0, x1 = max(xs[0] - 3, 0), min(xs[-1] + 4, g.shape[1])
    gc, err = g[y0:y1, x0:x1], np.abs(pred[y0:y1, x0:x1] - g[y0:y1, x0:x1])
    cc = col[y0:y1, x0:x1]
    nr = near_row[np.arange(y0, y1)[:, None], _site_index(g, cc)] - y0
    nc = cc - x0
    et = np.where(gc, err, err[nr, nc])  # the nearest foreground pixel is inside the crop
    # Zero padding at the crop's inner edges reaches no foreground pixel's
    # window; at the image border the reference pads zeros too.
    ea = _filter_7x7(et)
    e_fg, ea_fg = err[gc], ea[gc]
    sum_fg = float(np.where(ea_fg < e_fg, ea_fg, e_fg).sum())
    # Pixel importance: background errors weigh more far from the object
    # (the error of a background pixel is its prediction).
    b = np.sqrt(d2, out=d2)
    b *= math.log(0.5) / 5
    b = np.exp(b, out=b)
    b = np.subtract(2, b, out=b)
    fp_w = float(np.dot(np.where(g, 0.0, pred).ravel(), b.ravel()))
    tp_w = e_fg.size - sum_fg
    recall = 1 - sum_fg / e_fg.size
    precision = tp_w / (tp_w + fp_w + EPS)
    return float(2 * recall * precision / (recall + precision + EPS))


# ---- mBA


def mba_radii(h: int, w: int) -> list[int]:
    """CascadePSP's five radii for an h x w image.

    ``1 + int((max_r - 1) / 5 * i)`` for i in 0..4 with ``max_r = (w + h) / 300``
    (``int`` truncates toward zero, so small images use radius 1 throughout
    and the last radius stays below ``max_r``).
    """
    max_r = (w + h) / 300
    return [1 + int((max_r - 1) / 5 * i) for i in range(5)]


def ellipse_kernel(radius: int) -> np.ndarray:
    """The elliptical (2r+1)^2 structuring element (OpenCV's MORPH_ELLIPSE shape).

    Row ``dy`` spans ``|dx| <= round(sqrt(r^2 - dy^2))`` (round half to even).
    """
    r = int(radius)
    half = np.rint(np.sqrt(r * r - np.arange(-r, r + 1) ** 2.0)).astype(int)
    x = np.arange(-r, r + 1)
    return np.abs(x)[None, :] <= half[:, None]


def _dilate(m: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the ellipse; outside the image counts as False."""
    h, w = m.shape
    half = np.rint(np.sqrt(radius * radius - np.arange(-radius, radius + 1) ** 2.0)).astype(int)
    rows_by_width: dict[int, np.ndarray] = {0: m}
    cur = m
    for d in range(1, int(half.max()) + 1):
        nxt = cur.copy()
        nxt[:, d:] |= m[:, :-d] if d < w else False
        nxt[:, :-d] |= m[:, d:] if d < w else False
        rows_by_width[d] = cur = nxt
    out = np.zeros_like(m)
    for i, dy in enumerate(range(-radius, radius + 1)):
        src = rows_by_width[int(half[i])]
        if abs(dy) >= h:
            continue
        if dy >= 0:
            out[: h - dy] |= src[dy:]
        else:
            out[-dy:] |= src[: h + dy]
    return out


def _mba(p8: np.ndarray, gt_raw_fg: np.ndarray) -> float:
    seg = p8 > 128
    h, w = seg.shape
    accs = []
    for r in mba_radii(h, w):
        boundary = _dilate(gt_raw_fg, r) & _dilate(~gt_raw_fg, r)
        n = int(boundary.sum())
        if n == 0:
            return float("nan")
        accs.append(int((seg[boundary] == gt_raw_fg[boundary]).sum()) / n)
    return float(sum(accs) / len(accs))


# --------------------------------------------------------------------------- public per-image API


@dataclass
class ImageScores:
    """Scores of one image. ``f_curve``/``e_curve`` index threshold 0..255."""

    S: float
    adpF: float
    adpE: float
    wF: float
    MAE: float
    mBA: float
    f_curve: np.ndarray = field(repr=False)
    e_curve: np.ndarray = field(repr=False)

    @property
    def maxF(self) -> float:
        return float(self.f_curve.max())

    @property
    def maxE(self) -> float:
        return float(self.e_curve.max())


def score_image(pred: Any, gt: Any, *, with_mba: bool = True) -> ImageScores:
    """Every metric of one (prediction, mask) pair.

    ``mBA`` is NaN when the mask has no boundary (all background or all
    foreground): its accuracy is undefined there.
    """
    p8, g = prepare(pred, gt)
    st = _stats(p8, g)
    f_curve, e_curve = _curves(st)
    adp_f, adp_e = _adaptive(st)
    return ImageScores(
        S=_s_measure(p8, g, st),
        adpF=adp_f,
        adpE=adp_e,
        wF=_weighted_f(p8, g, st.lut),
        MAE=_mae(st),
        mBA=_mba(p8, g) if with_mba else float("nan"),
        f_curve=f_curve,
        e_curve=e_curve,
    )


def s_measure(pred: Any, gt: Any) -> float:
    """S-measure (Fan 2017, alpha 0.5) of one pair."""
    p8, g = prepare(pred, gt)
    return _s_measure(p8, g, _stats(p8, g))


def mae(pred: Any, gt: Any) -> float:
    """Mean absolute error of one pair."""
    p8, g = prepare(pred, gt)
    return _mae(_stats(p8, g))


def f_measure(pred: Any, gt: Any) -> tuple[np.ndarray, float]:
    """(F-measure curve over thresholds 0..255, adaptive F-measure), beta^2 = 0.3."""
    p8, g = prepare(pred, gt)
    st = _stats(p8, g)
    return _curves(st)[0], _adaptive(st)[0]


def e_measure(pred: Any, gt: Any) -> tuple[np.ndarray, float]:
    """(E-measure curve over thresholds 0..255, adaptive E-measure)."""
    p8, g = prepare(pred, gt)
    st = _stats(p8, g)
    return _curves(st)[1], _adaptive(st)[1]


def weighted_f_measure(pred: Any, gt: Any) -> float:
    """Weighted F-measure (Margolin 2014, beta 1); 0 for an empty mask."""
    p8, g = prepare(pred, gt)
    return _weighted_f(p8, g, _levels(p8))


def mba(pred: Any, gt: Any) -> float:
    """Mean boundary accuracy (CascadePSP) of one pair; NaN without a boundary."""
    p8, g = prepare(pred, gt)
    return _mba(p8, g)


# --------------------------------------------------------------------------- dataset level


class Evaluator:
    """Accumulates images and aggregates as the paper does.

    >>> ev = Evaluator()
    >>> for pred, gt in pairs:           # doctest: +SKIP
    ...     ev.update(pred, gt)
    >>> ev.results()["S"]                 # doctest: +SKIP

    Curves are averaged over images first, then max/mean are taken; the other
    metrics are means over images (mBA over the images that have a boundary).
    """

    def __init__(self, *, with_mba: bool = True) -> None:
        self.with_mba = with_mba
        self.images: list[ImageScores] = []

    def update(self, pred: Any, gt: Any) -> ImageScores:
        """Score one pair, keep it, and return its scores."""
        scores = score_image(pred, gt, with_mba=self.with_mba)
        self.images.append(scores)
        return scores

    def __len__(self) -> int:
        return len(self.images)

    def results(self) -> dict[str, float]:
        """Dataset scores under :data:`METRIC_KEYS` (NaN when no image)."""
        if not self.images:
            return {k: float("nan") for k in METRIC_KEYS}
        ims = self.images
        f = np.mean([s.f_curve for s in ims], axis=0)
        e = np.mean([s.e_curve for s in ims], axis=0)
        mbas = [s.mBA for s in ims if not math.isnan(s.mBA)]
        return {
            "S": float(np.mean([s.S for s in ims])),
            "maxF": float(f.max()),
            "meanF": float(f.mean()),
            "adpF": float(np.mean([s.adpF for s in ims])),
            "maxE": float(e.max()),
            "meanE": float(e.mean()),
            "adpE": float(np.mean([s.adpE for s in ims])),
            "wF": float(np.mean([s.wF for s in ims])),
            "MAE": float(np.mean([s.MAE for s in ims])),
            "mBA": float(np.mean(mbas)) if mbas else float("nan"),
        }
