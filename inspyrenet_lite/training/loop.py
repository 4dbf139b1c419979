"""The training loop: optimiser and schedule, AMP, accumulation, forgetting guard, checkpoints, DDP."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from .._atomic import atomic_link
from ..modeling.inspyrenet import InSPyReNet
from .checkpoints import load_state, rng_state, save_state, set_rng_state
from .losses import distillation_loss, pyramid_loss
from ..checks import check_options
from ..constants import PRECISIONS, TRAINING_PRECISIONS  # noqa: F401  (PRECISIONS kept importable from here)
from .outdir import prepare_out_dir
from .schedule import build_optimizer, build_scheduler
from .sync_bn import convert_batchnorm

logger = logging.getLogger(__name__)

#: Validation metrics: name -> True when higher is better.
METRICS = {"s_measure": True, "mae": False}


@dataclass
class TrainConfig:
    """Settings of a run. Defaults suit fine-tuning a published checkpoint (see README)."""

    epochs: int = 10
    batch_size: int = 4
    size: int = 384
    lr: float = 1e-5
    backbone_lr: float | None = None  # None: lr / 10, as the authors
    warmup: int = 100
    accumulate: int = 1
    precision: str = "fp32"
    freeze_backbone: bool = False
    grad_checkpointing: bool = False
    drop_path: float = 0.2
    guard_weight: float = 1.0  # forgetting guard strength (0: off)
    checkpoint_every: int = 0  # optimiser steps between checkpoints (0: per epoch only)
    metric: str = "s_measure"
    patience: int = 0  # epochs without improvement before stopping (0: never)
    seed: int = 0
    num_workers: int = 0
    device: str = "cpu"
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in total
    progress: bool = False

    def check(self) -> None:
        """ValueError naming the first bad setting (the package's one check, :func:`~inspyrenet_lite.checks.check_options`)."""
        checked = check_options(**{name: getattr(self, name) for name in _CHECKED})
        for name, value in checked.items():
            setattr(self, name, value)
        if self.precision not in TRAINING_PRECISIONS:
            raise ValueError(
                f"precision={self.precision!r} is for inference only (an ONNX Runtime graph); "
                f"train in one of {', '.join(repr(p) for p in TRAINING_PRECISIONS)}"
            )
        if self.precision == "fp16" and not str(self.device).startswith("cuda"):
            raise ValueError("fp16 training needs a CUDA device; use bf16 on the CPU")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)}, got {self.metric!r}")


_CHECKED = (
    "epochs", "batch_size", "size", "lr", "backbone_lr", "warmup", "accumulate", "precision", "freeze_backbone",
    "grad_checkpointing", "drop_path", "guard_weight", "checkpoint_every", "patience", "seed", "num_workers",
    "max_steps", "progress",
)


