"""Temporal stability: no flicker on still parts, no ghosting on moving parts.

A network that sees each frame alone answers slightly differently to the
sensor noise and compression of every frame, so the edges of a still subject
shimmer. :class:`Stabilizer` smooths the map over time only where the image
did not change: per pixel, an exponential average whose weight on the past
is ``smoothing`` where the frame is still and falls to zero where it moved,
so moving parts follow the per-frame map exactly (no trail behind them). A
pixel whose map jumps by more than ``small_jump`` (map units) is followed
more closely too, fully from ``big_jump``: flicker is a small wobble, a jump
that size is a real change (the subject moving over a flat area, where the
picture itself barely changes).

"Changed" is measured on a small grey copy of the frames (block means, then
a 5x5 box blur), which averages the noise away: a pixel whose blurred grey
level moved by at most ``still`` levels is still, by ``moving`` or more it
moved; in between the weight goes linearly from one to the other. A scene cut
changes every pixel, so the average restarts there.

The two measures the README reports, on the same change map:

* :func:`flicker`: mean ``|m_t - m_{t-1}|`` over the pixels that are still
  (lower is steadier);
* :func:`lag`: mean ``|s_t - m_t|`` between the stabilised and the per-frame
  map over the pixels that changed (the ghosting; 0 for no stabilisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from inspyrenet_lite.compositing import box_blur

#: Long side of the grey copy the change is measured on.
WORK_SIDE = 160
_BLUR_RADIUS = 2
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def small_grey(rgb: np.ndarray, work_side: int = WORK_SIDE) -> np.ndarray:
    """Grey levels (0..255, float32) of ``rgb`` shrunk by block means so its
    long side is at most ``work_side``, then box-blurred."""
    height, width = rgb.shape[:2]
    factor = max(1, -(-max(height, width) // work_side))
    h, w = height // factor, width // factor
    grey = rgb[: h * factor, : w * factor].astype(np.float32) @ _GREY
    if factor > 1:
        grey = grey.reshape(h, factor, w, factor).mean(axis=(1, 3), dtype=np.float32)
    return box_blur(grey, _BLUR_RADIUS)


def change(previous: np.ndarray, current: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel change (grey levels) between two :func:`small_grey` images,
    resized bilinearly to ``size`` (H, W)."""
    diff = np.abs(current - previous)
    if diff.shape != size:
        diff = np.asarray(Image.fromarray(diff, mode="F").resize(size[::-1], Image.Resampling.BILINEAR))
    return diff


class Stabilizer:
    """Change-gated exponential smoothing of saliency maps (see the module doc).

    Args:
        smoothing: weight of the past on still pixels, in [0, 1) (0: off).
        still: change (grey levels) at or below which a pixel counts as still.
        moving: change at or above which a pixel follows the new map alone.
    """

    def __init__(
        self,
        smoothing: float = 0.8,
        still: float = 2.0,
        moving: float = 8.0,
        small_jump: float = 0.08,
        big_jump: float = 0.25,
    ) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        if not 0.0 <= still < moving:
            raise ValueError(f"need 0 <= still < moving, got still={still!r}, moving={moving!r}")
        if not 0.0 <= small_jump < big_jump:
            raise ValueError(f"need 0 <= small_jump < big_jump, got {small_jump!r}, {big_jump!r}")
        self.smoothing = float(smoothing)
        self.still = float(still)
        self.moving = float(moving)
        self.small_jump = float(small_jump)
        self.big_jump = float(big_jump)
        self.reset()

    def reset(self) -> None:
        """Forget the past (the next frame starts afresh)."""
        self._grey: np.ndarray | None = None
        self._state: np.ndarray | None = None

    def __call__(self, rgb: np.ndarray, saliency: np.ndarray) -> np.ndarray:
        """The stabilised map for the next frame (``rgb`` HxWx3 uint8, ``saliency`` HxW float in [0, 1])."""
        grey = small_grey(rgb)
        saliency = saliency.astype(np.float32, copy=False)
        if self._state is None or self._state.shape != saliency.shape or self._grey.shape != grey.shape:
            self._grey, self._state = grey, saliency.copy()
            return self._state.copy()
        moved = change(self._grey, grey, saliency.shape)
        gate = np.clip((moved - self.still) / (self.moving - self.still), 0.0, 1.0)
        # A big jump of the map is a real change even where the picture looks the
        # same (a flat area the subject's map moved over): follow it too.
        jump = np.abs(saliency - self._state)
        np.maximum(gate, np.clip((jump - self.small_jump) / (self.big_jump - self.small_jump), 0.0, 1.0), out=gate)
        # Weight of the new map: 1 - smoothing where still, 1 where moving.
        weight = (1.0 - self.smoothing) + self.smoothing * gate
        self._state += weight * (saliency - self._state)
        self._grey = grey
        return self._state.copy()


def _changes(frames: Sequence[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    greys = [small_grey(f) for f in frames]
    return [change(a, b, size) for a, b in zip(greys, greys[1:])]


def flicker(maps: Sequence[np.ndarray], frames: Sequence[np.ndarray], still: float = 2.0) -> float:
    """Mean ``|m_t - m_{t-1}|`` (map units, 0..1) over pixels whose frame did
    not change (change at or below ``still`` grey levels), over all frames."""
    total = count = 0.0
    for t, moved in enumerate(_changes(frames, maps[0].shape), start=1):
        mask = moved <= still
        total += float(np.abs(maps[t] - maps[t - 1])[mask].sum())
        count += int(mask.sum())
    return total / count if count else 0.0


def lag(
    stabilised: Sequence[np.ndarray], raw: Sequence[np.ndarray], frames: Sequence[np.ndarray], still: float = 2.0
) -> float:
    """Mean ``|s_t - m_t|`` (map units) over pixels whose frame changed (by
    more than ``still`` grey levels): how far the stabilised map trails the
    per-frame one where things move."""
    total = count = 0.0
    for t, moved in enumerate(_changes(frames, raw[0].shape), start=1):
        mask = moved > still
        total += float(np.abs(stabilised[t] - raw[t])[mask].sum())
        count += int(mask.sum())
    return total / count if count else 0.0
