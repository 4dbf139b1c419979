"""One model replica vs two in one process (``serve --devices cpu,cpu``), and Ray Serve replicas' RSS (issue 34).

``--mode devices`` (default): the same random full-size SwinB ``fast`` checkpoint
(bench/ckpt.py) served by ``serve --device cpu`` and by ``serve --devices cpu,cpu``, each under 4 and
16 loopback clients sending the shared photos; photos/s, p50/p99, the statuses
(504 = past the deadline). One run, the
CPU model, its flags and the load average printed beside the table: other jobs
on the machine skew every number.

``--mode ray``: ``serve --ray --replicas 2`` on a local Ray instance (run it in a
loopback-only network namespace: ``unshare -n sh -c 'ip link set lo up && exec
python bench/serve_replicas.py --mode ray'``), ``--requests`` (default 500) requests
from 16 clients, and each replica process's RSS after warm-up and at the end (goal: flat).

    python bench/serve_replicas.py --requests 16
    python bench/serve_replicas.py --mode ray --tiny --requests 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_flags, cpu_model  # noqa: E402
from serve_load import Server, drive, load_average, machine_line, markdown_table, rss_mb, tiny_model  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED_IMAGES = HERE.parents[1] / "shared" / "images"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
SETUPS = {
    "one replica (--device cpu)": ["--device", "cpu"],
    "two replicas in one process (--devices cpu,cpu)": ["--devices", "cpu,cpu"],
}


def measure_devices(ckpt: Path, bodies: list[bytes], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for name, options in SETUPS.items():
        common = ["--ckpt", str(ckpt), "--max-batch-size", "4", "--max-wait-ms", "10", "--queue-size", "64",
                  "--timeout", str(args.timeout)]
        with Server("fast", *common, *options) as server:
            asyncio.run(drive(server.base, bodies, 2, 2, args.limit_s))  # first requests after warm-up
            for clients in args.clients:
                load = load_average()
                row = asyncio.run(drive(server.base, bodies, clients, args.requests, args.limit_s))
                row.update(setup=name, load=load)
                rows.append(row)
                print(f"{name}: {row}", file=sys.stderr, flush=True)
    return rows


def replica_pids() -> list[int]:
    """The processes of the service's Ray Serve replicas on this machine (Ray names them
    ``ray::ServeReplica:<app>:<deployment>``; the front deployment holds no model)."""
    from inspyrenet_lite.integrations.ray_serve import DEPLOYMENT_NAME

    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::ServeReplica") and DEPLOYMENT_NAME.encode() in title:
                pids.append(int(entry.name))
    return sorted(pids)


def measure_ray(model: str, bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    source = [model] if args.tiny else ["fast", "--ckpt", model]
    server = Server(source[0], *source[1:], "--ray", "--replicas", "2", "--max-batch-size", "4", "--queue-size", "64",
                    "--device", "cpu")
    with server:
        asyncio.run(drive(server.base, bodies, 4, 20, args.limit_s))
        pids = replica_pids()
        warm = {pid: rss_mb(pid) for pid in pids}
        half = asyncio.run(drive(server.base, bodies, 16, args.requests // 2, args.limit_s * 2))
        middle = {pid: rss_mb(pid) for pid in pids}
        row = asyncio.run(drive(server.base, bodies, 16, args.requests - args.requests // 2, args.limit_s * 2))
        after = {pid: rss_mb(pid) for pid in pids}
    row["requests"] += half["requests"]
    row["statuses"] = {k: half["statuses"].get(k, 0) + row["statuses"].get(k, 0)
                       for k in {*half["statuses"], *row["statuses"]}}
    return {"row": row, "rss_warm_mb": warm, "rss_half_mb": middle, "rss_after_mb": after}


def photos_per_s(row: dict[str, Any]) -> float:
    """Answered photos (200s) per second: a 504 took the time but gave no photo."""
    ok = row["statuses"].get(200, row["statuses"].get("200", 0))  # int keys live, str keys from --json
    return row["throughput_rps"] * ok / max(1, row["requests"])


def table(report: dict[str, Any]) -> str:
    lines = [f"{machine_line(report)}; model: {report['model_note']}; photos: {report['photos']}", ""]
    if "rows" in report:
        lines += markdown_table(
            ["setup", "clients", "requests", "photos/s", "p50 ms", "p99 ms", "load", "statuses"],
            [[row["setup"], row["clients"], row["requests"], f"{photos_per_s(row):.2f}", f"{row['p50_ms']:.0f}",
              f"{row['p99_ms']:.0f}", row["load"].split("/")[0], row["statuses"]] for row in report["rows"]],
        )
    if "ray" in report:
        ray = report["ray"]
        lines += [f"Ray Serve, 2 replicas, {ray['row']['requests']} requests from 16 clients "
                  f"({ray['row']['throughput_rps']:.1f}/s in the second half, statuses {ray['row']['statuses']}):", ""]
        lines += markdown_table(["replica pid", "RSS after warm-up", "after half the requests", "after all"],
                                [[pid, f"{ray['rss_warm_mb'][pid]:.0f} MB", f"{ray['rss_half_mb'][pid]:.0f} MB",
                                  f"{ray['rss_after_mb'][pid]:.0f} MB"] for pid in ray["rss_warm_mb"]])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("devices", "ray"), default="devices")
    parser.add_argument("--tiny", action="store_true", help="a reduced SwinB (measures the service, not the net)")
    parser.add_argument("--requests", type=int, default=None, help="requests per point (16; ray: 500)")
    parser.add_argument("--clients", type=lambda s: [int(v) for v in s.split(",")], default=[4, 16])
    parser.add_argument("--timeout", type=float, default=60.0, help="the servers' --timeout (default 60)")
    parser.add_argument("--photos", type=Path, default=SHARED_IMAGES, help="folder of photos sent (cycled)")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache", help="where the random checkpoint is kept")
    parser.add_argument("--limit-s", type=float, default=600.0, help="time limit of each point")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    args.requests = args.requests or (500 if args.mode == "ray" else 16)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # stop the servers on the way out
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {args.photos}")
    bodies = [p.read_bytes() for p in photos]
    report: dict[str, Any] = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
                              "photos": ", ".join(p.name for p in photos), "load_before": load_average()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            model, report["model_note"] = tiny_model(Path(tmp) / "tiny"), "reduced SwinB (base 64)"
        else:
            from ckpt import random_checkpoint

            model = str(random_checkpoint(args.cache, photos, "fast")[0])
            report["model_note"] = "random full-size SwinB fast checkpoint (384 static)"
        if args.mode == "devices":
            if args.tiny:
                raise SystemExit("--mode devices measures the full-size model; leave --tiny out")
            report["rows"] = measure_devices(Path(model), bodies, args)
        else:
            report["ray"] = measure_ray(model, bodies, args)
    report["load_after"] = load_average()
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
