"""torch fp32, ONNX Runtime fp32 and transparent-background, fast and base, side by side.

    python bench/onnx_bench.py --threads 2 [--modes fast,base] [--out bench/results-onnx]

Every measurement runs in its own process on the same random full-size SwinB
checkpoint and photo: load, one warm-up run, one timed run (--repeats), peak RSS
(VmHWM) of that process. The ONNX graph is exported (or found in the cache) by a
separate process first, so that the export's memory does not count as the
backend's. Agreement: each map against our torch fp32 map, in grey levels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SHARED_IMAGES = HERE.parent.parent / "shared" / "images"
IMPLS = {"torch": "lite", "ort": "ort", "tb": "tb"}
LABELS = {"torch": "inspyrenet-lite torch fp32", "ort": "inspyrenet-lite ONNX Runtime fp32", "tb": "transparent-background 1.3.4"}


def worker(impl: str, mode: str, ckpt: str, image: str, threads: int, repeats: int, maps: str) -> None:
    import numpy as np
    import torch

    from adapters import ADAPTERS
    from memory import peak_rss_mib
    from worker import load_rgb

    torch.set_num_threads(threads)
    adapter = ADAPTERS[IMPLS[impl]]()
    photo = load_rgb(image)
    start = time.perf_counter()
    adapter.load(mode, Path(ckpt), "cpu", "fp32")
    load_s = time.perf_counter() - start
    out = adapter.run(photo)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = adapter.run(photo)
        times.append(time.perf_counter() - start)
    np.save(maps, out)
    print(json.dumps({"load_s": load_s, "times_s": times, "peak_rss_mib": peak_rss_mib()}))


def prepare_onnx(mode: str, ckpt: str, threads: int) -> float:
    """Export (or find cached) the graph; returns the seconds it took."""
    import torch

    from inspyrenet_lite import Remover

    torch.set_num_threads(threads)
    start = time.perf_counter()
    remover = Remover(mode=mode, ckpt=ckpt, device="cpu", backend="onnxruntime")
    remover.backend.session(remover.base_size)
    return time.perf_counter() - start


def _sub(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", default="fast,base")
    p.add_argument("--impls", default="torch,ort,tb")
    p.add_argument("--image", type=Path, default=SHARED_IMAGES / "coffee.png")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--out", type=Path, default=HERE / "results-onnx")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--prepare", metavar="MODE", help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    p.add_argument("--maps", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.ckpt, str(args.image), args.threads, args.repeats, args.maps)
        return 0
    if args.prepare:
        print(json.dumps({"export_s": prepare_onnx(args.prepare, args.ckpt, args.threads)}))
        return 0

    import numpy as np

    from ckpt import random_checkpoint

    args.out.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in SHARED_IMAGES.iterdir() if p.suffix in (".png", ".jpg"))
    results: dict = {"threads": args.threads, "image": args.image.name, "loadavg_start": os.getloadavg(), "runs": {}}
    common = ["--threads", str(args.threads), "--image", str(args.image)]
    for mode in args.modes.split(","):
        calibration = [args.image] + [q for q in photos if q.resolve() != args.image.resolve()]
        ckpt, _ = random_checkpoint(args.cache, calibration, mode)
        if "ort" in args.impls:
            results[f"export/{mode}"] = _sub(["--prepare", mode, "--ckpt", str(ckpt), *common])
        for impl in args.impls.split(","):
            maps = args.out / f"{impl}_{mode}.npy"
            run = _sub(["--worker", impl, mode, "--ckpt", str(ckpt), "--maps", str(maps),
                        "--repeats", str(args.repeats), *common])
            run["loadavg"] = os.getloadavg()[0]
            results["runs"][f"{impl}/{mode}"] = run
            print(impl, mode, run, file=sys.stderr, flush=True)
    results["loadavg_end"] = os.getloadavg()
    table = ["| mode | runtime | latency | vs torch | vs t-b | peak RSS | max diff (grey levels) | pixels within 1 level | load avg |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode in args.modes.split(","):
        runs = {impl: results["runs"].get(f"{impl}/{mode}", {}) for impl in args.impls.split(",")}
        base_map = np.load(args.out / f"torch_{mode}.npy").astype(np.int16) if "times_s" in runs.get("torch", {}) else None
        for impl, run in runs.items():
            if "times_s" not in run:
                table.append(f"| {mode} | {LABELS[impl]} | {run.get('error', 'n/a')} | | | | | | |")
                continue
            t = min(run["times_s"])
            ratio = lambda other: f"{min(runs[other]['times_s']) / t:.2f}x" if "times_s" in runs.get(other, {}) else "n/a"
            diff = within = "n/a"
            if base_map is not None:
                d = np.abs(np.load(args.out / f"{impl}_{mode}.npy").astype(np.int16) - base_map)
                diff, within = str(int(d.max())), f"{100.0 * float((d <= 1).mean()):.2f} %"
            table.append(f"| {mode} | {LABELS[impl]} | {t:.2f} s | {ratio('torch')} | {ratio('tb')} | "
                         f"{run['peak_rss_mib'] / 1024:.2f} GiB | {diff} | {within} | {run['loadavg']:.1f} |")
    markdown = "\n".join(table) + "\n"
    for mode in args.modes.split(","):
        if f"export/{mode}" in results:
            markdown += f"\nONNX export + verification ({mode}, once, cached): {results[f'export/{mode}']}\n"
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(markdown)
    sys.stdout.write(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
