"""Score saliency maps against ground-truth masks, as the paper does.

Two entry points: :func:`evaluate_folder` scores saved maps, and
:func:`evaluate_model` predicts with a :class:`~inspyrenet_lite.Remover` and
scores (optionally keeping the maps). Files pair by stem (``cat.png`` with
``cat.jpg``); unpaired and unreadable files are listed in the result's
``problems``, never fatal. Pre-processing is TRAINING.md section 3: maps are
uint8 PNGs (a network map is quantised x255, truncated), a map of another
size than its mask is resized to the mask with bilinear ``align_corners=True``
(as the authors resize before saving), ``gt = mask > 128``. Files are read
by :mod:`inspyrenet_lite.masks`, as training reads its labels: 16-bit data is
scaled, and masks stored as 0/1 are read as 0/255 (with a logged warning).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspyrenet_lite.masks import read_grey, read_mask
from inspyrenet_lite.metrics import METRIC_KEYS, Evaluator

__all__ = [
    "EvalResult", "evaluate_folder", "evaluate_model", "pair_files", "make_remover", "read_grey", "format_table",
    "map_folder_labels",
]

logger = logging.getLogger(__name__)

#: Suffixes of map, mask and image files looked for in a folder.
from inspyrenet_lite.constants import IMAGE_SUFFIXES as SUFFIXES  # noqa: E402  (the one set of image suffixes)


@dataclass
class EvalResult:
    """Scores of one model or prediction folder."""

    name: str
    scores: dict[str, float]  # keys: metrics.METRIC_KEYS
    n_images: int
    problems: list[str] = field(default_factory=list)  # unpaired / unreadable files, one line each

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN (no image, or no mask with a boundary for mBA) becomes None."""
        out: dict[str, Any] = {"name": self.name, "images": self.n_images}
        out.update({k: (None if v != v else v) for k, v in self.scores.items()})
        out["problems"] = list(self.problems)
        return out


def _files_by_stem(folder: Path, problems: list[str]) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in SUFFIXES:
            found.setdefault(path.stem, []).append(path)
    out = {}
    for stem, paths in found.items():
        if len(paths) > 1:
            problems.append(f"ambiguous: {', '.join(str(p) for p in paths)} share the name {stem!r}; skipped")
        else:
            out[stem] = paths[0]
    return out


def pair_files(left: str | os.PathLike, gt: str | os.PathLike, what: str = "prediction") -> tuple[
    list[tuple[str, Path, Path]], list[str]
]:
    """Pair the files of ``left`` with the masks of ``gt`` by stem.

    Returns ``(pairs, problems)``: pairs ``(stem, left_path, gt_path)`` sorted
    by stem, and one line per file left out.
    """
    problems: list[str] = []
    a = _files_by_stem(Path(left), problems)
    b = _files_by_stem(Path(gt), problems)
    for stem in sorted(set(b) - set(a)):
        problems.append(f"no {what} for mask {b[stem]}")
    for stem in sorted(set(a) - set(b)):
        problems.append(f"no mask for {what} {a[stem]}")
    pairs = [(stem, a[stem], b[stem]) for stem in sorted(set(a) & set(b))]
    return pairs, problems


class _MaskReader:
    """Reads the masks of one evaluation (:func:`inspyrenet_lite.masks.read_mask`) and counts 0/1 masks."""

    def __init__(self, gt_dir: str | os.PathLike) -> None:
        self.gt_dir = gt_dir
        self.zero_one = 0
        self.eight_bit_in_16 = 0

    def __call__(self, path: Path) -> np.ndarray:
        mask = read_mask(path)
        self.zero_one += mask.zero_one
        self.eight_bit_in_16 += mask.eight_bit_in_16
        return mask.pixels

    def report(self) -> None:
        if self.zero_one:
            logger.warning(
                "%d mask(s) in %s hold only the values 0 and 1: scored as 0 and 255 (1 is foreground)",
                self.zero_one, self.gt_dir,
            )
        if self.eight_bit_in_16:
            logger.warning(
                "%d 16-bit mask(s) in %s hold only values 0..255: scored as those 8-bit values, not scaled "
                "(scaled, every pixel would be background)",
                self.eight_bit_in_16, self.gt_dir,
            )


def _map_folder_label(model: str) -> str:
    """A folder name for one model's maps: a local path's last name, a Hub id with '/' as '--', made safe."""
    trimmed = model.rstrip("/\\")
    label = Path(trimmed).name if Path(trimmed).exists() or Path(trimmed).is_absolute() else trimmed
    label = re.sub(r"[^A-Za-z0-9._+-]+", "_", label.replace("/", "--").replace("\\", "--")).strip("_")
    return label.lstrip(".") or "model"


