"""Peak memory and seconds per optimiser step of full-size SwinB training at 384 on the CPU.

    python bench/train_step.py --batch 2 4 [--steps 3] [--grad-checkpointing] [--precision bf16]

Each setting runs in a fresh process (peak resident memory is per process):
one warm-up step, then ``--steps`` timed steps of the real loop (Trainer,
random data, random weights). Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _one(batch: int, steps: int, checkpointing: bool, precision: str, threads: int) -> dict:
    import tempfile

    import torch
    from torch.utils.data import TensorDataset

    from inspyrenet_lite.build import build_model
    from inspyrenet_lite.training import TrainConfig, Trainer

    torch.set_num_threads(threads)
    model = build_model("fast")
    n = batch * (steps + 1)
    data = TensorDataset(torch.randn(n, 3, 384, 384), torch.rand(n, 1, 384, 384))
    times: list[float] = []

    class Timed(Trainer):
        def _loss(self, *args):
            times.append(time.perf_counter())
            return super()._loss(*args)

    config = TrainConfig(epochs=1, batch_size=batch, size=384, warmup=0, grad_checkpointing=checkpointing,
                         precision=precision)
    with tempfile.TemporaryDirectory() as out:
        Timed(model, data, out, config).fit()
        end = time.perf_counter()
    times.append(end)
    per_step = (times[-1] - times[1]) / steps  # from the start of step 2 to the end
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    return {"batch": batch, "grad_checkpointing": checkpointing, "precision": precision, "threads": threads,
            "s_per_step": round(per_step, 2), "peak_rss_gib": round(peak, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[2, 4])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_one(args.batch[0], args.steps, args.grad_checkpointing, args.precision, args.threads)))
        return
    for batch in args.batch:
        cmd = [sys.executable, __file__, "--child", "--batch", str(batch), "--steps", str(args.steps),
               "--precision", args.precision, "--threads", str(args.threads)]
        if args.grad_checkpointing:
            cmd.append("--grad-checkpointing")
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
