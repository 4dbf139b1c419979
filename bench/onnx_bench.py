"""torch fp32, ONNX Runtime fp32 and transparent-background, fast and base, side by side.

    python bench/onnx_bench.py --threads 2 [--modes fast,base] [--rounds 2] [--out bench/results-onnx]

Every measurement runs in its own process on the same random full-size SwinB
checkpoint and photo: load, one warm-up run, --repeats timed runs, peak RSS
(VmHWM) of that process. The runtimes take turns, --rounds times, and the best
time of all rounds counts (the machine is shared; ratios come from one run).
The ONNX graph is exported (or found in the cache) by a separate process first,
so that the export's memory does not count as the backend's; its time and peak
memory are reported on their own. ``onednn`` is the torch backend with float32
Linear layers routed to oneDNN (INSPYRENET_LITE_ONEDNN_LINEAR=1). Agreement:
each map against our torch fp32 map, in grey levels.

Why the ratio depends on the CPU: the network's time is mostly float32 matrix
products, so the script also measures one Swin-sized product in PyTorch (its
BLAS) and in ONNX Runtime (its own kernels), as ``backend="auto"`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from inspyrenet_lite.backends.matmul_speed import SHAPE

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
PHOTOS = HERE.parent / "tests" / "data" / "photos"
IMPLS = {"torch": "lite", "onednn": "lite", "ort": "ort", "tb": "tb"}
LABELS = {
    "torch": "inspyrenet-lite torch fp32",
    "onednn": "inspyrenet-lite torch fp32, oneDNN Linear",
    "ort": "inspyrenet-lite ONNX Runtime fp32",
    "tb": "transparent-background 1.3.4",
}


def worker(impl: str, mode: str, ckpt: str, image: str, threads: int, repeats: int, maps: str) -> None:
    if impl == "onednn":  # read once, when inspyrenet_lite's backbone module is imported
        os.environ["INSPYRENET_LITE_ONEDNN_LINEAR"] = "1"
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


def prepare_onnx(mode: str, ckpt: str, threads: int) -> dict:
    """Export (or find cached) the graph: the seconds and peak RSS it took."""
    import torch

    from inspyrenet_lite import Remover
    from memory import peak_rss_mib

    torch.set_num_threads(threads)
    start = time.perf_counter()
    remover = Remover(mode=mode, ckpt=ckpt, device="cpu", backend="onnxruntime")
    cached = remover.backend.cache_path(remover.base_size).is_file()
    remover.predictor.warmup()
    return {"export_s": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib(), "was_cached": cached}


def _sub(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", default="fast,base")
    p.add_argument("--impls", default="torch,onednn,ort,tb")
    p.add_argument("--rounds", type=int, default=2, help="times each runtime takes its turn (best time counts)")
    p.add_argument("--image", type=Path, default=PHOTOS / "coffee.png")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--out", type=Path, default=HERE / "results-onnx")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--prepare", metavar="MODE", help=argparse.SUPPRESS)
    p.add_argument("--gemm", metavar="RUNTIME", help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    p.add_argument("--maps", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.ckpt, str(args.image), args.threads, args.repeats, args.maps)
        return 0
    if args.prepare:
        print(json.dumps(prepare_onnx(args.prepare, args.ckpt, args.threads)))
        return 0
    if args.gemm:
        from inspyrenet_lite.backends.matmul_speed import matmul_gflops

        print(json.dumps({"gflops": matmul_gflops(args.gemm, args.threads, repeats=10)}))
        return 0

    import numpy as np

    from ckpt import random_checkpoint

    from machine import describe

    args.out.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix in (".png", ".jpg"))
    impls, modes = args.impls.split(","), args.modes.split(",")
    results: dict = {
        "machine": describe("cpu", args.threads),
        "image": args.image.name,
        "loadavg_start": os.getloadavg(),
        "gemm_gflops": {rt: _sub(["--gemm", rt, "--threads", str(args.threads)]) for rt in ("torch", "onnxruntime")},
        "runs": {},
    }
    common = ["--threads", str(args.threads), "--image", str(args.image)]
    for mode in modes:
        calibration = [args.image] + [q for q in photos if q.resolve() != args.image.resolve()]
        ckpt, _ = random_checkpoint(args.cache, calibration, mode)
        if "ort" in impls:
            results[f"export/{mode}"] = _sub(["--prepare", mode, "--ckpt", str(ckpt), *common])
        for round_ in range(args.rounds):
            for impl in impls:
                maps = args.out / f"{impl}_{mode}.npy"
                run = _sub(["--worker", impl, mode, "--ckpt", str(ckpt), "--maps", str(maps),
                            "--repeats", str(args.repeats), *common])
                run["loadavg"] = os.getloadavg()[0]
                results["runs"].setdefault(f"{impl}/{mode}", []).append(run)
                print(f"round {round_ + 1}", impl, mode, run, file=sys.stderr, flush=True)
    results["loadavg_end"] = os.getloadavg()
    markdown = _report(results, impls, modes, args.out)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(markdown)
    sys.stdout.write(markdown)
    return 0


def _merge(rounds: list[dict]) -> dict:
    """One runtime's rounds as one: every time, the highest peak RSS and load, or the first error."""
    done = [r for r in rounds if "times_s" in r]
    if not done:
        return rounds[0] if rounds else {"error": "not run"}
    return {
        "times_s": [t for r in done for t in r["times_s"]],
        "peak_rss_mib": max(r["peak_rss_mib"] for r in done),
        "loadavg": max(r["loadavg"] for r in done),
    }


