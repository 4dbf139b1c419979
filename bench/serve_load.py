"""Load test of ``inspyrenet-lite serve`` on 127.0.0.1 with an async httpx client (issue 19).

For batching on and off: throughput and p50/p95/p99 latency at 1, 4 and 16
concurrent clients, the server's RSS after warm-up and after N1 / N2 requests
(goal: flat; default 500 and 2000), and what a full queue answers (503 +
Retry-After, at once, not timeouts). Bounded: every phase has a request count
and a time limit (a phase cut short says at how many requests the RSS was read).

    python bench/serve_load.py --tiny                       # reduced SwinB, seconds
    python bench/serve_load.py --model fast --requests 100  # the real thing (needs the weights)
    python bench/serve_load.py --tiny --overload 32 --limit-s 20 --timeout 2
        # overload only: 32 clients for at most 20 s against --timeout 2 (status histogram, p50/p99, RSS)

Prints a Markdown table with the machine's CPU, its matrix CPU flags and the load average
(around the run, and the 1-minute one when each row started: other jobs on the machine skew rows).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_flags, cpu_model  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_SWIN = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 2}


def tiny_model(folder: Path) -> str:
    """A reduced SwinB (base 64) saved with save_pretrained: a stand-in that measures the service, not the net."""
    import torch

    from inspyrenet_lite import InSPyReNet

    torch.manual_seed(0)
    InSPyReNet("swinb", depth=8, base_size=(64, 64), backbone_args=TINY_SWIN).eval().save_pretrained(folder)
    return str(folder)


def photo_bytes(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR).save(buffer, format="JPEG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> str:
    """The machine's 1/5/15-minute load average, e.g. ``"1.2/0.9/0.7"`` (other jobs skew every number)."""
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The resident memory of ``pid`` in MB (``field="VmHWM"``: its peak so far)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Server:
    """``inspyrenet-lite serve`` in a subprocess on a free loopback port (or ``argv``: another server,
    started with ``--port PORT`` appended, ready when ``ready_path`` answers 200)."""

    def __init__(self, model: str | None, *options: str, argv: list[str] | None = None,
                 ready_path: str = "/v1/ready", env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        env = {**os.environ, **(env or {}),
               "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        if argv is None:
            assert model is not None
            argv = [sys.executable, "-m", "inspyrenet_lite", "serve", "--model", model, "--log-level", "warning",
                    *options]
        self.argv, self.env = [*argv, "--port", str(self.port)], env

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited while starting: {' '.join(self.argv)}")
            try:
                if httpx.get(f"{self.base}{self.ready_path}", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the server did not become ready: {' '.join(self.argv)}")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def rss(self) -> float:
        return rss_mb(self.process.pid)


async def drive(base: str, body: bytes | list[bytes], clients: int, requests: int, limit_s: float,
                path: str = "/v1/remove") -> dict[str, Any]:
    """``requests`` POST ``path`` (the image as the raw body; a list of bodies is cycled) from
    ``clients`` concurrent clients; latencies and statuses."""
    bodies = body if isinstance(body, list) else [body]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(requests))
    deadline = time.monotonic() + limit_s

    async def client_loop(client: httpx.AsyncClient) -> None:
        for index in counter:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            try:
                response = await client.post(path, content=bodies[index % len(bodies)],
                                             headers={"Content-Type": "application/octet-stream"})
                status = response.status_code
            except httpx.TimeoutException:
                status = -1  # a timeout: what the service must never give
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000.0
    return {
        "clients": clients,
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed if elapsed else float("nan"),
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else float("nan"),
        "p95_ms": float(np.percentile(ms, 95)) if ms.size else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else float("nan"),
        "statuses": statuses,
    }


def run_mode(model: str, batching: bool, args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    options = ["--max-batch-size", str(args.batch), "--max-wait-ms", "10"] if batching else \
        ["--max-batch-size", "1", "--max-wait-ms", "0"]
    with Server(model, *options, "--queue-size", "64", "--device", args.device) as server:
        asyncio.run(drive(server.base, body, 4, args.warmup, args.limit_s))
        rss = {"warm": server.rss()}
        rows = []
        for clients in args.clients:
            load = load_average()
            rows.append({**asyncio.run(drive(server.base, body, clients, args.requests, args.limit_s)), "load": load})
            print(f"batching {'on' if batching else 'off'}: {rows[-1]}", file=sys.stderr, flush=True)
        sent = args.warmup + sum(row["requests"] for row in rows)
        reached: dict[str, int] = {}
        for mark in args.rss_at:
            if mark > sent:  # bounded: a phase that hits its time limit reads the RSS where it stopped
                sent += asyncio.run(drive(server.base, body, 16, mark - sent, args.limit_s * 4))["requests"]
            rss[str(mark)] = server.rss()
            reached[str(mark)] = sent
            print(f"batching {'on' if batching else 'off'}: RSS {rss} after {reached}", file=sys.stderr, flush=True)
    return {"batching": batching, "rows": rows, "rss_mb": rss, "requests_at": reached}


def queue_full(model: str, args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    """32 requests at once against --queue-size 4: how many 503s, how fast, and no timeouts."""
    with Server(model, "--max-batch-size", "1", "--queue-size", "4", "--device", args.device) as server:

        async def burst() -> list[tuple[int, float, str | None]]:
            async with httpx.AsyncClient(base_url=server.base, timeout=120,
                                         limits=httpx.Limits(max_connections=32)) as client:
                async def one() -> tuple[int, float, str | None]:
                    started = time.perf_counter()
                    response = await client.post("/v1/remove", content=body)
                    return response.status_code, time.perf_counter() - started, response.headers.get("retry-after")
                return await asyncio.gather(*(one() for _ in range(32)))

        results = asyncio.run(burst())
    busy = [r for r in results if r[0] == 503]
    return {
        "sent": len(results),
        "ok": sum(r[0] == 200 for r in results),
        "busy_503": len(busy),
        "busy_with_retry_after": sum(r[2] is not None for r in busy),
        "slowest_503_ms": max((r[1] for r in busy), default=0.0) * 1000.0,
        "other": sorted({r[0] for r in results} - {200, 503}),
    }


def overload(model: str, args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    """``args.overload`` clients for at most ``args.limit_s`` seconds against a server with a short
    ``--timeout``: above capacity the answers must be 200 or 503 (never 504 or a client timeout)."""
    with Server(model, "--max-batch-size", str(args.batch), "--timeout", str(args.timeout), "--device",
                args.device) as server:
        before = server.rss()
        result = asyncio.run(drive(server.base, body, args.overload, 10**9, args.limit_s))
        after = server.rss()
    return {**result, "rss_before_mb": before, "rss_after_mb": after}


def overload_table(report: dict[str, Any]) -> str:
    row = report["overload"]
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(row["statuses"].items()))
    lines = [f"{machine_line(report)}; model: {report['model_note']}; image {report['image']}; "
             f"--timeout {report['timeout']} --max-batch-size {report['batch']}", ""]
    return "\n".join(lines + markdown_table(
        ["clients", "requests", "req/s", "p50 ms", "p99 ms", "RSS before", "RSS after", "statuses"],
        [[row["clients"], row["requests"], f"{row['throughput_rps']:.1f}", f"{row['p50_ms']:.0f}",
          f"{row['p99_ms']:.0f}", f"{row['rss_before_mb']:.0f} MB", f"{row['rss_after_mb']:.0f} MB", statuses]]))


def machine_line(report: dict[str, Any]) -> str:
    """CPU model, its matrix flags, cores and the load average around the run (keys of ``report``)."""
    return (f"CPU: {report['cpu']} (flags: {', '.join(report['cpu_flags']) or 'none of avx512f/bf16/amx'}); "
            f"{report['cores']} cores; load average {report['load_before']} before, {report['load_after']} after "
            "(1/5/15 min)")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """The lines of a Markdown table: the first and last columns left-aligned, the numbers between right."""
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 2) + "---|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def table(report: dict[str, Any]) -> str:
    lines = [f"{machine_line(report)}; model: {report['model_note']}; image {report['image']}", ""]
    lines += markdown_table(
        ["batching", "clients", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "load", "statuses"],
        [[("on" if mode["batching"] else "off"), row["clients"], row["requests"], f"{row['throughput_rps']:.1f}",
          f"{row['p50_ms']:.0f}", f"{row['p95_ms']:.0f}", f"{row['p99_ms']:.0f}", row.get("load", "?").split("/")[0],
          row["statuses"]]
         for mode in report["modes"] for row in mode["rows"]],
    )
    lines += ["", "| batching | RSS after warm-up | " + " | ".join(f"after {m}" for m in report["rss_at"]) + " |",
              "|---|---:|" + "---:|" * len(report["rss_at"])]
    for mode in report["modes"]:
        rss, reached = mode["rss_mb"], mode["requests_at"]
        lines.append(f"| {'on' if mode['batching'] else 'off'} | {rss['warm']:.0f} MB | "
                     + " | ".join(f"{rss[str(m)]:.0f} MB" + ("" if reached[str(m)] >= m else f" (at {reached[str(m)]})")
                                  for m in report["rss_at"]) + " |")
    full = report["queue_full"]
    lines += ["", f"Full queue (--queue-size 4, 32 at once): {full['ok']} x 200, {full['busy_503']} x 503 "
              f"({full['busy_with_retry_after']} with Retry-After, slowest 503 in {full['slowest_503_ms']:.0f} ms), "
              f"other statuses: {full['other'] or 'none'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model name or save_pretrained folder (default: --tiny)")
    parser.add_argument("--tiny", action="store_true", help="a reduced SwinB built here (measures the service)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=40, help="requests per client count (default 40)")
    parser.add_argument("--clients", type=lambda s: [int(v) for v in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--rss-at", type=lambda s: [int(v) for v in s.split(",")], default=[500, 2000],
                        help="total requests after which RSS is read (default 500,2000)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="--max-batch-size with batching on")
    parser.add_argument("--image", default="320x240")
    parser.add_argument("--limit-s", type=float, default=300.0, help="time limit of each phase")
    parser.add_argument("--overload", type=int, default=0, metavar="CLIENTS",
                        help="run only the overload phase: CLIENTS clients for at most --limit-s seconds")
    parser.add_argument("--timeout", type=float, default=2.0, help="the server's --timeout in the overload phase")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # stop the servers on the way out
    width, height = (int(v) for v in args.image.split("x"))
    body = photo_bytes(width, height)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model if args.model and not args.tiny else tiny_model(Path(tmp) / "tiny")
        note = "reduced SwinB (embed 16, depths 1-1-1-1, base 64): the service's overhead, not the network's speed" \
            if model.startswith(tmp) else model
        report = {
            "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "model_note": note,
            "image": args.image, "rss_at": args.rss_at, "load_before": load_average(),
        }
        if args.overload:
            report.update(timeout=args.timeout, batch=args.batch, overload=overload(model, args, body))
        else:
            report.update(modes=[run_mode(model, batching, args, body) for batching in (True, False)],
                          queue_full=queue_full(model, args, body))
        report["load_after"] = load_average()
    print(overload_table(report) if args.overload else table(report))
    if args.json:
        from inspyrenet_lite._atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
