"""Which precision, backend and compile setting is fastest here, and what each costs in map quality.

    python bench/paths.py --threads 2                   # fast mode, every path, two rounds
    python bench/paths.py --mode base --paths fp32,bf16,tb

One run measures, each path in a fresh process and the rounds interleaved (a
busy moment hits every path alike), on the same random full-size SwinB
checkpoint and photo:

- ``tb``: transparent-background 1.3.4 in float32, the reference of every ratio;
- ``fp32``, ``bf16`` (autocast): inspyrenet-lite's PyTorch path;
- ``fp32+compile``, ``bf16+compile``: the same through ``torch.compile``
  (``Remover(compile=True)``), with the first call's cost (the compilation;
  round 1 starts from an empty inductor cache, later rounds find it filled;
  each compiled path has a cache of its own);
- ``fp32+compile-frozen``, ``bf16+compile-frozen``: the same with inductor's
  ``freezing`` (weights folded into the graph as constants), the alternative
  to the library's compile options;
- ``ort``: the ONNX Runtime backend (float32; its export is paid once, before round 1);
- ``ort+int8``: the same graph with its linear layers in int8 (``precision="int8"``).

and prints, with the CPU's model and matrix flags: median latency, the ratio
to the reference and to our float32, the FLOP-bound time at the float32 and
bf16 ``torch.mm`` peaks measured in the same run (how far each path is from
it), and agreement with our float32 maps (% of pixels within 1 and 2 grey
levels, IoU of the 0.5 masks) two ways: on the random checkpoint (maps near
0.5: pessimistic) and on a small model that this library's ``train`` taught
a synthetic task (confident maps, like a real checkpoint's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import worst_agreement  # noqa: E402
from machine import describe  # noqa: E402

REPO = HERE.parent
PHOTOS = REPO / "tests" / "data" / "photos"
PATHS = ("tb", "fp32", "fp32+compile", "fp32+compile-frozen", "bf16", "bf16+compile", "bf16+compile-frozen",
         "ort", "ort+int8")
TRAINED_SIZE = 64


# --------------------------------------------------------------------------------------------- worker
def _lite(path: str, ckpt: str, mode: str, device: str):
    from inspyrenet_lite import Remover

    precision = "bf16" if path.startswith("bf16") else "int8" if path.endswith("+int8") else "fp32"
    if path.endswith("+compile-frozen"):
        from inspyrenet_lite.backends import compiled

        compiled.COMPILE_OPTIONS = {**compiled.COMPILE_OPTIONS, "freezing": True}
    kwargs: dict[str, Any] = {"device": device, "precision": precision, "compile": "+compile" in path}
    if path.startswith("ort"):
        kwargs["backend"] = "onnxruntime"
    if Path(ckpt).is_dir():  # the trained small model, saved with save_pretrained
        return Remover(model=ckpt, **kwargs)
    return Remover(mode=mode, ckpt=ckpt, **kwargs)


def _grey(output: Any) -> np.ndarray:
    return np.asarray(output)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Load one path, time its first call and ``repeats`` more, and return the maps of ``images``."""
    import torch
    from PIL import Image

    torch.set_num_threads(spec["threads"])
    images = [Image.open(p).convert("RGB") for p in spec["images"]]
    start = time.perf_counter()
    if spec["path"] == "tb":
        from adapters import ReferenceAdapter

        adapter = ReferenceAdapter()
        adapter.load(spec["mode"], Path(spec["ckpt"]), spec["device"], "fp32")
        run = adapter.run
    else:
        remover = _lite(spec["path"], spec["ckpt"], spec["mode"], spec["device"])

        def run(image):
            return _grey(remover.process(image, type="map"))

    out: dict[str, Any] = {"load_s": time.perf_counter() - start}
    start = time.perf_counter()
    maps = [run(images[0])]
    out["first_s"] = time.perf_counter() - start
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        run(images[0])
        times.append(time.perf_counter() - start)
    out["times_s"] = times
    maps += [run(image) for image in images[1:]]
    if spec["path"] != "tb":
        backend = remover.backend
        out["backend"] = backend.name
        out["compile_failed"] = getattr(backend, "failed", None)
        out["precision_run"] = remover.precision
    if spec.get("maps"):
        np.savez_compressed(spec["maps"], *maps)
    return out