def map_folder_labels(models: Sequence[str]) -> list[str]:
    """One safe, distinct folder name per model (``--save-maps DIR/<label>``), in order.

    Never a path: an absolute model path or ``..`` cannot lead outside DIR.
    Repeated labels get ``-2``, ``-3``, ... (compared case-insensitively).
    """
    seen: set[str] = set()
    out = []
    for model in models:
        base = label = _map_folder_label(model)
        n = 1
        while label.lower() in seen:
            n += 1
            label = f"{base}-{n}"
        seen.add(label.lower())
        out.append(label)
    return out


def _resize_map(map01: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float map in [0, 1] -> uint8 at ``size`` (H, W), bilinear align_corners=True, x255 truncated."""
    if map01.shape != size:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(map01, dtype=np.float32))[None, None]
        map01 = F.interpolate(t, size=size, mode="bilinear", align_corners=True)[0, 0].clamp_(0, 1).numpy()
    return (map01.astype(np.float64) * 255).astype(np.uint8)


def _progress(items: Sequence, progress: bool, desc: str) -> Iterable:
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="image", disable=None if progress else True, leave=False)


def evaluate_folder(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    *,
    name: str | None = None,
    with_mba: bool = True,
    progress: bool = False,
) -> EvalResult:
    """Score the saved maps of ``pred_dir`` against the masks of ``gt_dir``.

    Logs a warning when both are the same folder (every mask scored against
    itself: a perfect score that says nothing).
    """
    from inspyrenet_lite.image_io import ImageLoadError

    _warn_if_same_folder(pred_dir, gt_dir)
    pairs, problems = pair_files(pred_dir, gt_dir)
    ev = Evaluator(with_mba=with_mba)
    read_gt = _MaskReader(gt_dir)
    for stem, pred_path, gt_path in _progress(pairs, progress, str(name or pred_dir)):
        try:
            gt = read_gt(gt_path)
            pred = read_grey(pred_path)
        except ImageLoadError as exc:
            problems.append(f"unreadable: {exc}")
            continue
        if pred.shape != gt.shape:
            pred = _resize_map(pred / 255.0, gt.shape)
        ev.update(pred, gt)
    read_gt.report()
    return EvalResult(str(name or pred_dir), ev.results(), len(ev), problems)


def _warn_if_same_folder(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> None:
    try:
        same = os.path.samefile(pred_dir, gt_dir)
    except OSError:  # a missing folder is reported by pair_files
        return
    if same:
        logger.warning(
            "the predictions %s and the masks %s are the same folder: every mask is scored against itself, "
            "so the scores are perfect and say nothing; give the folder of predicted maps as --pred",
            pred_dir, gt_dir,
        )


def make_remover(model: str, **kwargs: Any):
    """A :class:`Remover` for ``model`` (a registry name, Hub repo, folder or checkpoint file: the one loader's)."""
    from inspyrenet_lite.remover import Remover

    return Remover(model=model, **kwargs)


def evaluate_model(
    images_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    model: Any = "fast",
    *,
    hr_blend: float = 0.0,
    resize: str = "static",
    device: str | None = None,
    ckpt: str | os.PathLike | None = None,
    save_maps: str | os.PathLike | None = None,
    with_mba: bool = True,
    progress: bool = False,
) -> EvalResult:
    """Predict every image of ``images_dir`` and score against ``gt_dir``.

    ``model`` is a model name or a ready :class:`Remover`. With
    ``save_maps`` the uint8 maps are written there as ``<stem>.png``
    (atomically), ready for :func:`evaluate_folder`.
    """
    from PIL import Image

    from inspyrenet_lite.image_io import ImageLoadError, save_image

    if isinstance(model, str):
        name = model
        remover = make_remover(model, resize=resize, device=device, ckpt=ckpt)
    else:
        remover, name = model, getattr(model, "mode", type(model).__name__)
    pairs, problems = pair_files(images_dir, gt_dir, what="image")
    out_dir = Path(save_maps) if save_maps is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    ev = Evaluator(with_mba=with_mba)
    read_gt = _MaskReader(gt_dir)
    for stem, image_path, gt_path in _progress(pairs, progress, name):
        try:
            gt = read_gt(gt_path)
            map01 = remover.predict(image_path, hr_blend=hr_blend)
        except ImageLoadError as exc:
            problems.append(f"unreadable: {exc}")
            continue
        pred = _resize_map(map01, gt.shape)
        if out_dir is not None:
            save_image(Image.fromarray(pred, mode="L"), out_dir / f"{stem}.png")
        ev.update(pred, gt)
    read_gt.report()
    return EvalResult(name, ev.results(), len(ev), problems)


def format_table(results: Sequence[EvalResult]) -> str:
    """A fixed-width table: one row per result, the metrics as columns."""
    head = ["model / maps", "images", *METRIC_KEYS]
    rows = [[r.name, str(r.n_images), *(f"{r.scores[k]:.4f}" for k in METRIC_KEYS)] for r in results]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
