"""Issue 21's GPU checks in one prepared run, sized for a lent machine's few minutes of device time.

The photos are the repository's own (``tests/data/photos``, the default of ``--photos``), so a machine
with nothing but the repository runs it as it is (give it about nine minutes):

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 bench/gpu.py --out $OUT

Every path runs in this one process on the same random full-size fast checkpoint (built there and
calibrated on the photos, ``bench/ckpt.py``), on the same photos:

- precision ``fp32``, ``bf16``, ``fp16`` (autocast, as ``Remover(precision=...)``), each with the window
  attention as the explicit product (the default) and through ``scaled_dot_product_attention``
  (``INSPYRENET_LITE_SDPA_ATTENTION=1``), and ``fp32``/``bf16`` with the network in ``channels_last``;
- per path: the network alone at batch 1 (median latency) and at ``--batch-size`` (photos/s), and
  ``Remover.process`` on the photos one at a time and batched (photos/s with decoding and compositing);
- agreement of each path's maps with ``fp32``: % of pixels within 1 and 2 grey levels, mask IoU at 0.5;
- transparent-background 1.3.4 one photo at a time on the same GPU when it is importable (carry its wheels,
  see device/README.md), the reference of the issue's 10x goal; otherwise our own fp32 one-at-a-time rate
  is printed as a stand-in and labelled so;
- ``--profile``: the ten most expensive CUDA kernels of fp32 and bf16 at batch 1 (why bf16 was slower).

Not in it: ``torch.compile`` and CUDA graphs, whose compilation would take most of a lease; measure them in
a second call once these eager numbers are in.

The table goes to stdout and ``--out``/gpu.md, the numbers to ``--out``/gpu.json. ``--device cpu`` runs
the same script on a CPU (slowly; for checking the script itself with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ckpt import random_checkpoint  # noqa: E402
from compare import worst_agreement  # noqa: E402
from machine import describe  # noqa: E402

PHOTOS = HERE.parent / "tests" / "data" / "photos"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
#: (name, precision, attention through SDPA, channels_last)
PATHS = (
    ("fp32", "fp32", False, False),
    ("fp32+sdpa", "fp32", True, False),
    ("fp32+channels_last", "fp32", False, True),
    ("bf16", "bf16", False, False),
    ("bf16+sdpa", "bf16", True, False),
    ("bf16+channels_last", "bf16", False, True),
    ("fp16", "fp16", False, False),
    ("fp16+sdpa", "fp16", True, False),
)

log = logging.getLogger("bench.gpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _cycled(photos: list[Image.Image], args: argparse.Namespace) -> list[Image.Image]:
    """The photos repeated to two batches' worth: what every photos/s figure is timed on."""
    return [photos[i % len(photos)] for i in range(args.batch_size * 2)]


def run_path(spec: tuple[str, str, bool, bool], ckpt: Path, photos: list[Image.Image], args: argparse.Namespace) -> dict[str, Any]:
    """Time one path and return its numbers and its maps of ``photos``."""
    from inspyrenet_lite.modeling import backbones

    name, precision, sdpa, channels_last = spec
    backbones._SDPA_ATTENTION = sdpa
    try:
        return _measure(precision, sdpa, channels_last, ckpt, photos, args)
    finally:
        backbones._SDPA_ATTENTION = False