def _report(results: dict, impls: list[str], modes: list[str], out: Path) -> str:
    import numpy as np

    m = results["machine"]
    lines = [f"{m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX-512'}), {m['threads']} threads, torch {m['torch']}; "
             f"photo {results['image']}", ""]
    gemm = results["gemm_gflops"]
    if all("gflops" in gemm[rt] for rt in ("torch", "onnxruntime")):
        m_, k_, n_ = SHAPE
        lines += [f"float32 product {m_}x{k_} by {k_}x{n_}: PyTorch {gemm['torch']['gflops']:.0f} GFLOP/s, "
                  f"ONNX Runtime {gemm['onnxruntime']['gflops']:.0f} GFLOP/s "
                  f"({gemm['onnxruntime']['gflops'] / gemm['torch']['gflops']:.2f}x)", ""]
    lines += ["| mode | runtime | latency (best) | vs torch | vs t-b | peak RSS | max diff (grey levels) "
              "| pixels within 1 level | load avg |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode in modes:
        runs = {impl: _merge(results["runs"].get(f"{impl}/{mode}", [])) for impl in impls}
        torch_done = "times_s" in runs.get("torch", {})
        base_map = np.load(out / f"torch_{mode}.npy").astype(np.int16) if torch_done else None
        for impl, run in runs.items():
            if "times_s" not in run:
                lines.append(f"| {mode} | {LABELS[impl]} | {run.get('error', 'n/a')} | | | | | | |")
                continue
            t = min(run["times_s"])

            def ratio(other: str) -> str:
                return f"{min(runs[other]['times_s']) / t:.2f}x" if "times_s" in runs.get(other, {}) else "n/a"

            diff = within = "n/a"
            if base_map is not None:
                d = np.abs(np.load(out / f"{impl}_{mode}.npy").astype(np.int16) - base_map)
                diff, within = str(int(d.max())), f"{100.0 * float((d <= 1).mean()):.2f} %"
            lines.append(f"| {mode} | {LABELS[impl]} | {t:.2f} s | {ratio('torch')} | {ratio('tb')} | "
                         f"{run['peak_rss_mib'] / 1024:.2f} GiB | {diff} | {within} | {run['loadavg']:.1f} |")
    for mode in modes:
        export = results.get(f"export/{mode}")
        if export and "export_s" in export:
            lines += ["", f"ONNX export + verification ({mode}, once per model and size, then cached): "
                      f"{export['export_s']:.0f} s, peak RSS {export['peak_rss_mib'] / 1024:.2f} GiB"
                      + (" (found in the cache: not an export)" if export["was_cached"] else "")]
        elif export:
            lines += ["", f"ONNX export ({mode}) failed: {export.get('error')}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