# ---------------------------------------------------------------------------------------------- setup
def trained_model(cache: Path, threads: int) -> tuple[Path, list[Path]]:
    """A reduced SwinB taught a synthetic task by this library's Trainer (cached), and held-out images."""
    sys.path.insert(0, str(REPO / "tests"))
    from training_helpers import photo_crops, tiny_model, write_pairs

    import torch

    from inspyrenet_lite.training import PairDataset, TrainConfig, Trainer, find_samples

    folder = cache / "trained_tiny"
    data = cache / "trained_tiny_data"
    val = sorted((data / "val" / "images").glob("*.png"))
    if (folder / "config.json").is_file() and val:
        return folder, val
    photos = photo_crops(PHOTOS)
    write_pairs(data / "train", 96, photos, TRAINED_SIZE, seed=1)
    write_pairs(data / "val", 16, photos, TRAINED_SIZE, seed=2)
    torch.set_num_threads(threads)
    model = tiny_model(seed=0, size=TRAINED_SIZE)
    config = TrainConfig(epochs=10, batch_size=8, size=TRAINED_SIZE, lr=3e-3, warmup=10, drop_path=0.0, metric="mae")
    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(model, PairDataset(find_samples(data / "train")[0], TRAINED_SIZE, seed=0), Path(run_dir), config).fit()
    model.eval().save_pretrained(folder)
    return folder, sorted((data / "val" / "images").glob("*.png"))


