"""End to end: Remover(mode="fast") with nothing local, the weights coming from a fake Hub on 127.0.0.1.

The served file is the suite's full-size random checkpoint; the published md5
is replaced, in the subprocess, by that file's md5.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fake_hub import FakeHub, corrupt, run_python

_SCRIPT = """
import dataclasses, json
import numpy as np
from inspyrenet_lite import Remover, weights
weights.MODES["fast"] = dataclasses.replace(weights.MODES["fast"], md5={md5!r})
remover = Remover(mode="fast", device="cpu")
mask = remover.process(np.full((40, 56, 3), 128, dtype=np.uint8), type="map")
print(json.dumps({{"path": str(remover.checkpoint_path), "shape": list(mask.shape), "dtype": str(mask.dtype)}}))
"""


@pytest.fixture(scope="module")
def served(random_checkpoint: Path):
    data = random_checkpoint.read_bytes()
    return data, hashlib.md5(data).hexdigest()


def _remove(env: dict[str, str], md5: str) -> dict:
    proc = run_python(_SCRIPT.format(md5=md5), env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_first_remover_downloads_and_verifies_second_makes_no_request(served, tmp_path):
    data, md5 = served
    with FakeHub() as hub:
        hub.serve("ckpt_fast.pth", data)
        env = {**hub.env(), "HF_HOME": str(tmp_path / "hf"), "INSPYRENET_LITE_CACHE": str(tmp_path / "own")}
        first = _remove(env, md5)
        assert first["shape"] == [40, 56] and first["dtype"] == "uint8"
        assert Path(first["path"]).read_bytes() == data
        assert hub.count("hub") >= 1

        hub.clear_requests()
        second = _remove(env, md5)
        assert second["path"] == first["path"]
        assert hub.requests == []


def test_corrupt_hub_file_falls_back_to_the_release_for_a_working_remover(served, tmp_path):
    data, md5 = served
    with FakeHub() as hub:
        hub.serve("ckpt_fast.pth", data, hub="corrupt", release="ok")
        env = {**hub.env(), "HF_HOME": str(tmp_path / "hf"), "INSPYRENET_LITE_CACHE": str(tmp_path / "own")}
        result = _remove(env, md5)
        assert Path(result["path"]).is_relative_to(tmp_path / "own")
        assert hub.count("release") >= 1
        # the corrupt Hub copy was not kept anywhere
        bad = corrupt(data)
        assert all(p.read_bytes() != bad for p in (tmp_path / "hf").rglob("*") if p.is_file() and p.stat().st_size == len(bad))
