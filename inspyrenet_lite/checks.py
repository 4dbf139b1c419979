"""One argument check for every entry point (``Remover``, its methods, the CLI, the Space).

:func:`check_options` takes options by name and returns them normalised
(``float``/``int``/``bool``), raising ``ValueError`` with the option's name,
the bad value and what is accepted. Wrong types (a ``bool`` where a number is
expected, ``None``, a list, ``nan``, ``1.5`` for a count, ``'no'`` for a flag)
are refused the same way, never passed on to fail obscurely later.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .constants import PRECISIONS, STRIDE

RESIZES = ("static", "dynamic")
#: The range of threshold, hr_blend and the other strengths.
UNIT_RANGE = (0.0, 1.0)
ERRORS = ("raise", "skip")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return result


def _unit(name: str, value: Any) -> float:
    result = _number(name, value)
    low, high = UNIT_RANGE
    if not low <= result <= high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return result


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _integer_in(name: str, value: Any, low: int, high: int, where: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}{where}, got {value!r}")
    return int(value)


def _positive(name: str, value: Any) -> float:
    result = _number(name, value)
    if result <= 0.0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return result


def _at_least(name: str, value: Any, minimum: float) -> float:
    result = _number(name, value)
    if result < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {value!r}")
    return result


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else check(name, value)


def _flag(name: str, value: Any) -> bool:
    # numpy.bool_ is not a bool subclass but is what comparisons on arrays give.
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def _choice(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value

    return check


_RULES: dict[str, Callable[[str, Any], Any]] = {
    "threshold": _optional(_unit),
    "hr_blend": _unit,
    "reverse": _flag,
    "stability": _flag,
    "skip_existing": _flag,
    "retry_failed": _flag,
    "batch_size": lambda name, value: _integer(name, value, 1),
    "max_pixels": _optional(lambda name, value: _integer(name, value, 1)),
    "hr_short_side": lambda name, value: _integer(name, value, STRIDE),
    "hr_long_side": lambda name, value: _integer(name, value, STRIDE),
    "hr_max_pixels": lambda name, value: _integer(name, value, STRIDE * STRIDE),
    "precision": _choice(PRECISIONS),
    "resize": _choice(RESIZES),
    "errors": _choice(ERRORS),
    # Video: constant-rate factor of VP9 (webm; 0..63) and of H.264 (mp4; 0..51), and the length caps.
    "crf": _optional(lambda name, value: _integer_in(name, value, 0, 63)),
    "crf_mp4": _optional(lambda name, value: _integer_in("crf", value, 0, 51, " for mp4 (H.264)")),
    "max_frames": _optional(lambda name, value: _integer(name, value, 1)),
    "max_seconds": _optional(_positive),
    # Training (TrainConfig.check): counts, rates and strengths.
    "epochs": lambda name, value: _integer(name, value, 1),
    "accumulate": lambda name, value: _integer(name, value, 1),
    "size": lambda name, value: _integer(name, value, STRIDE),
    "lr": _positive,
    "backbone_lr": _optional(_positive),
    "warmup": lambda name, value: _integer(name, value, 0),
    "checkpoint_every": lambda name, value: _integer(name, value, 0),
    "patience": lambda name, value: _integer(name, value, 0),
    "seed": lambda name, value: _integer(name, value, 0),
    "num_workers": lambda name, value: _integer(name, value, 0),
    "max_steps": _optional(lambda name, value: _integer(name, value, 1)),
    "drop_path": _unit,
    "guard_weight": lambda name, value: _at_least(name, value, 0.0),
    "freeze_backbone": _flag,
    "grad_checkpointing": _flag,
    "progress": _flag,
    "compile": _flag,
}


def check_options(**options: Any) -> dict[str, Any]:
    """Check each option given by name; return them normalised, in the same order.

    Known names: threshold (``None`` or [0, 1]), hr_blend ([0, 1]), reverse
    and stability (bool), batch_size (int >= 1), max_pixels (``None`` or int >= 1),
    hr_short_side / hr_long_side (int >= 32), hr_max_pixels (int >= 1024),
    precision, resize, errors (one of their choices); for video: crf
    (``None`` or int in 0..63), crf_mp4 (the same, 0..51: H.264), max_frames
    (``None`` or int >= 1), max_seconds (``None`` or a number > 0); for
    training (:class:`~inspyrenet_lite.training.TrainConfig`): epochs,
    accumulate, size, lr, backbone_lr, warmup, checkpoint_every, patience,
    seed, num_workers, max_steps, drop_path, guard_weight and the flags.
    """
    checked = {}
    for name, value in options.items():
        rule = _RULES.get(name)
        if rule is None:
            raise TypeError(f"check_options: no rule for option {name!r}")
        checked[name] = rule(name, value)
    return checked
