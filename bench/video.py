"""Video benchmark: frames/s and peak memory, inspyrenet-lite vs transparent-background's video mode.

    python bench/video.py --frames 12 --size 480x270 --threads 2

One clip (a pan over a shared photo, H.264 with an AAC tone, made with PyAV),
one random full-size fast checkpoint (bench/ckpt.py), the same device and
thread count; each side runs once in a fresh process (``--worker``), so peak
RSS is that process's high-water mark. Timing starts after the model is
loaded and ends when the output file is complete:

* transparent-background 1.3.4: its command's own code path
  (``entry_point``: OpenCV decoding, one frame at a time, ``mp4v`` writer, no
  audio), type ``green`` (it refuses ``rgba`` for video);
* inspyrenet-lite: ``process_video`` to H.264 ``green`` (the same output),
  then ``rgba`` to VP9 WebM with alpha (what it does by default), in float32
  and bfloat16, stability on, batch of 2.

Prints a Markdown table and writes it with the raw numbers to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO), str(REPO / "tests")]

RUNS = [
    ("tb", "green", "fp32"),
    ("lite", "green", "fp32"),
    ("lite", "rgba", "fp32"),
    ("lite", "green", "bf16"),
]


def worker(args: argparse.Namespace) -> dict:
    import torch

    from memory import peak_rss_mib
    from offline import block_network

    block_network()
    torch.set_num_threads(args.threads)
    out_dir = Path(args.work)
    if args.worker == "tb":
        import importlib

        # The module, not the class that the package's __init__ exports under the same name.
        tb_module = importlib.import_module("transparent_background.Remover")

        load = {}
        original = tb_module.Remover.__init__

        def timed_init(self, *a, **kw):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                original(self, *a, **kw)
            load["seconds"] = time.perf_counter() - start

        tb_module.Remover.__init__ = timed_init
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            tb_module.entry_point(
                args.type, "fast", args.device, args.ckpt, args.clip, str(out_dir), False, None, "static"
            )
        seconds = time.perf_counter() - start - load["seconds"]
        outputs = list(out_dir.iterdir())
    else:
        from inspyrenet_lite import Remover
        from inspyrenet_lite.video import process_video

        remover = Remover(mode="fast", ckpt=args.ckpt, device=args.device, precision=args.precision)
        suffix = ".webm" if args.type == "rgba" else ".mp4"
        start = time.perf_counter()
        process_video(remover, args.clip, out_dir / f"out{suffix}", type=args.type, batch_size=2)
        seconds = time.perf_counter() - start
        outputs = list(out_dir.iterdir())
    return {"seconds": seconds, "fps": args.frames / seconds, "peak_rss_mib": peak_rss_mib(), "outputs": [p.name for p in outputs]}


def stability_table(ckpt: Path, args: argparse.Namespace) -> list[str]:
    """Flicker and lag with stability off and on, on a noisy still shot, a pan and a zoom (160x96)."""
    import av
    import numpy as np
    from PIL import Image

    from inspyrenet_lite import Remover
    from inspyrenet_lite.video import Stabilizer, flicker, lag
    from video_clips import make_clip

    remover = Remover(mode="fast", ckpt=ckpt, device=args.device)
    lines = [
        f"Stability ({args.stability_frames} frames per clip at 160x96, random calibrated weights; "
        "map units x 255 = grey levels):",
        "",
        "| clip | flicker off | flicker on | lag off | lag on |",
        "| --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory() as tmp, Image.open(args.photo) as photo:
        for kind in ("still", "pan", "zoom"):
            path = Path(tmp) / f"{kind}.mp4"
            make_clip(path, photo.convert("RGB"), kind=kind, frames=args.stability_frames, noise=4.0, audio=False)
            with av.open(str(path)) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            raw = [m.astype(np.float32) / 255 for m in remover.process(frames, type="map", batch_size=2)]
            stabilizer = Stabilizer()
            steady = [stabilizer(f, m) for f, m in zip(frames, raw)]
            cells = [flicker(raw, frames), flicker(steady, frames), lag(raw, raw, frames), lag(steady, raw, frames)]
            lines.append(f"| {kind} | " + " | ".join(f"{255 * c:.2f}" for c in cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", default="480x270", help="WxH of the clip")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--photo", default=str(REPO / "tests" / "data" / "photos" / "coffee.png"))
    parser.add_argument("--out", default=str(HERE / "results" / "video.md"))
    parser.add_argument(
        "--stability-frames", type=int, default=8, help="frames per clip of the flicker/lag table (0: skip it)"
    )
    parser.add_argument("--worker", choices=("tb", "lite"), help=argparse.SUPPRESS)
    parser.add_argument("--type", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    from PIL import Image

    from ckpt import random_checkpoint
    from video_clips import make_clip

    width, height = (int(v) for v in args.size.split("x"))
    photos = sorted((REPO / "tests" / "data" / "photos").glob("*.png"))
    photos.sort(key=lambda p: p != Path(args.photo))
    ckpt, _ = random_checkpoint(HERE / ".cache", photos, "fast")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        with Image.open(args.photo) as photo:
            make_clip(clip, photo.convert("RGB"), kind="pan", frames=args.frames, size=(width, height))
        for impl, type_, precision in RUNS:
            work = Path(tmp) / f"{impl}-{type_}-{precision}"
            work.mkdir()
            cmd = [sys.executable, __file__, "--worker", impl, "--type", type_, "--precision", precision,
                   "--clip", str(clip), "--ckpt", str(ckpt), "--work", str(work), "--frames", str(args.frames),
                   "--threads", str(args.threads), "--device", args.device]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TRANSPARENT_BACKGROUND_FILE_PATH": tmp})
            if done.returncode:
                rows.append({"impl": impl, "type": type_, "precision": precision, "error": done.stderr[-400:]})
            else:
                rows.append({"impl": impl, "type": type_, "precision": precision, **json.loads(done.stdout.splitlines()[-1])})
            print(rows[-1], file=sys.stderr)
    ref = next((r for r in rows if r["impl"] == "tb" and "fps" in r), None)
    lines = [
        f"Clip: {args.frames} frames, {width}x{height}, pan over {Path(args.photo).name}, H.264 + AAC; "
        f"device {args.device}, {args.threads} threads; {platform.processor() or platform.machine()}; "
        f"load average at end {os.getloadavg()[0]:.2f}.",
        "",
        "| run | output | frames/s | vs transparent-background | peak RSS |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        name = "transparent-background 1.3.4" if r["impl"] == "tb" else f"inspyrenet-lite {r['precision']}"
        output = {"tb": "mp4v .mp4, no audio", "green": "H.264 .mp4 + audio", "rgba": "VP9 alpha .webm + audio"}
        out = output["tb"] if r["impl"] == "tb" else output[r["type"]]
        if "error" in r:
            lines.append(f"| {name} ({r['type']}) | {out} | error | | |")
            continue
        ratio = f"{r['fps'] / ref['fps']:.2f}x" if ref else "n/a"
        lines.append(f"| {name} ({r['type']}) | {out} | {r['fps']:.3f} | {ratio} | {r['peak_rss_mib'] / 1024:.2f} GiB |")
    if args.stability_frames:
        lines += ["", *stability_table(ckpt, args)]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
