"""What the notebook one-liner costs: ``inspyrenet_lite.remove`` against a fresh ``Remover`` per call.

    python bench/remove_oneliner.py                 # a full-size fast-mode SwinB with random weights
    python bench/remove_oneliner.py --model base --rounds 5

Prints, with the CPU's model and matrix flags, the median seconds of: a fresh
``Remover(model).process(photo)`` (what ``Remover().process(...)`` in a
notebook cell costs every time), ``remove(photo)``'s first and later calls,
``Remover.process`` on a Remover already built, and one network pass alone
(``Predictor.predict_maps``); then later calls of ``remove`` as a multiple of
that pass (the goal: below 1.2x) and of a fresh Remover.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import describe  # noqa: E402

#: Registry names and the size of their (random-weight) stand-ins.
SIZES = {"fast": 384, "base": 1024}


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(SIZES), default="fast")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    import torch

    from inspyrenet_lite import InSPyReNet, Remover, clear_cache, remove

    if args.threads:
        torch.set_num_threads(args.threads)
    info = describe("cpu", torch.get_num_threads())
    size = SIZES[args.model]
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (720, 960, 3), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        InSPyReNet("swinb", base_size=(size, size)).eval().save_pretrained(folder)
        clear_cache()
        first = _timed(lambda: remove(photo, folder, device="cpu"))
        later = [_timed(lambda: remove(photo, folder, device="cpu")) for _ in range(args.rounds)]
        fresh = [_timed(lambda: Remover(folder, device="cpu").process(photo)) for _ in range(args.rounds)]
        built = Remover(folder, device="cpu")
        process = [_timed(lambda: built.process(photo)) for _ in range(args.rounds)]
        forward = [_timed(lambda: built.predictor.predict_maps([photo])) for _ in range(args.rounds)]
    median = statistics.median
    print(f"CPU: {info.get('cpu')}  flags: {' '.join(info.get('cpu_flags', []))}  threads: {info.get('threads')}")
    print(f"model: random-weight SwinB at {size}x{size} ({args.model}); photo 960x720; {args.rounds} rounds, medians")
    print("| what | seconds |")
    print("|---|---|")
    rows = [
        ("fresh Remover(...).process(photo)", median(fresh)),
        ("remove(photo), first call", first),
        ("remove(photo), later calls", median(later)),
        ("built Remover.process(photo)", median(process)),
        ("one network pass (predict_maps)", median(forward)),
    ]
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")
    print(f"later remove() / one network pass: {median(later) / median(forward):.2f}x (goal < 1.2x)")
    print(f"later remove() / fresh Remover: {median(later) / median(fresh):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
