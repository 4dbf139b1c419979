"""Images/s on one folder: one process vs N CPU worker processes vs Ray Data on a local instance (issue 20).

Each layout is the command line a user runs (``inspyrenet-lite IN -o OUT``,
``... --workers N``, ``inspyrenet-lite ray IN -o OUT --actors N``), timed
whole (start-up and model loading included, as a user pays them) on the same
folder of mixed-size photos, with the peak of the summed RSS of the command's
process tree (shared pages counted once per process: an upper bound). The
network is full size (SwinB) with seeded random weights: its speed does not
depend on the weights, and nothing is downloaded. Ray runs in a network
namespace with only loopback (root, ``unshare -n``), as the tests do.

    python bench/scale.py --mode fast --images 32 --workers 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_flags, cpu_model  # noqa: E402


def make_photos(folder: Path, count: int, images: Path) -> None:
    """``count`` photos of mixed sizes (short sides 240..720) cut from the sample photos (tests/data/photos)."""
    import numpy as np
    from PIL import Image

    sources = [Image.open(p).convert("RGB") for p in sorted(images.iterdir()) if p.suffix in (".png", ".jpg")]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        img = sources[i % len(sources)]
        w, h = int(rng.integers(320, 960)), int(rng.integers(240, 720))
        img.resize((w, h), Image.Resampling.BILINEAR).save(folder / f"p{i:03d}.jpg", quality=90)


def make_checkpoint(mode: str, path: Path) -> None:
    import torch

    from inspyrenet_lite.build import build_model
    from inspyrenet_lite.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(build_model(mode).reference_state_dict(), path)


def _tree_rss_mib(root: int) -> float:
    """Summed RSS (MiB) of ``root`` and its descendants."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(rss.get(pid, 0) for pid in tree) / 2**20


def timed(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak tree RSS in MiB, stderr tail) of running ``command``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss_mib(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {err[-2000:]}")
    return seconds, peak[0], err.strip().splitlines()[-1] if err.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("fast", "base"), default="fast")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--only", choices=("one", "workers", "ray"), default=None, help="run one layout only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        work = Path(tmp)
        make_photos(work / "in", args.images, ROOT / "tests" / "data" / "photos")
        ckpt = work / f"ckpt_{args.mode}_random.pth"
        make_checkpoint(args.mode, ckpt)
        cli = [sys.executable, "-m", "inspyrenet_lite"]
        common = [str(work / "in"), "--mode", args.mode, "--ckpt", str(ckpt), "-q"]
        layouts = {
            "one process": [*cli, *common, "-o", str(work / "one")],
            f"{args.workers} CPU workers": [*cli, *common, "-o", str(work / "workers"), "--workers", str(args.workers)],
        }
        if not args.no_ray and shutil.which("unshare") and os.geteuid() == 0:
            ray_cmd = [*cli, "ray", *common, "-o", str(work / "ray"), "--actors", str(args.workers)]
            layouts[f"Ray Data, {args.workers} actors"] = [
                "unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *ray_cmd,
            ]
        if args.only:
            keep = {"one": "one process", "workers": "CPU workers", "ray": "Ray Data"}[args.only]
            layouts = {name: command for name, command in layouts.items() if keep in name}
        print(f"# {cpu_model()}; {os.cpu_count()} CPUs; flags: {' '.join(cpu_flags()) or 'none of avx512/amx'}")
        print(f"# mode {args.mode} (full-size SwinB, random weights), {args.images} mixed-size photos, whole commands")
        print(f"{'layout':<24} {'seconds':>8} {'images/s':>9} {'ratio':>6} {'peak MiB':>9}")
        base = None
        for name, command in layouts.items():
            seconds, peak, _ = timed(command)
            rate = args.images / seconds
            base = base or rate
            print(f"{name:<24} {seconds:8.1f} {rate:9.3f} {rate / base:6.2f} {peak:9.0f}", flush=True)


if __name__ == "__main__":
    main()
