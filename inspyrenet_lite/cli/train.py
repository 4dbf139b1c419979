"""``inspyrenet-lite train``: fine-tune (or train) InSPyReNet on a folder of images and masks."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from inspyrenet_lite.training.start import FRESH_PREFIX

DESCRIPTION = """\
Fine-tune InSPyReNet on your own images with the authors' objective.
DATA holds images/ and masks/ (paired by file name; masks 0..255, soft edges
kept) or RGBA cut-outs whose alpha is the label. OUT receives the best model
(config.json, model.safetensors, model.pth: load it with
Remover(model=OUT)), checkpoints/ and metrics.jsonl. OUT must be new or
empty (or the run's own, with --resume); --overwrite reuses an earlier run's
folder; the --init model's folder is always refused.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inspyrenet-lite train", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="training folder (images/ + masks/, or RGBA cut-outs)")
    p.add_argument("--val", help="validation folder (default: hold out --val-fraction of --data)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share when --val is not given (0.1)")
    p.add_argument("--init", default="fast",
                   help="start: a registry name (default fast), a checkpoint file, a Hub repo, a save_pretrained "
                        f"folder, or {FRESH_PREFIX}swinb / {FRESH_PREFIX}res2net50 for random weights")
    p.add_argument("--base-size", type=int, help="base size of a checkpoint that does not record it, or of a new model")
    p.add_argument("-o", "--out", required=True,
                   help="output folder: new or empty, or this run's own with --resume (never the --init model's)")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse a folder that holds an earlier run: its run files (metrics.jsonl, config.json, "
                        "model.safetensors, model.pth, checkpoints/last.pt and epochNNN.pt) are removed first; "
                        "other files are kept")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--size", type=int, help="training size (default: the model's base size)")
    p.add_argument("--lr", type=float, help="learning rate of the decoder (1e-5 from trained weights, 1e-4 new)")
    p.add_argument("--backbone-lr", type=float, help="learning rate of the backbone (default lr / 10)")
    p.add_argument("--warmup", type=int, help="warm-up steps (100 from trained weights; 12000 new, the authors')")
    p.add_argument("--accumulate", type=int, default=1, help="batches per optimiser step")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--freeze-backbone", action="store_true", help="train the decoder only")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute Swin activations: less memory")
    guard = p.add_mutually_exclusive_group()
    guard.add_argument("--guard", dest="guard", action="store_true", default=None,
                       help="keep close to the starting model (default when starting from trained weights)")
    guard.add_argument("--no-guard", dest="guard", action="store_false")
    p.add_argument("--guard-weight", type=float, default=1.0)
    p.add_argument("--keep", help="folder of images that must keep working (the guard acts on them)")
    p.add_argument("--metric", choices=("s_measure", "mae"), default="s_measure", help="keeps the best model")
    p.add_argument("--patience", type=int, default=0, help="stop after N epochs without improvement (0: never)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--resume", help="a training checkpoint (OUT/checkpoints/last.pt) to continue from")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the best model to this Hub repo at the end")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _keep_set(folder: str, size: int):
    from pathlib import Path

    from inspyrenet_lite.training import PairDataset, Sample
    from inspyrenet_lite.training.data import IMAGE_SUFFIXES

    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"--keep {folder} holds no images")
    # Labels are not used by the guard; the image itself stands in as its own "mask".
    return PairDataset([Sample(p, p) for p in images], size, augment=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"inspyrenet-lite train: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist

    from inspyrenet_lite.training import PairDataset, TrainConfig, Trainer, find_samples, split_holdout
    from inspyrenet_lite.training.outdir import check_out_dir
    from inspyrenet_lite.predictor import pick_device
    from inspyrenet_lite.training.start import export_model, load_start

    protect = [args.init] if not args.init.startswith(FRESH_PREFIX) and os.path.exists(args.init) else []
    check_out_dir(args.out, resume=args.resume, overwrite=args.overwrite, protect=protect)  # before any slow work
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # launched by torchrun
    device = str(pick_device(args.device))
    if distributed:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
    model, published = load_start(args.init, args.base_size, "cpu")
    size = args.size or model.base_size[0]
    samples, bad = find_samples(args.data)
    if args.val:
        val_samples, val_bad = find_samples(args.val)
        bad += val_bad
    else:
        samples, val_samples = split_holdout(samples, args.val_fraction, args.seed)
    if bad:
        logging.getLogger("inspyrenet_lite.train").warning("%d bad pairs skipped (listed above)", len(bad))
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, size=size,
        lr=args.lr if args.lr is not None else (1e-5 if published else 1e-4),
        backbone_lr=args.backbone_lr,
        warmup=args.warmup if args.warmup is not None else (100 if published else 12000),
        accumulate=args.accumulate, precision=args.precision, freeze_backbone=args.freeze_backbone,
        grad_checkpointing=args.grad_checkpointing, guard_weight=args.guard_weight,
        checkpoint_every=args.checkpoint_every, metric=args.metric, patience=args.patience, seed=args.seed,
        num_workers=args.workers, device=device, progress=not args.quiet,
    )
    guard = published if args.guard is None else args.guard
    trainer = Trainer(
        model, PairDataset(samples, size, seed=args.seed), args.out, config,
        val_set=PairDataset(val_samples, size, augment=False), guard=guard,
        guard_set=_keep_set(args.keep, size) if args.keep else None,
        export=lambda m, out: export_model(m, out, {"fine_tuned_from": args.init}),
        overwrite=args.overwrite, protect=protect,
    )
    result = trainer.fit(resume=args.resume)
    status = 0
    if trainer.rank == 0:
        best = result.best or {}
        print(f"best {best.get('metric')} {best.get('value')} at epoch {best.get('epoch')}; model in {args.out}")
        if args.push_to_hub:
            from inspyrenet_lite import InSPyReNet

            try:
                url = InSPyReNet.from_pretrained(args.out).push_to_hub(args.push_to_hub)
            except ConnectionError as exc:  # no Hub reachable: the model is saved, only the upload failed
                print(f"inspyrenet-lite train: {exc}; the model is saved in {args.out}", file=sys.stderr)
                status = 1
            else:
                print(f"uploaded to {url}")
    if distributed:
        dist.destroy_process_group()
    return status
