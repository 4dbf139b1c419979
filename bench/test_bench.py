"""Fast checks of the harness's own logic: ``pytest bench/test_bench.py -q`` (no model is run)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapters import pb_hr_size  # noqa: E402
from compare import mask_iou, max_abs_diff, within_one_level  # noqa: E402
from memory import peak_rss_mib, rss_mib  # noqa: E402
from report import to_markdown  # noqa: E402


def test_agreement_metrics_on_hand_made_maps() -> None:
    a = np.array([[0, 100, 200, 255]], dtype=np.uint8)
    b = np.array([[1, 100, 190, 0]], dtype=np.uint8)
    assert max_abs_diff(a, b) == 255  # no uint8 wrap-around
    assert within_one_level(a, b) == pytest.approx(50.0)
    # masks > 0.5: a -> [F, F, T, T], b -> [F, F, T, F]
    assert mask_iou(a, b) == pytest.approx(0.5)


def test_iou_of_two_empty_masks_is_one_and_shapes_must_match() -> None:
    zeros = np.zeros((4, 4), np.uint8)
    assert mask_iou(zeros, zeros) == 1.0
    with pytest.raises(ValueError, match="shape"):
        max_abs_diff(zeros, np.zeros((4, 5), np.uint8))


def test_pb_hr_size_caps_short_side_and_rounds_to_32() -> None:
    assert pb_hr_size(1000, 872) == (992, 864)
    assert pb_hr_size(4000, 3000) == (1696, 1280)  # short side capped at 1280
    assert pb_hr_size(10, 10) == (32, 32)


def test_peak_rss_is_at_least_current_rss_and_grows_with_an_allocation() -> None:
    before = peak_rss_mib()
    block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
    assert peak_rss_mib() >= before
    assert peak_rss_mib() >= rss_mib() - 1
    assert rss_mib() > 64
    del block


def test_network_guard_refuses_remote_hosts_but_not_loopback() -> None:
    import offline

    original = socket.socket.connect
    try:
        offline.block_network()
        with socket.socket() as s, pytest.raises(offline.NetworkBlockedError, match="local cache"):
            s.connect(("93.184.216.34", 443))
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.socket() as client:
                client.connect(server.getsockname())
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]


def test_report_marks_missing_and_failed_variants_as_na_instead_of_crashing() -> None:
    run = {"median_s": 2.0, "times_s": [2.0], "flops": 4e11, "rss_after_load_mib": 1500.0,
           "rss_before_load_mib": 500.0, "peak_rss_mib": 2048.0, "load_s": 1.0}
    results = {
        "machine": {"cpu": "Test CPU", "threads": 2, "torch": "x"},
        "peaks": {"peaks_gflops": {"fp32": 200.0, "bf16": 800.0}},
        "runs": {
            "tb/fast/fp32": run,
            "lite/fast/fp32": dict(run, median_s=1.0, times_s=[1.0]),
            "tb/base/fp32": run,
            "lite/base/fp32": {"error": "RuntimeError: boom"},
            "lite/fast/bf16": {"na": "Remover has no precision option yet"},
        },
        "precision_keys": ["bf16/fast"],
    }
    md = to_markdown(results)
    assert "| fast (384): median latency | 2.000 s (best 2.000 s, x1) | 1.000 s (best 1.000 s, x1) | 2.00x faster |" in md
    assert "200 GFLOP/s, 100 % of fp32 peak, 25 % of bf16 peak" in md
    assert "error (RuntimeError: boom)" in md
    assert "n/a (Remover has no precision option yet)" in md
    assert "Test CPU" in md and "noisy" in md
