"""Training checkpoints: everything needed to continue a run, written atomically and checked on load."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write

FORMAT = "inspyrenet-lite/train-state"
VERSION = 1
_REQUIRED = ("model", "optimizer", "scheduler", "rng", "step", "epoch", "epoch_step")


class CheckpointError(ValueError):
    """A training checkpoint that cannot be resumed from (corrupted, half-written or foreign)."""


def rng_state() -> dict[str, Any]:
    """The states of every random generator a training step draws from."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a training state atomically (temporary name, fsync, rename), tagged with its format."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training state, refusing anything that is not a complete one with :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} does not exist")
    try:
        # Our own file: it holds Python RNG tuples and numpy arrays, so not weights_only.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"cannot resume from {path}: the file is corrupted or half-written ({type(exc).__name__}: {exc}). "
            "Resume from another checkpoint (the per-epoch ones are kept) or start again."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"cannot resume from {path}: it is not an inspyrenet-lite training checkpoint. "
            "To start from model weights, pass them as --init instead."
        )
    if state.get("version") != VERSION:
        raise CheckpointError(f"cannot resume from {path}: format version {state.get('version')}, expected {VERSION}")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"cannot resume from {path}: it lacks {', '.join(missing)}")
    return state
