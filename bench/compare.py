"""Agreement metrics between two grey maps (uint8, same shape)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    return a.astype(np.int16), b.astype(np.int16)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    """Largest difference in grey levels (0..255)."""
    a16, b16 = _check(a, b)
    return int(np.abs(a16 - b16).max()) if a16.size else 0


def within_one_level(a: np.ndarray, b: np.ndarray) -> float:
    """Percentage of pixels whose grey levels differ by at most 1."""
    return within_levels(a, b, 1)


def within_levels(a: np.ndarray, b: np.ndarray, levels: int) -> float:
    """Percentage of pixels whose grey levels differ by at most ``levels``."""
    a16, b16 = _check(a, b)
    if not a16.size:
        return 100.0
    return float(np.mean(np.abs(a16 - b16) <= levels) * 100.0)


def mask_iou(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    """IoU of the masks ``map / 255 > threshold``; 1.0 when both masks are empty."""
    _check(a, b)
    ma = a.astype(np.float32) / 255.0 > threshold
    mb = b.astype(np.float32) / 255.0 > threshold
    union = np.logical_or(ma, mb).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(ma, mb).sum() / union)


def worst_agreement(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Worst over the pairs of maps: % within 1 and 2 grey levels, IoU at 0.5."""
    rows = [(within_levels(a, b, 1), within_levels(a, b, 2), mask_iou(a, b)) for a, b in pairs]
    return {"within1": min(r[0] for r in rows), "within2": min(r[1] for r in rows), "iou": min(r[2] for r in rows)}