def _measure(precision: str, sdpa: bool, channels_last: bool, ckpt: Path, photos: list[Image.Image], args: argparse.Namespace) -> dict[str, Any]:
    from inspyrenet_lite import Remover

    remover = Remover(mode="fast", ckpt=str(ckpt), device=args.device, precision=precision)
    if channels_last:
        remover.model.to(memory_format=torch.channels_last)
    device = remover.device
    predictor = remover.predictor
    side = int(predictor.base_size[0])
    x1 = torch.randn(1, 3, side, side, device=device)
    xb = torch.randn(args.batch_size, 3, side, side, device=device)
    if channels_last:
        x1, xb = (t.contiguous(memory_format=torch.channels_last) for t in (x1, xb))
    out: dict[str, Any] = {"precision_run": remover.precision}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    one = _timed(lambda: predictor.predict_torch(x1), device, args.repeats, args.warmup)
    out["net_b1_s"] = statistics.median(one)
    batch = _timed(lambda: predictor.predict_torch(xb), device, max(2, args.repeats // 4), 1)
    out["net_batch_photos_s"] = args.batch_size / statistics.median(batch)
    if device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    cycled = _cycled(photos, args)
    remover.process(cycled[:2], type="rgba")  # warm the sizes the photos take
    start = time.perf_counter()
    for image in cycled:
        remover.process(image, type="rgba")
    _sync(device)
    out["process_one_at_a_time_photos_s"] = len(cycled) / (time.perf_counter() - start)
    start = time.perf_counter()
    remover.process(cycled, type="rgba", batch_size=args.batch_size)
    _sync(device)
    out["process_batched_photos_s"] = len(cycled) / (time.perf_counter() - start)
    out["maps"] = [np.asarray(remover.process(image, type="map")) for image in photos]
    if args.profile and not sdpa and not channels_last and precision in ("fp32", "bf16"):
        out["profile"] = _profile(lambda: predictor.predict_torch(x1), device)
    return out


def _profile(fn: Callable[[], Any], device: torch.device) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            fn()
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=10, max_name_column_width=60)


def reference_rate(ckpt: Path, photos: list[Image.Image], args: argparse.Namespace) -> dict[str, Any] | None:
    """transparent-background's one-at-a-time photos/s on the same device, if it is importable."""
    try:
        from adapters import ReferenceAdapter

        adapter = ReferenceAdapter()
        adapter.load("fast", ckpt, args.device, "fp32")
    except Exception as exc:  # not installed there: the table says so
        log.warning("transparent-background is not usable here (%s): our fp32 one-at-a-time rate stands in", exc)
        return None
    cycled = _cycled(photos, args)
    adapter.run(cycled[0])
    start = time.perf_counter()
    for image in cycled:
        adapter.run(image)
    _sync(torch.device(args.device))
    return {"photos_s": len(cycled) / (time.perf_counter() - start)}


def table(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"Device {machine.get('gpu', machine['device'])}; CPU {machine['cpu']} ({', '.join(machine['cpu_flags']) or 'no AVX-512/AMX flags'}); "
        f"torch {machine['torch']}; batch size {results['batch_size']}.",
        "",
        "| path | network, batch 1 | network, batched photos/s | process one at a time, photos/s | process batched, photos/s"
        " | batched vs reference one at a time | vs fp32: within 1 / 2 levels, IoU | peak MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    reference = results.get("reference")
    base = reference["photos_s"] if reference else results["paths"]["fp32"]["process_one_at_a_time_photos_s"]
    for name, r in results["paths"].items():
        if "error" in r:
            lines.append(f"| `{name}` | failed: {r['error']} | | | | | | |")
            continue
        agree = r.get("agreement")
        agreement = "(reference)" if agree is None else f"{agree['within1']:.2f} % / {agree['within2']:.2f} %, {agree['iou']:.4f}"
        peak = f"{r['cuda_peak_mib']:.0f}" if "cuda_peak_mib" in r else "-"
        lines.append(
            f"| `{name}` ({r['precision_run']}) | {r['net_b1_s'] * 1000:.1f} ms | {r['net_batch_photos_s']:.1f} "
            f"| {r['process_one_at_a_time_photos_s']:.1f} | {r['process_batched_photos_s']:.1f} "
            f"| {r['process_batched_photos_s'] / base:.2f}x | {agreement} | {peak} |"
        )
    lines.append("")
    if reference:
        lines.append(f"Reference: transparent-background 1.3.4, fp32, one photo at a time: {reference['photos_s']:.1f} photos/s.")
    else:
        lines.append("transparent-background was not importable: the ratios are against our own fp32 one-at-a-time rate.")
    for name, r in results["paths"].items():
        if r.get("profile"):
            lines += ["", f"Profile of `{name}`, batch 1, three calls:", "", "```", r["profile"], "```"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--photos", type=Path, default=PHOTOS)
    p.add_argument("--paths", default=",".join(name for name, *_ in PATHS))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--quick", action="store_true", help="batch 2, 2 repeats: checks the script, measures nothing")
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.repeats, args.warmup = 2, 2, 1
    unknown = set(args.paths.split(",")) - {name for name, *_ in PATHS}
    if unknown:
        p.error(f"unknown paths {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: run on the device machine, or pass --device cpu", file=sys.stderr)
        return 2
    photo_paths = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photo_paths:
        print(f"no photos in {args.photos}: give --photos a folder of .png/.jpg photos", file=sys.stderr)
        return 2
    coffee = [p for p in photo_paths if p.name == "coffee.png"]
    photo_paths = coffee + [p for p in photo_paths if p.name != "coffee.png"]
    photos = [Image.open(p).convert("RGB") for p in photo_paths]
    ckpt, _ = random_checkpoint(args.cache, photo_paths, "fast")
    results: dict[str, Any] = {"machine": describe(args.device, torch.get_num_threads()), "batch_size": args.batch_size, "paths": {}}
    wanted = args.paths.split(",")
    reference_maps = None
    for spec in PATHS:
        if spec[0] not in wanted:
            continue
        log.info("path %s", spec[0])
        try:
            r = run_path(spec, ckpt, photos, args)
        except Exception as exc:  # one path failing (e.g. fp16 on a CPU) must not lose the others
            log.exception("path %s failed", spec[0])
            results["paths"][spec[0]] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            continue
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the path's model is gone: its cached blocks go back before the next one
        maps = r.pop("maps")
        if spec[0] == "fp32":
            reference_maps = maps
        elif reference_maps is not None:
            r["agreement"] = worst_agreement(zip(reference_maps, maps))
        results["paths"][spec[0]] = r
    results["reference"] = reference_rate(ckpt, photos, args)
    report = table(results)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.md").write_text(report + "\n", encoding="utf-8")
    (args.out / "gpu.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
