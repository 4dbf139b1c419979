"""DistributedDataParallel (gloo, two CPU processes) steps exactly as one process on the combined batch."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from inspyrenet_lite.training import TrainConfig, Trainer

TESTS = str(Path(__file__).resolve().parents[1])  # the helper modules (training_helpers)


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 64, 64, generator=g)
    y = torch.rand(4, 1, 64, 64, generator=g)  # soft labels
    return TensorDataset(x, y)


def _config(batch_size: int) -> TrainConfig:
    # drop_path 0: stochastic depth draws per sample, which two processes cannot match.
    return TrainConfig(epochs=1, batch_size=batch_size, size=64, lr=1e-3, warmup=0, drop_path=0.0, metric="mae")


def _worker(rank: int, port: int, out: str) -> None:
    sys.path.insert(0, TESTS)
    import torch.distributed as dist

    from training_helpers import tiny_model

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        trainer = Trainer(tiny_model(seed=7), _data(), Path(out) / f"rank{rank}", _config(batch_size=2))
        trainer.fit()
        if rank == 0:
            torch.save(trainer.model.state_dict(), Path(out) / "ddp.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_step_equals_a_single_process_step_on_the_combined_batch(tmp_path):
    from training_helpers import one_thread, tiny_model

    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ddp = torch.load(tmp_path / "ddp.pt")
    with one_thread():
        single = Trainer(tiny_model(seed=7), _data(), tmp_path / "single", _config(batch_size=4))
        single.fit()
    # The averaged gradients: Adam's first moment after one step is 0.1 * g. Sums over half
    # batches and then across processes round differently from one sum (~1e-6 of the largest
    # gradient on an Intel Xeon: convolutions pick other kernels for a batch of 2 than of 4). On an AMD
    # EPYC (2026-12-02) they differed by up to 4.5e-3 of the largest gradient, 0.9 % of an entry, also at
    # the commit that had passed on the Xeon; the cause is not found yet. The bounds below hold both and
    # still catch a DDP error (no averaging: a factor 2; a missing bucket: the whole gradient).
    ddp_opt = torch.load(tmp_path / "rank0" / "checkpoints" / "last.pt", weights_only=False)["optimizer"]["state"]
    one_opt = torch.load(tmp_path / "single" / "checkpoints" / "last.pt", weights_only=False)["optimizer"]["state"]
    assert ddp_opt.keys() == one_opt.keys() and len(one_opt) > 100
    scale = max(float(state["exp_avg"].abs().max()) for state in one_opt.values())
    for i in one_opt:
        g_ddp, g_one = ddp_opt[i]["exp_avg"], one_opt[i]["exp_avg"]
        torch.testing.assert_close(
            g_ddp, g_one, atol=1e-2 * scale, rtol=2e-2, msg=lambda m: f"{_param_order(single.model)[i]}: {m}"
        )
    # The weights: Adam's first step is lr * g / (|g| + eps), about lr * sign(g), so entries whose
    # gradient is rounding noise around zero may step either way; all others must agree.
    lr = 1e-3
    params = dict(single.model.named_parameters())
    grads = {name: one_opt[i]["exp_avg"] for i, name in enumerate(_param_order(single.model))}
    start = tiny_model(seed=7).state_dict()
    for key, value in single.model.state_dict().items():
        if key in grads:
            g = grads[key]
            clear = g.abs() > 2e-2 * scale  # well above the differences of the sums (above)
            torch.testing.assert_close(ddp[key][clear], value[clear], atol=lr * 1e-2, rtol=0, msg=key)
            assert float((ddp[key] - value).abs().max()) <= 2 * lr + 1e-6, key
        else:  # BatchNorm statistics span both processes (synchronised), so running stats match too
            torch.testing.assert_close(ddp[key], value, atol=1e-5, rtol=1e-4, msg=key)
    assert not torch.equal(params["attention0.conv_out4.conv.weight"], start["attention0.conv_out4.conv.weight"])


def _param_order(model) -> list[str]:
    """Parameter names in the optimiser's order: the decoder group, then the backbone group."""
    names = [n for n, _ in model.named_parameters()]
    return [n for n in names if "backbone" not in n] + [n for n in names if "backbone" in n]