def flops_and_peaks(mode: str, threads: int) -> tuple[float, dict[str, float]]:
    """GFLOP of one forward at the mode's size, and the fp32/bf16 torch.mm peaks (GFLOP/s) measured now."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from inspyrenet_lite import InSPyReNet
    from peaks import measure_peaks

    torch.set_num_threads(threads)
    side = 1024 if mode == "base" else 384
    model = InSPyReNet("swinb", base_size=side).eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.predict(torch.zeros(1, 3, side, side))
    return counter.get_total_flops() / 1e9, measure_peaks("cpu")


# --------------------------------------------------------------------------------------------- report
def agreement(reference: Path, other: Path) -> dict[str, float]:
    """Worst over the images: % within 1 and 2 grey levels, IoU at 0.5."""
    a, b = np.load(reference), np.load(other)
    return worst_agreement((a[k], b[k]) for k in a.files)


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    gflop, peaks = results["gflop"], results["peaks"]
    bound = {name: gflop / peaks[name] for name in ("fp32", "bf16") if name in peaks}
    machine = results["machine"]
    lines = [
        f"Machine: {machine['cpu']} ({machine['logical_cpus']} logical CPUs; "
        f"{', '.join(machine['cpu_flags']) or 'no AVX-512/AMX flags'}); {args.threads} threads; "
        f"torch {results['machine']['torch']}; load average {results['load_start']:.2f} at start, "
        f"{results['load_end']:.2f} at end.",
        "",
        f"Mode {args.mode}: {gflop:.0f} GFLOP per image. torch.mm peaks in this run: fp32 {peaks.get('fp32', 0):.0f} "
        f"GFLOP/s, bf16 {peaks.get('bf16', 0):.0f} GFLOP/s; FLOP-bound time {bound.get('fp32', 0):.2f} s (fp32), "
        f"{bound.get('bf16', 0):.2f} s (bf16).",
        "",
        "| path | median latency | first call | vs transparent-background | vs our fp32 | "
        "x the FLOP bound (fp32 / bf16 peak) | random checkpoint vs our fp32: within 1 / 2 levels, IoU | "
        "trained small model vs our fp32: within 1 / 2 levels, IoU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    latency = {p: min(r["median_s"] for r in results["runs"][p]) for p in results["runs"] if results["runs"][p]}
    for path in args.path_list:
        runs = results["runs"].get(path) or []
        if not runs:
            lines.append(f"| {path} | error: {results['errors'].get(path, '?')} | | | | | | |")
            continue
        med = latency[path]
        first = " / ".join(f"{r['first_s']:.1f} s" for r in runs)
        ref = f"{latency['tb'] / med:.2f}x" if "tb" in latency else "n/a"
        own = f"{latency['fp32'] / med:.2f}x" if "fp32" in latency else "n/a"
        far = " / ".join(f"{med / bound[k]:.1f}x" for k in ("fp32", "bf16") if k in bound)
        cells = []
        for key in ("random", "trained"):
            acc = results["agreement"].get(key, {}).get(path)
            cells.append("(reference)" if path == "fp32" else "n/a" if acc is None else
                         f"{acc['within1']:.2f} % / {acc['within2']:.2f} %, {acc['iou']:.4f}")
        note = ""
        failed = runs[0].get("compile_failed")
        if failed:
            note = f" (compile failed: {failed})"
        lines.append(f"| {path}{note} | {med:.3f} s | {first} | {ref} | {own} | {far} | {cells[0]} | {cells[1]} |")
    lines += ["", "First call: one per round (round 1 from an empty inductor cache). Latency: best round's median."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("fast", "base"), default="fast")
    p.add_argument("--paths", default=",".join(PATHS), help=f"comma list out of {','.join(PATHS)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--image", type=Path, default=PHOTOS / "coffee.png")
    p.add_argument("--photos", type=Path, default=PHOTOS, help="photos whose maps are compared")
    p.add_argument("--no-trained", action="store_true", help="skip the trained small model's agreement")
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.path_list = [x for x in args.paths.split(",") if x]
    unknown = set(args.path_list) - set(PATHS)
    if unknown:
        p.error(f"unknown path(s) {', '.join(sorted(unknown))}; choose from {', '.join(PATHS)}")
    return args


def _spawn(spec: dict[str, Any], env: dict[str, str], log_path: Path) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    try:
        with open(log_path, "a") as log_fh:
            proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                                  stdout=log_fh, stderr=subprocess.STDOUT, check=False,
                                  input=str(out), text=True)
        if proc.returncode != 0 or not out.stat().st_size:
            raise RuntimeError(f"worker {spec['path']} exited with {proc.returncode}: see {log_path}")
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def _path_env(env: dict[str, str], path: str) -> dict[str, str]:
    """A compiled path gets an inductor cache of its own: paths share generated kernels, and a cache
    filled by another path would make this one's first call look cheaper than a user's."""
    if "+compile" not in path:
        return env
    return dict(env, TORCHINDUCTOR_CACHE_DIR=str(Path(env["TORCHINDUCTOR_CACHE_DIR"]) / path.replace("+", "_")))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        result = worker(spec)
        Path(sys.stdin.read().strip()).write_text(json.dumps(result))
        return 0
    from ckpt import random_checkpoint

    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    ckpt, _ = random_checkpoint(args.cache, photos, args.mode)
    images = [str(args.image)] + [str(p) for p in photos if p != args.image]
    inductor_cache = Path(tempfile.mkdtemp(prefix="inductor-", dir=args.out))  # round 1 compiles from nothing
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore",
               TORCHINDUCTOR_CACHE_DIR=str(inductor_cache),
               TRANSPARENT_BACKGROUND_FILE_PATH=str(args.cache / "tb-home"))
    results: dict[str, Any] = {"machine": describe("cpu", args.threads), "load_start": os.getloadavg()[0],
                               "runs": {p: [] for p in args.path_list}, "errors": {}, "agreement": {}}
    results["gflop"], results["peaks"] = flops_and_peaks(args.mode, args.threads)
    log_path = args.out / "paths.log"
    maps = {p: args.out / f"paths_{args.mode}_{p.replace('+', '_')}.npz" for p in args.path_list}
    for path in [p for p in args.path_list if p.startswith("ort")]:  # pay the export before timing anything
        _spawn({"path": path, "ckpt": str(ckpt), "mode": args.mode, "device": "cpu", "threads": args.threads,
                "images": images[:1], "repeats": 0, "maps": str(maps[path])}, env, log_path)
    for round_ in range(args.rounds):
        for path in args.path_list:
            if path in results["errors"]:
                continue
            spec = {"path": path, "ckpt": str(ckpt), "mode": args.mode, "device": "cpu", "threads": args.threads,
                    "images": images if round_ == 0 else images[:1], "repeats": args.repeats,
                    "maps": str(maps[path]) if round_ == 0 else None}
            try:
                result = _spawn(spec, _path_env(env, path), log_path)
            except RuntimeError as exc:
                results["errors"][path] = str(exc)
                continue
            result["median_s"] = statistics.median(result["times_s"])
            results["runs"][path].append(result)
            print(f"round {round_ + 1} {path}: median {result['median_s']:.3f} s, first call {result['first_s']:.1f} s",
                  flush=True)
    if "fp32" in args.path_list:
        results["agreement"]["random"] = {p: agreement(maps["fp32"], maps[p]) for p in args.path_list
                                          if p != "fp32" and not results["errors"].get(p)}
        if not args.no_trained:
            folder, val = trained_model(args.cache, args.threads)
            trained_maps = {}
            for path in [p for p in args.path_list if p not in ("tb", "ort")]:  # ort: fp32 to 1e-4
                trained_maps[path] = args.out / f"paths_trained_{path.replace('+', '_')}.npz"
                _spawn({"path": path, "ckpt": str(folder), "mode": args.mode, "device": "cpu", "threads": args.threads,
                        "images": [str(v) for v in val], "repeats": 0, "maps": str(trained_maps[path])},
                       _path_env(env, path), log_path)
            results["agreement"]["trained"] = {p: agreement(trained_maps["fp32"], m) for p, m in trained_maps.items()
                                               if p != "fp32"}
    results["load_end"] = os.getloadavg()[0]
    text = table(results, args)
    print(text)
    (args.out / f"paths_{args.mode}.md").write_text(text + "\n")
    (args.out / f"paths_{args.mode}.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
