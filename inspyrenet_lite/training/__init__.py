"""Fine-tuning and training InSPyReNet with the authors' objective (TRAINING.md sections 1 and 2).

    from inspyrenet_lite.training import Trainer, TrainConfig, PairDataset, find_samples
"""

from __future__ import annotations

from .checkpoints import CheckpointError, load_state, save_state
from .data import BadPair, PairDataset, Sample, find_samples, split_holdout
from .loop import TrainConfig, Trainer, TrainResult
from .losses import distillation_loss, pyramid_labels, pyramid_loss, sod_loss
from .outdir import OutputFolderError
from .schedule import build_optimizer, build_scheduler, lr_at

__all__ = [
    "BadPair",
    "CheckpointError",
    "OutputFolderError",
    "PairDataset",
    "Sample",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "distillation_loss",
    "find_samples",
    "load_state",
    "lr_at",
    "pyramid_labels",
    "pyramid_loss",
    "save_state",
    "sod_loss",
    "split_holdout",
]
