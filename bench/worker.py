"""One measurement in a fresh process: ``python bench/worker.py SPEC_JSON OUT_JSON``.

A fresh process per measurement is what makes the peak-memory numbers mean
something (the high-water mark never goes down). The worker writes its
result as JSON (atomically) and never prints to stdout.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from adapters import ADAPTERS, Adapter, NotAvailable  # noqa: E402
from memory import peak_rss_mib, rss_mib  # noqa: E402
from offline import block_network  # noqa: E402


def load_rgb(path: str) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _cuda_peak_mib(device: str) -> float | None:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def count_flops(adapter: Adapter, image: Image.Image) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        adapter.run(image)
    return float(counter.get_total_flops())


def task_latency(spec: dict[str, Any], adapter: Adapter) -> dict[str, Any]:
    device = spec["device"]
    image = load_rgb(spec["image"])
    out: dict[str, Any] = {"image_size": list(image.size)}
    start = time.perf_counter()
    adapter.import_libraries()
    out["import_s"] = time.perf_counter() - start
    out["rss_before_load_mib"] = rss_mib()
    start = time.perf_counter()
    adapter.load(spec["mode"], Path(spec["ckpt"]), device, spec["precision"])
    out["load_s"] = time.perf_counter() - start
    out["rss_after_load_mib"] = rss_mib()
    out["peak_rss_after_load_mib"] = peak_rss_mib()

    for _ in range(spec["warmup"]):
        grey = adapter.run(image)
    times = []
    for _ in range(spec["repeats"]):
        _sync(device)
        start = time.perf_counter()
        grey = adapter.run(image)
        _sync(device)
        times.append(time.perf_counter() - start)
    out["times_s"] = times
    out["median_s"] = statistics.median(times)
    out["peak_rss_mib"] = peak_rss_mib()
    out["cuda_peak_mib"] = _cuda_peak_mib(device)

    maps = {"main": grey}
    for path in spec.get("extra_images", []):
        maps[Path(path).name] = adapter.run(load_rgb(path))
    if spec.get("maps"):
        _save_maps(Path(spec["maps"]), maps)
    if spec.get("flops"):
        out["flops"] = count_flops(adapter, image)
    return out


def task_batch(spec: dict[str, Any], adapter: Adapter) -> dict[str, Any]:
    device = spec["device"]
    photos = [load_rgb(p) for p in spec["photos"]]
    batch_size = spec["batch_size"]
    adapter.load(spec["mode"], Path(spec["ckpt"]), device, spec["precision"])
    out: dict[str, Any] = {"photos": len(photos), "batch_size": batch_size}
    adapter.run(photos[0])  # warm-up
    start = time.perf_counter()
    for photo in photos:
        adapter.run(photo)
    _sync(device)
    out["one_at_a_time_s"] = time.perf_counter() - start
    try:
        adapter.run_batch(photos[:batch_size], batch_size)  # warm-up at the batch shape
        start = time.perf_counter()
        adapter.run_batch(photos, batch_size)
        _sync(device)
        out["batched_s"] = time.perf_counter() - start
    except NotAvailable as exc:
        out["batched_na"] = str(exc)
    out["peak_rss_mib"] = peak_rss_mib()
    out["cuda_peak_mib"] = _cuda_peak_mib(device)
    return out


def task_peaks(spec: dict[str, Any], adapter: Adapter | None) -> dict[str, Any]:
    from peaks import measure_peaks

    return {"peaks_gflops": measure_peaks(spec["device"], spec.get("min_seconds", 2.0))}


TASKS = {"latency": task_latency, "batch": task_batch, "peaks": task_peaks}


def _save_maps(path: Path, maps: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **maps)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    out_path = Path(argv[2])
    torch.set_num_threads(spec["threads"])
    block_network()
    result: dict[str, Any] = {"spec": spec, "torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        adapter = ADAPTERS[spec["impl"]]() if spec.get("impl") else None
        if adapter is not None:
            result["version"] = adapter.version()
        result.update(TASKS[spec["task"]](spec, adapter))
    except NotAvailable as exc:
        result["na"] = str(exc)
    except Exception as exc:  # reported in the table instead of ending the whole run
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    _write_json(out_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
