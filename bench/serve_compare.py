"""``inspyrenet-lite serve`` vs transparent-background 1.3.4 behind a minimal server, side by side (issue 19).

Both servers run the same random full-size SwinB ``fast`` checkpoint
(bench/ckpt.py: the real weights cannot be downloaded here; speed and memory do
not depend on the weight values) on the same device, and answer the same
photos (the sample photos of tests/data/photos, sent as raw bodies, cycled) with the RGBA
cut-out as PNG. Ours batches (``--max-batch-size 4 --max-wait-ms 10``);
transparent-background's server (bench/tb_server.py) takes one request at a
time, as its ``Remover`` does. For 1 and 4 concurrent clients: requests/s,
p50/p95 latency, and the server's RSS after warm-up, after each point and its
peak. Bounded: a request count per point and a time limit per phase.

rembg is not in the table: its package installs, but each of its models is
downloaded from GitHub at first use (``pooch.retrieve`` of a release asset),
and this machine reaches package registries only, so it cannot run here.

    python bench/serve_compare.py                        # 16 requests per point, CPU
    python bench/serve_compare.py --requests 24 --device cuda

Needs the ``bench`` extra (transparent-background==1.3.4) and ``serve``.
Prints one Markdown table with the CPU model, its flags and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_flags, cpu_model  # noqa: E402
from serve_load import Server, drive, load_average, machine_line, markdown_table, rss_mb  # noqa: E402

HERE = Path(__file__).resolve().parent
PHOTOS = HERE.parent / "tests" / "data" / "photos"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
REMBG_NOTE = ("rembg: not run; it downloads its model from GitHub at first use (pooch), and this machine "
              "reaches package registries only")


def servers(ckpt: Path, device: str, cache: Path) -> dict[str, tuple[Server, str]]:
    """Each server (not started yet) and the route that removes a background."""
    tb_home = cache / "tb-home"  # transparent-background keeps its config here instead of ~
    tb_home.mkdir(parents=True, exist_ok=True)
    tb = Server(None, argv=[sys.executable, str(HERE / "tb_server.py"), "--ckpt", str(ckpt), "--device", device],
                ready_path="/ready", env={"TRANSPARENT_BACKGROUND_FILE_PATH": str(tb_home)})
    ours = Server("fast", "--ckpt", str(ckpt), "--device", device, "--max-batch-size", "4", "--max-wait-ms", "10")
    return {
        "transparent-background 1.3.4 (minimal FastAPI, one at a time)": (tb, "/remove"),
        "inspyrenet-lite serve (batching on: 4, 10 ms)": (ours, "/v1/remove"),
    }


def measure(started: dict[str, tuple[Server, str]], bodies: list[bytes], args: argparse.Namespace) -> list[dict]:
    """Warm every server up, then each client count on each server in turn (interleaved, so that a
    change in the machine's load hits both alike); RSS after warm-up, after each point, and peak."""
    warm = {}
    for name, (server, path) in started.items():
        statuses = asyncio.run(drive(server.base, bodies, 1, len(bodies), args.limit_s, path=path))["statuses"]
        warm[name] = (server.rss(), statuses)
    rows = []
    for clients in args.clients:
        for name, (server, path) in started.items():
            load = load_average()
            row = asyncio.run(drive(server.base, bodies, clients, args.requests, args.limit_s, path=path))
            row.update(server=name, load=load, rss_mb=server.rss(), rss_warm_mb=warm[name][0],
                       warmup_statuses=warm[name][1])
            rows.append(row)
            print(f"{name}: {row}", file=sys.stderr, flush=True)
    peaks = {name: rss_mb(server.process.pid, "VmHWM") for name, (server, _) in started.items()}
    for row in rows:
        row["peak_mb"] = peaks[row["server"]]
    return rows


def table(report: dict[str, Any]) -> str:
    lines = [f"{machine_line(report)}; device {report['device']}; model: random full-size SwinB fast checkpoint "
             f"(384 static); photos: {report['photos']}", ""]
    lines += markdown_table(
        ["server", "clients", "requests", "req/s", "p50 ms", "p95 ms", "RSS after warm-up", "RSS after", "peak RSS",
         "load", "statuses"],
        [[row["server"], row["clients"], row["requests"], f"{row['throughput_rps']:.2f}", f"{row['p50_ms']:.0f}",
          f"{row['p95_ms']:.0f}", f"{row['rss_warm_mb']:.0f} MB", f"{row['rss_mb']:.0f} MB", f"{row['peak_mb']:.0f} MB",
          row["load"].split("/")[0], row["statuses"]]
         for row in report["rows"]],
    )
    lines += ["", REMBG_NOTE]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=16, help="requests per point (default 16)")
    parser.add_argument("--clients", type=lambda s: [int(v) for v in s.split(",")], default=[1, 4])
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of photos sent (cycled)")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache", help="where the random checkpoint is kept")
    parser.add_argument("--limit-s", type=float, default=300.0, help="time limit of each point")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # stop the servers on the way out
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {args.photos}")
    from ckpt import random_checkpoint

    ckpt, _ = random_checkpoint(args.cache, photos, "fast")
    bodies = [p.read_bytes() for p in photos]
    report: dict[str, Any] = {
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "device": args.device,
        "photos": ", ".join(p.name for p in photos), "load_before": load_average(),
    }
    with contextlib.ExitStack() as stack:
        started = {name: (stack.enter_context(server), path)
                   for name, (server, path) in servers(ckpt, args.device, args.cache).items()}
        report["rows"] = measure(started, bodies, args)
    report["load_after"] = load_average()
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
