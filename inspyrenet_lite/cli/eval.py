"""``inspyrenet-lite eval``: the paper's metrics on your own data.

``--pred DIR --gt DIR`` scores saved maps; ``--images DIR --gt DIR --model
NAME`` predicts first (``--save-maps DIR`` keeps the maps). ``--pred`` and
``--model`` may be repeated (and mixed) to compare side by side. Files pair by
stem; unpaired and unreadable files are listed on stderr, and the others are
still scored. Exit status: 0, 1 if a file could not be read or a source had
nothing to score, 2 for bad arguments or a model that cannot be loaded.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from inspyrenet_lite.cli import argtypes
from inspyrenet_lite.cli.model_args import load_problem

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="inspyrenet-lite eval",
        description="Score saliency maps (S, max/mean/adaptive F and E, weighted F, MAE, mBA) against masks.",
    )
    p.add_argument("--gt", required=True, metavar="DIR", help="ground-truth masks (foreground > 128)")
    p.add_argument("--pred", action="append", default=[], metavar="DIR", help="saved maps to score (repeatable)")
    p.add_argument("--images", metavar="DIR", help="images to predict with --model")
    p.add_argument("--model", action="append", default=[], metavar="NAME", help="model to run on --images (repeatable)")
    p.add_argument("--hr-blend", type=argtypes.hr_blend, default=0.0, metavar="B", help="pyramid blending strength for --model")
    p.add_argument("--resize", choices=("static", "dynamic"), default="static", help="network input size for --model")
    p.add_argument("--ckpt", metavar="PATH", help="local checkpoint for --model")
    p.add_argument("--device", help="torch device for --model (default: cuda, mps, then cpu)")
    p.add_argument("--save-maps", metavar="DIR", help="keep the --model maps here (DIR/<label>/<stem>.png; label: the model's name, "
                        "a path's last name)")
    p.add_argument("--no-mba", action="store_true", help="skip mBA")
    p.add_argument("--json", metavar="PATH", help="write the scores as JSON (a list, one object per source)")
    p.add_argument("--csv", metavar="PATH", help="write the scores as CSV (one row per source)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return p


def _csv_text(rows: list[dict]) -> str:
    from inspyrenet_lite.metrics import METRIC_KEYS

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["name", "images", *METRIC_KEYS])
    for row in rows:
        writer.writerow([row["name"], row["images"], *("" if row[k] is None else repr(row[k]) for k in METRIC_KEYS)])
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``inspyrenet-lite eval``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.pred and not args.model:
        parser.error("give --pred DIR (saved maps) and/or --images DIR --model NAME")
    if args.model and not args.images:
        parser.error("--model needs --images DIR")
    if args.images and not args.model:
        parser.error("--images needs --model NAME")
    for folder in [args.gt, *args.pred, *([args.images] if args.images else [])]:
        if not Path(folder).is_dir():
            parser.error(f"{folder!r} is not a folder")
    for out in (args.json, args.csv):
        if out and Path(out).is_dir():
            parser.error(f"{out!r} is a folder; give a file name")

    from inspyrenet_lite._atomic import atomic_write_text
    from inspyrenet_lite.evaluate import evaluate_folder, evaluate_model, format_table, map_folder_labels

    progress = not args.quiet
    results = []
    for folder in args.pred:
        results.append(evaluate_folder(folder, args.gt, with_mba=not args.no_mba, progress=progress))
    for name, label in zip(args.model, map_folder_labels(args.model)):
        save = Path(args.save_maps) / label if args.save_maps else None
        try:
            results.append(
                evaluate_model(
                    args.images, args.gt, name, hr_blend=args.hr_blend, resize=args.resize, device=args.device,
                    ckpt=args.ckpt, save_maps=save, with_mba=not args.no_mba, progress=progress,
                )
            )
        except (ValueError, RuntimeError, OSError) as exc:
            print(f"inspyrenet-lite eval: cannot run model {name!r}: {load_problem(exc)}", file=sys.stderr)
            return 2

    failed = False
    for r in results:
        for line in r.problems:
            print(f"inspyrenet-lite eval: {r.name}: {line}", file=sys.stderr)
            failed |= line.startswith("unreadable")
        if r.n_images == 0:
            print(f"inspyrenet-lite eval: {r.name}: no pair to score", file=sys.stderr)
            failed = True
    print(format_table(results))
    rows = [r.as_dict() for r in results]
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    if args.csv:
        atomic_write_text(args.csv, _csv_text(rows))
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