@dataclass
class TrainResult:
    """What a run ended with."""

    step: int
    epoch: int
    best: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    interrupted: bool = False


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if config.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def score_maps(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """Mean S-measure and MAE (the project's metrics, as the paper scores) of (B, 1, H, W) maps.

    Labels count as foreground above 128/255, as a mask PNG would.
    """
    from .. import metrics

    pairs = [(p[0].clamp(0, 1).numpy(), g[0].numpy() > 128 / 255) for p, g in zip(pred, gt)]
    return {
        "s_measure": sum(metrics.s_measure(p, g) for p, g in pairs) / len(pairs),
        "mae": sum(metrics.mae(p, g) for p, g in pairs) / len(pairs),
    }


class _GuardCycle:
    """The guard's images in dataset order, in batches, over and over; ``position`` batches drawn so far.

    A batch is a function of the position alone (no random draw, no loader
    state), so a checkpoint that records the position resumes the same batches.
    """

    def __init__(self, dataset: Dataset, batch_size: int, device: torch.device, position: int = 0) -> None:
        if not len(dataset):
            raise ValueError("the guard set holds no images")
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.position = position
        self.batches_per_cycle = math.ceil(len(dataset) / batch_size)

    def __next__(self) -> torch.Tensor:
        start = (self.position % self.batches_per_cycle) * self.batch_size
        indices = range(start, min(start + self.batch_size, len(self.dataset)))
        self.position += 1
        return default_collate([self.dataset[i] for i in indices])[0].to(self.device)


class _Pyramid(nn.Module):
    """The model with ``pyramid`` as its forward, for DistributedDataParallel."""

    def __init__(self, model: InSPyReNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.model.pyramid(x)


class Trainer:
    """Trains an :class:`InSPyReNet` with the authors' objective.

    Args:
        model: the network to train (its weights are the starting point).
        train_set: yields (image, label) tensors; ``set_epoch(e)`` is called if it has one.
        out_dir: where checkpoints, the metrics log and the best model go.
        config: :class:`TrainConfig`.
        val_set: scored after each epoch (the best model is kept by ``config.metric``).
        guard: keep the model close to its starting self (distillation toward a
            frozen copy's maps, weighted by ``config.guard_weight``).
        guard_set: images (a dataset of (image, _) pairs) the guard works on and
            agreement is reported on; without it, the guard acts on the
            training images and agreement is measured on ``val_set``.
        export: called as ``export(model, out_dir)`` when a new best is found.
        overwrite: write into a folder that holds files (an earlier run's):
            the files a run writes are removed first, others kept. Without it
            such a folder is refused (:class:`OutputFolderError`), unless
            :meth:`fit` resumes from a checkpoint in its ``checkpoints/``.
        protect: paths (the starting model's folder or file) that ``out_dir``
            must never be or hold, ``overwrite`` or not.
    """

    def __init__(
        self,
        model: InSPyReNet,
        train_set: Dataset,
        out_dir: str | os.PathLike[str],
        config: TrainConfig | None = None,
        val_set: Dataset | None = None,
        guard: bool = False,
        guard_set: Dataset | None = None,
        export: Callable[[InSPyReNet, Path], Any] | None = None,
        overwrite: bool = False,
        protect: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self.config = config or TrainConfig()
        self.config.check()
        self.device = torch.device(self.config.device)
        self.model = model.to(self.device)
        self.train_set = train_set
        self.val_set = val_set
        self.out_dir = Path(out_dir)
        self.export = export
        self.overwrite = overwrite
        self.protect = list(protect)
        self.rank, self.world = _world()
        self.teacher = None
        self.optimizer: torch.optim.Optimizer | None = None  # set by fit()
        self.guard_set = guard_set
        if guard and self.config.guard_weight > 0:
            self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
        self._teacher_cache: dict[int, list[torch.Tensor]] = {}

    # ------------------------------------------------------------ set-up
    def _prepare_model(self) -> nn.Module:
        cfg = self.config
        backbone = self.model.backbone
        if hasattr(backbone, "set_drop_path"):
            backbone.set_drop_path(cfg.drop_path)
        if cfg.grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        if cfg.freeze_backbone:
            backbone.requires_grad_(False)
        if self.world > 1:
            convert_batchnorm(self.model)
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(_Pyramid(self.model), device_ids=ids)
        return _Pyramid(self.model)

    def _optimizer(self) -> torch.optim.Optimizer:
        """Adam with the decoder at ``lr`` and the backbone at ``backbone_lr`` (default lr / 10, as the authors)."""
        cfg = self.config
        return build_optimizer(self.model, cfg.lr, cfg.backbone_lr if cfg.backbone_lr is not None else cfg.lr / 10)

    def _train_mode(self) -> None:
        self.model.train()
        if self.config.freeze_backbone:
            self.model.backbone.eval()  # no stochastic depth in a frozen backbone

    def steps_per_epoch(self) -> int:
        cfg = self.config
        return len(self.train_set) // (cfg.batch_size * cfg.accumulate * self.world)

    def _epoch_order(self, epoch: int) -> list[int]:
        """This process's sample indices for an epoch: a seeded shuffle, split across processes, incomplete batches dropped."""
        g = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        order = torch.randperm(len(self.train_set), generator=g).tolist()
        per_rank = self.steps_per_epoch() * self.config.batch_size * self.config.accumulate
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    # ------------------------------------------------------------ steps
    def _loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, guard_x: torch.Tensor | None) -> torch.Tensor:
        """The objective on (x, y); with the guard, plus distillation on guard_x (or on x).

        Guard images go through the same forward pass as the batch (one call,
        as DistributedDataParallel wants).
        """
        n = x.shape[0]
        inputs = x if guard_x is None else torch.cat([x, guard_x])
        with _autocast(self.config, self.device):
            saliency, _ = net(inputs)
            loss = pyramid_loss([d[:n] for d in saliency], y)
            if self.teacher is not None:
                guarded = inputs if guard_x is None else guard_x
                with torch.no_grad():
                    teacher_maps = self.teacher.pyramid(guarded)[0]
                student = saliency if guard_x is None else [d[n:] for d in saliency]
                loss = loss + self.config.guard_weight * distillation_loss(student, teacher_maps)
        return loss

    def _guard_batches(self, position: int) -> _GuardCycle | None:
        if self.teacher is None or self.guard_set is None:
            return None
        return _GuardCycle(self.guard_set, self.config.batch_size, self.device, position)

    @torch.no_grad()
    def _predict(self, model: nn.Module, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        preds, gts = [], []
        for x, y in DataLoader(dataset, batch_size=self.config.batch_size, generator=torch.Generator()):
            with _autocast(self.config, self.device):
                preds.append(model.predict(x.to(self.device)).float().cpu())
            gts.append(y)
        return torch.cat(preds), torch.cat(gts)

    def validate(self) -> dict[str, float]:
        """Validation metrics and, with the guard, agreement with the starting model (1 − mean |Δmap|).

        Draws nothing from the global random generators (the run's future
        must not depend on what validation computed first, e.g. the
        teacher's maps, which a resumed run computes again).
        """
        with torch.random.fork_rng(devices=[]):
            return self._validate()

    def _validate(self) -> dict[str, float]:
        self.model.eval()
        out: dict[str, float] = {}
        if self.val_set is not None and len(self.val_set):
            pred, gt = self._predict(self.model, self.val_set)
            out.update({f"val_{k}": v for k, v in score_maps(pred, gt).items()})
        agree_set = self.guard_set if self.guard_set is not None else self.val_set
        if self.teacher is not None and agree_set is not None and len(agree_set):
            student, _ = self._predict(self.model, agree_set)
            key = id(agree_set)
            if key not in self._teacher_cache:
                self._teacher_cache[key] = [self._predict(self.teacher, agree_set)[0]]
            teacher = self._teacher_cache[key][0]
            out["agreement"] = float(1 - (student - teacher).abs().mean())
        self._train_mode()
        return out

    # ------------------------------------------------------------ state
    def _state(
        self, optimizer, scheduler, scaler, step, epoch, epoch_step, best, bad_epochs, history, guard_position
    ) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
            "step": step,
            "epoch": epoch,
            "epoch_step": epoch_step,
            "best": best,
            "bad_epochs": bad_epochs,
            "history": history,
            "guard_position": guard_position,
            "config": asdict(self.config),
        }

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------ the run
    def fit(self, resume: str | os.PathLike[str] | None = None) -> TrainResult:
        """Train for ``config.epochs`` epochs (continuing from ``resume``, a training checkpoint).

        Raises :class:`OutputFolderError` for an output folder it must not
        write into (see the class's ``overwrite`` and ``protect``).
        """
        from tqdm.auto import tqdm

        cfg = self.config
        prepare_out_dir(
            self.out_dir, resume=resume, overwrite=self.overwrite, protect=self.protect, clear=self.rank == 0
        )
        ckpt_dir = self.out_dir / "checkpoints"
        torch.manual_seed(cfg.seed)
        net = self._prepare_model()
        optimizer = self.optimizer = self._optimizer()
        steps_per_epoch = self.steps_per_epoch()
        if steps_per_epoch == 0:
            raise ValueError(
                f"{len(self.train_set)} training samples are fewer than one batch of "
                f"{cfg.batch_size * cfg.accumulate * self.world}; lower --batch-size or add data"
            )
        scheduler = build_scheduler(optimizer, steps_per_epoch * cfg.epochs, cfg.warmup)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        step = start_epoch = epoch_step = bad_epochs = 0
        best: dict[str, Any] | None = None
        history: list[dict[str, Any]] = []
        guard_position = 0
        if resume is not None:
            state = load_state(resume)
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            step, start_epoch, epoch_step = state["step"], state["epoch"], state["epoch_step"]
            best, bad_epochs, history = state["best"], state["bad_epochs"], state["history"]
            # Older checkpoints lack it: one guard batch per micro-batch so far.
            guard_position = state.get("guard_position", step * cfg.accumulate)
            logger.info("resumed from %s at step %d (epoch %d)", resume, step, start_epoch)

        guard_batches = self._guard_batches(guard_position)

        def checkpoint(name: str, epoch: int, epoch_step: int) -> None:
            if self.rank == 0:
                save_state(
                    self._state(
                        optimizer, scheduler, scaler, step, epoch, epoch_step, best, bad_epochs, history,
                        guard_batches.position if guard_batches is not None else 0,
                    ),
                    ckpt_dir / name,
                )

        higher = METRICS[cfg.metric]
        self._train_mode()
        bar = tqdm(total=steps_per_epoch * cfg.epochs, initial=step, disable=not cfg.progress or self.rank != 0)
        result = TrainResult(step, start_epoch, best, history)
        for epoch in range(start_epoch, cfg.epochs):
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(epoch)
            order = self._epoch_order(epoch)[epoch_step * cfg.batch_size * cfg.accumulate :]
            loader = DataLoader(
                self.train_set,
                batch_size=cfg.batch_size,
                sampler=order,
                drop_last=True,
                num_workers=cfg.num_workers,
                generator=torch.Generator().manual_seed(cfg.seed + epoch),
            )
            running, seen, tick = 0.0, 0, time.perf_counter()
            for micro, (x, y) in enumerate(loader, start=1):
                x, y = x.to(self.device), y.to(self.device)
                guard_x = next(guard_batches) if guard_batches is not None else None
                last = micro % cfg.accumulate == 0
                sync = contextlib.nullcontext() if last or self.world == 1 else net.no_sync()
                with sync:
                    loss = self._loss(net, x, y, guard_x) / cfg.accumulate
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                running += float(loss.detach())
                if not last:
                    continue
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                epoch_step += 1
                seen += 1
                if not math.isfinite(running):
                    raise FloatingPointError(f"the loss became {running} at step {step}; lower the learning rate")
                lr = optimizer.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.2e}", epoch=epoch)
                bar.update(1)
                if step % 10 == 0 or epoch_step == steps_per_epoch:
                    speed = seen / (time.perf_counter() - tick)
                    self._log({"step": step, "epoch": epoch, "loss": running, "lr": lr, "steps_per_s": speed})
                running = 0.0
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    checkpoint("last.pt", epoch, epoch_step)
                if cfg.max_steps is not None and step >= cfg.max_steps:
                    checkpoint("last.pt", epoch, epoch_step)
                    bar.close()
                    return TrainResult(step, epoch, best, history, interrupted=True)
            epoch_step = 0
            metrics = self.validate()
            record = {"epoch": epoch + 1, "step": step, **metrics}
            history.append(record)
            self._log(record)
            logger.info("epoch %d: %s", epoch + 1, metrics)
            value = metrics.get(f"val_{cfg.metric}")
            improved = value is not None and (
                best is None or (value > best["value"] if higher else value < best["value"])
            )
            if improved or (value is None and self.val_set is None):
                best = {"epoch": epoch + 1, "step": step, "metric": cfg.metric, "value": value}
                bad_epochs = 0
                if self.export is not None and self.rank == 0:
                    self.export(self.model, self.out_dir)
            else:
                bad_epochs += 1
            checkpoint("last.pt", epoch + 1, 0)
            if self.rank == 0:  # the same state: linked, not written twice (a gigabyte for SwinB)
                atomic_link(ckpt_dir / "last.pt", ckpt_dir / f"epoch{epoch + 1:03d}.pt")
            if cfg.patience and bad_epochs >= cfg.patience:
                logger.info("no improvement of %s for %d epochs: stopping early", cfg.metric, bad_epochs)
                result = TrainResult(step, epoch + 1, best, history, stopped_early=True)
                break
            result = TrainResult(step, epoch + 1, best, history)
        bar.close()
        return result
