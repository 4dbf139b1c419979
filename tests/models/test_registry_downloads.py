"""Downloads of registry models without a published checksum: Google Drive's
confirmation step (both page variants), the first-download sha256 record and
the refusal of a later file that differs, offline mode.

Runs through tests/fake_hub.py in a subprocess. There the entry is swapped
for a reduced architecture (tiny Swin) so the checkpoints served are small;
the checks (layout, sha256) are the same as for the full-size files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from fake_hub import run_python

from inspyrenet_lite.checkpoint import save_checkpoint
from inspyrenet_lite import InSPyReNet

TINY = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 2}
DRIVE_ID = "1Sj7GZoocGMHyKNhFnQQc1FTs76ysJIX3"  # swinb-dis5k-lr's

_SCRIPT = """
import dataclasses, json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
from inspyrenet_lite import registry, weights
name = {name!r}
registry.MODELS[name] = dataclasses.replace(registry.MODELS[name], backbone_args={tiny!r})
try:
    path = weights.resolve_checkpoint(name)
except Exception as exc:
    out = {{"error": type(exc).__name__, "message": str(exc)}}
else:
    out = {{"path": str(path)}}
print(json.dumps(out))
"""


def tiny_checkpoint(seed: int) -> bytes:
    torch.manual_seed(seed)
    model = InSPyReNet("swinb", base_size=(384, 384), backbone_args=TINY)
    path = Path(f"/tmp/.tiny-{seed}-{id(model)}.pth")
    try:
        save_checkpoint(model.reference_state_dict(), path)
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {"a": tiny_checkpoint(0), "b": tiny_checkpoint(1)}


def resolve(env: dict[str, str], name: str = "swinb-dis5k-lr") -> dict:
    proc = run_python(_SCRIPT.format(name=name, tiny=TINY), env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def recorded(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "own" / "sha256.json").read_text())


@pytest.mark.parametrize("confirm", ["form", "cookie"])
def test_drive_file_behind_the_confirmation_page_is_downloaded_and_its_sha256_recorded(
    hub, env, tmp_path, files, confirm
):
    hub.serve_drive(DRIVE_ID, files["a"], confirm=confirm)
    result = resolve(env)
    assert "path" in result, result
    path = Path(result["path"])
    assert path.read_bytes() == files["a"] and path.parent == tmp_path / "own"
    sha = hashlib.sha256(files["a"]).hexdigest()
    assert recorded(tmp_path)["swinb-dis5k-lr"]["sha256"] == sha
    assert sha in result["stderr"] and "no published checksum" in result["stderr"]
    assert hub.count("drive") == 2  # the confirmation page, then the file
    assert hub.count("hub") == hub.count("release") == 0  # not on the Hub nor the release

    hub.clear_requests()
    again = resolve(env)
    assert again["path"] == result["path"] and hub.requests == []


def test_a_later_file_that_differs_from_the_recorded_sha256_is_refused(hub, env, tmp_path, files):
    hub.serve_drive(DRIVE_ID, files["a"])
    first = resolve(env)
    Path(first["path"]).unlink()  # the cache is lost; Drive now serves another file of the same layout
    hub.serve_drive(DRIVE_ID, files["b"])
    second = resolve(env)
    assert second["error"] == "WeightsUnavailableError"
    assert "differs from" in second["message"] and "recorded at the first download" in second["message"]
    assert not (tmp_path / "own" / "InSPyReNet_SwinB_DIS5K_LR.pth").exists()


def test_a_cached_file_changed_on_disk_is_refused(hub, env, files):
    hub.serve_drive(DRIVE_ID, files["a"])
    path = Path(resolve(env)["path"])
    path.write_bytes(files["b"])
    hub.serve_drive(DRIVE_ID, files["b"])
    result = resolve(env)
    assert result["error"] == "WeightsUnavailableError" and "differs from" in result["message"]


def test_first_download_without_the_models_layout_is_refused_not_recorded(hub, env, tmp_path, files):
    hub.serve_drive(DRIVE_ID, b"<html>quota exceeded</html>" * 100)
    result = resolve(env)
    assert result["error"] == "WeightsUnavailableError" and "not a swinb-dis5k-lr checkpoint" in result["message"]
    assert not (tmp_path / "own" / "sha256.json").exists()
    assert [p.name for p in (tmp_path / "own").iterdir() if p.suffix == ".pth"] == []


def test_drive_page_without_a_way_to_the_file_is_reported(hub, env, files):
    result = resolve(env, name="swinb-hu")  # no Drive file served under its id
    assert result["error"] == "WeightsUnavailableError" and "Google Drive" in result["message"]


def test_offline_uses_the_cache_only(hub, env, files):
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    cold = resolve(offline)
    assert cold["error"] == "WeightsUnavailableError" and "offline" in cold["message"]
    assert hub.requests == []
    hub.serve_drive(DRIVE_ID, files["a"])
    warm = resolve(env)
    hub.clear_requests()
    assert resolve(offline)["path"] == warm["path"] and hub.requests == []


def test_base_nightly_from_the_release_is_layout_checked_and_recorded(hub, env, tmp_path, files):
    hub.serve("ckpt_base_nightly.pth", files["a"], hub=404)
    result = resolve(env, name="base-nightly")
    assert Path(result["path"]).read_bytes() == files["a"]
    assert recorded(tmp_path)["base-nightly"]["sha256"] == hashlib.sha256(files["a"]).hexdigest()
