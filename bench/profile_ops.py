"""Where the time goes: torch.profiler's top operators by self CPU time for one package and mode.

    python bench/profile_ops.py --impl tb --mode base --threads 2
    python bench/profile_ops.py --impl lite --mode base --threads 2

Uses the same random checkpoint and photo as bench/run.py. Writes the tables
to --out (default bench/results/profile_<impl>_<mode>.txt) and prints them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import PHOTOS, shared_photos, write_atomic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", choices=("tb", "lite"), required=True)
    p.add_argument("--mode", choices=("fast", "base", "pb"), default="base")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--image", type=Path, default=PHOTOS / "coffee.png")
    p.add_argument("--photos", type=Path, default=PHOTOS, help="calibration photos for the checkpoint")
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--flush-denormal",
        action="store_true",
        help="torch.set_flush_denormal(True) before any work (threads created later inherit it): "
        "shows how much denormal floats cost on CPUs that slow down on them",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("TRANSPARENT_BACKGROUND_FILE_PATH", str(args.cache / "tb-home"))
    (args.cache / "tb-home").mkdir(parents=True, exist_ok=True)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from adapters import ADAPTERS
    from ckpt import random_checkpoint
    from offline import block_network
    from worker import load_rgb

    if args.flush_denormal and not torch.set_flush_denormal(True):
        p.error("this CPU cannot flush denormals (no SSE3)")
    torch.set_num_threads(args.threads)
    block_network()
    calibration = [args.image] + [p for p in shared_photos(args.photos) if p.name != args.image.name]
    ckpt, _ = random_checkpoint(args.cache, calibration, "fast" if args.mode == "pb" else args.mode)
    adapter = ADAPTERS[args.impl]()
    adapter.load(args.mode, ckpt, args.device, args.precision)
    image = load_rgb(str(args.image))
    adapter.run(image)  # warm-up: first-call allocations are not the steady state
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    with profile(activities=activities, record_shapes=True) as prof:
        adapter.run(image)
    averages = prof.key_averages()
    sort_key = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
    text = (
        f"# {args.impl} {args.mode} {args.precision} on {args.device}, {args.threads} threads, {args.image.name}"
        f"{', denormals flushed' if args.flush_denormal else ''}\n\n"
        "## top operators by self time\n"
        + averages.table(sort_by=sort_key, row_limit=args.rows)
        + "\n## top operators by self time, split by input shape\n"
        + prof.key_averages(group_by_input_shape=True).table(sort_by=sort_key, row_limit=args.rows)
    )
    out = args.out or HERE / "results" / f"profile_{args.impl}_{args.mode}_{args.precision}.txt"
    write_atomic(out, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
