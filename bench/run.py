"""Benchmark inspyrenet-lite against transparent-background, side by side, in one run.

    python bench/run.py --threads 2

Every measurement runs in a fresh worker process (bench/worker.py) on the same
random full-size SwinB checkpoint, the same photo and the same thread count.
Results: a table on stdout, and results.md / results.json in --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

REPO = HERE.parent
PHOTOS = REPO / "tests" / "data" / "photos"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
SECTIONS = ("peaks", "fast", "base", "pb", "batch", "precision")

log = logging.getLogger("bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads in every worker (default 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--image", type=Path, default=PHOTOS / "coffee.png", help="the photo timed in every mode")
    p.add_argument(
        "--pb-image",
        type=Path,
        default=PHOTOS / "hubble_deep_field.jpg",
        help="photo for pyramid blending; both sides must exceed 512 or no blending happens "
        "(coffee.png is 600x400, so the default is the 1000x872 sample photo)",
    )
    p.add_argument("--photos", type=Path, default=PHOTOS, help="folder of photos for batch and precision checks")
    p.add_argument("--batch-photos", type=int, default=32, help="photos in the batch-throughput test (cycled)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement in fast mode")
    p.add_argument("--repeats-slow", type=int, default=3, help="timed runs in base and pyramid-blending modes")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list out of {','.join(SECTIONS)}")
    p.add_argument("--impls", default="tb,lite", help="comma list: tb (transparent-background), lite")
    p.add_argument("--cache", type=Path, default=HERE / ".cache", help="where the random checkpoint is kept")
    p.add_argument("--out", type=Path, default=HERE / "results", help="results.md, results.json, worker logs")
    p.add_argument("--python", default=sys.executable, help="interpreter for the workers (default: this one)")
    args = p.parse_args(argv)
    sections = set(args.only.split(","))
    unknown = sections - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) in --only: {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    args.sections = sections
    args.impl_list = [i for i in args.impls.split(",") if i]
    if set(args.impl_list) - {"tb", "lite"}:
        p.error("--impls takes tb and/or lite")
    if args.threads < 1:
        p.error("--threads must be at least 1")
    for name in ("image", "pb_image", "photos"):
        path = getattr(args, name)
        if not path.exists():
            p.error(f"--{name.replace('_', '-')} {path} does not exist (the sample photos live in tests/data/photos)")
    return args


def shared_photos(folder: Path) -> list[Path]:
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return photos


class Runner:
    """Starts workers with one environment and collects their JSON results."""

    def __init__(self, args: argparse.Namespace, ckpts: dict[str, Path]) -> None:
        self.args = args
        self.ckpts = ckpts
        self.logs = args.out / "logs"
        self.maps = args.out / "maps"
        self.logs.mkdir(parents=True, exist_ok=True)
        tb_home = args.cache / "tb-home"
        tb_home.mkdir(parents=True, exist_ok=True)
        threads = str(args.threads)
        self.env = dict(
            os.environ,
            OMP_NUM_THREADS=threads,
            MKL_NUM_THREADS=threads,
            # transparent-background keeps a config (and downloads) under this folder instead of ~.
            TRANSPARENT_BACKGROUND_FILE_PATH=str(tb_home),
            HF_HUB_OFFLINE="1",
            PYTHONWARNINGS="ignore",
        )

    def spec(self, **fields: Any) -> dict[str, Any]:
        base = {"threads": self.args.threads, "device": self.args.device, "precision": "fp32"}
        base.update(fields)
        if "mode" in fields:  # pyramid blending runs the fast checkpoint, as in the paper
            base["ckpt"] = str(self.ckpts["base" if fields["mode"] == "base" else "fast"])
        return base

    def __call__(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        log.info("running %s", name)
        safe = name.replace("/", "_")
        fd, tmp = tempfile.mkstemp(prefix=safe, suffix=".json", dir=self.logs)
        os.close(fd)
        out = Path(tmp)
        start = time.perf_counter()
        with open(self.logs / f"{safe}.log", "w") as log_fh:
            proc = subprocess.run(
                [self.args.python, str(HERE / "worker.py"), json.dumps(spec), str(out)],
                env=self.env,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                check=False,
            )
        try:
            result = json.loads(out.read_text()) if out.stat().st_size else {}
        finally:
            out.unlink(missing_ok=True)
        if proc.returncode != 0 or not result:
            tail = (self.logs / f"{safe}.log").read_text()[-400:]
            result = {"spec": spec, "error": f"worker exited with {proc.returncode}: {tail}"}
        result["wall_s"] = time.perf_counter() - start
        if "error" in result:
            log.warning("%s failed: %s", name, result["error"])
        elif "na" in result:
            log.info("%s: n/a (%s)", name, result["na"])
        return result


def agreement_text(a: Any, b: Any, names: list[str]) -> tuple[dict[str, Any], str]:
    from compare import max_abs_diff, mask_iou, within_one_level

    per = {}
    for n in names:
        if n in a and n in b:
            per[n] = {
                "max_abs_diff_levels": max_abs_diff(a[n], b[n]),
                "within_one_level_pct": within_one_level(a[n], b[n]),
                "iou_at_0.5": mask_iou(a[n], b[n]),
            }
    if not per:
        return {}, "n/a (no maps in common)"
    worst_diff = max(v["max_abs_diff_levels"] for v in per.values())
    worst_within = min(v["within_one_level_pct"] for v in per.values())
    worst_iou = min(v["iou_at_0.5"] for v in per.values())
    label = "coffee" if len(per) == 1 else f"worst of {len(per)} photos"
    text = (
        f"max diff {worst_diff} grey levels ({worst_diff / 255:.3f}), "
        f"{worst_within:.3f} % within 1 level, IoU@0.5 {worst_iou:.4f} ({label})"
    )
    return per, text


def compare_maps(results: dict[str, Any], key_a: str, key_b: str, names: list[str]) -> dict[str, Any] | None:
    import numpy as np

    runs = results["runs"]
    paths = [runs.get(k, {}).get("spec", {}).get("maps") for k in (key_a, key_b)]
    if not all(p and Path(p).is_file() for p in paths):
        return None
    with np.load(paths[0]) as fa, np.load(paths[1]) as fb:
        a = {k: fa[k] for k in fa.files}
        b = {k: fb[k] for k in fb.files}
    try:
        per, text = agreement_text(a, b, names)
    except ValueError as exc:  # shapes differ: a bug worth seeing in the table
        return {"text": f"error ({exc})"}
    return {"per_photo": per, "text": text}


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def save(results: dict[str, Any], out: Path, started: float) -> str:
    """Write results.json and results.md now, so an interrupted run still leaves its table."""
    from report import to_markdown

    results["loadavg"]["end"] = list(os.getloadavg())
    results["total_s"] = time.perf_counter() - started
    markdown = to_markdown(results)
    write_atomic(out / "results.json", json.dumps(results, indent=1, default=str))
    write_atomic(out / "results.md", markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    import torch

    from ckpt import random_checkpoint
    from machine import describe

    torch.set_num_threads(args.threads)
    photos = shared_photos(args.photos)
    ckpts = {}
    for mode in ("fast", "base"):
        if mode in args.sections or (mode == "fast" and args.sections & {"pb", "batch", "precision"}) or (
            mode == "base" and "precision" in args.sections
        ):
            # The timed photo first: it must be among the calibration photos (see ckpt.py).
            calibration = [args.pb_image, args.image] if mode == "fast" else [args.image]
            calibration += [p for p in photos if p.resolve() not in {c.resolve() for c in calibration}]
            ckpts[mode], built_by = random_checkpoint(args.cache, calibration, mode)
    run = Runner(args, ckpts)
    photo_paths = [str(p) for p in photos]
    precisions = ["bf16", "fp16"] if args.device.startswith("cuda") else ["bf16"]
    results: dict[str, Any] = {
        "machine": describe(args.device, args.threads),
        "loadavg": {"start": list(os.getloadavg())},
        "checkpoint": {
            "paths": {mode: str(path) for mode, path in ckpts.items()},
            "built_by": built_by if ckpts else None,
            "size_mib": max((p.stat().st_size / 2**20 for p in ckpts.values()), default=0.0),
        },
        "image": str(args.image),
        "pb_image": str(args.pb_image),
        "runs": {},
        "versions": {},
        "agreement": {},
        "precision": {},
        "precision_keys": [],
    }
    started = time.perf_counter()

    if "peaks" in args.sections:
        results["peaks"] = run("peaks", run.spec(task="peaks"))
        save(results, args.out, started)

    for variant in ("fast", "base", "pb"):
        if variant not in args.sections:
            continue
        image = args.pb_image if variant == "pb" else args.image
        repeats = args.repeats if variant == "fast" else args.repeats_slow
        extra = photo_paths if variant == "fast" else []
        for impl in args.impl_list:
            key = f"{impl}/{variant}/fp32"
            results["runs"][key] = r = run(key, run.spec(
                task="latency", impl=impl, mode=variant, image=str(image), warmup=args.warmup,
                repeats=repeats, flops=True, extra_images=extra, maps=str(run.maps / f"{impl}_{variant}_fp32.npz"),
            ))
            if "version" in r:
                results["versions"][impl] = r["version"]
        agree = compare_maps(results, f"tb/{variant}/fp32", f"lite/{variant}/fp32", ["main"] + [p.name for p in photos])
        if agree:
            results["agreement"][variant] = agree
        save(results, args.out, started)

    if "precision" in args.sections:
        for precision in precisions:
            for variant in ("fast", "base"):
                key = f"{precision}/{variant}"
                results["precision_keys"].append(key)
                repeats = args.repeats if variant == "fast" else args.repeats_slow
                extra = photo_paths if variant == "fast" else []
                for impl in args.impl_list:
                    rkey = f"{impl}/{variant}/{precision}"
                    results["runs"][rkey] = run(rkey, run.spec(
                        task="latency", impl=impl, mode=variant, image=str(args.image), precision=precision,
                        warmup=args.warmup, repeats=repeats, flops=False, extra_images=extra,
                        maps=str(run.maps / f"{impl}_{variant}_{precision}.npz"),
                    ))
                acc = compare_maps(results, f"lite/{variant}/fp32", f"lite/{variant}/{precision}", ["main"] + [p.name for p in photos])
                if acc:
                    results["precision"][key] = acc
                save(results, args.out, started)

    if "batch" in args.sections:
        batch_photos = [photo_paths[i % len(photo_paths)] for i in range(args.batch_photos)]
        results["batch"] = {
            impl: run(f"{impl}/batch", run.spec(task="batch", impl=impl, mode="fast", photos=batch_photos, batch_size=args.batch_size))
            for impl in args.impl_list
        }

    if "peaks" in args.sections:
        # Again at the end, keeping the best: on a shared machine a busy moment only lowers a peak.
        end = run("peaks-end", run.spec(task="peaks"))
        results["peaks_end"] = end
        best = results["peaks"].get("peaks_gflops", {})
        for name, value in end.get("peaks_gflops", {}).items():
            best[name] = max(best.get(name, 0.0), value)
    markdown = save(results, args.out, started)
    sys.stdout.write(markdown)
    log.info("wrote %s and %s (%.0f s)", args.out / "results.md", args.out / "results.json", results["total_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
