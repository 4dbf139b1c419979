"""Bad input gets one line naming what was wrong and what to do, never a traceback (issue 29, item 7).

The models are the small saved Swin of ``tiny_folder``: these tests are about
what a caller is told, not about the network.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import same_outputs

from inspyrenet_lite.remover import Remover


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


# --------------------------------------------------------------- devices
def test_a_cuda_device_without_cuda_is_refused_naming_the_devices_here(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError) as info:
        Remover(tiny_folder, device="cuda")
    text = one_line(info.value)
    assert "device='cuda'" in text and "CUDA" in text and "not available here" in text
    assert "devices here: cpu" in text


def test_the_command_line_and_remover_share_the_device_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from inspyrenet_lite.cli.devices import device_problem

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "--device 'cuda:1': CUDA" in device_problem("cuda:1")
    assert device_problem("cpu") is None and device_problem(None) is None


# ------------------------------------------------------------- predictor
@pytest.mark.parametrize("sizes", [[64], 64, (64, 96), [(64, 96), 32]])
def test_warmup_takes_an_int_for_a_square_and_one_size_alone(tiny_remover: Remover, sizes) -> None:
    tiny_remover.predictor.warmup(sizes)


@pytest.mark.parametrize("sizes", [[64.0], [(64,)], ["64"], [100], [(64, True)], "64"])
def test_warmup_refuses_what_is_not_a_size_in_one_line(tiny_remover: Remover, sizes) -> None:
    with pytest.raises(ValueError, match=r"warmup size|warmup sizes") as info:
        tiny_remover.predictor.warmup(sizes)
    assert "(H, W)" in one_line(info.value)


def test_no_image_is_a_type_error_listing_what_process_takes(tiny_remover: Remover) -> None:
    with pytest.raises(TypeError, match=r"unsupported image input NoneType: pass a PIL image, .*a file path"):
        tiny_remover.process(None)


@pytest.mark.parametrize(
    "array, hint",
    [
        (np.zeros((8, 8, 3)), r"\(arr \* 255\)\.round\(\)\.astype\(np\.uint8\)"),
        (np.zeros((8, 8, 3), bool), r"arr\.astype\(np\.uint8\) \* 255"),
    ],
)
def test_a_float_or_bool_array_is_refused_saying_how_to_convert_it(tiny_remover: Remover, array, hint) -> None:
    with pytest.raises(ValueError, match=r"uint8 HxWx3") as info:
        tiny_remover.predictor.predict_maps([array])
    assert re.search(hint, one_line(info.value))


# ------------------------------------------------------------ image files
@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_a_cutout_saved_as_a_format_without_alpha_is_flattened_onto_white(tmp_path: Path, suffix: str) -> None:
    from PIL import Image

    from inspyrenet_lite.image_io import save_image

    cutout = np.zeros((16, 32, 4), np.uint8)
    cutout[:, :16] = (200, 0, 0, 255)  # opaque red on the left
    cutout[:, 16:] = (0, 255, 0, 0)  # transparent on the right (green stored under it)
    save_image(Image.fromarray(cutout, mode="RGBA"), tmp_path / f"cut{suffix}")
    with Image.open(tmp_path / f"cut{suffix}") as saved:
        pixels = np.asarray(saved.convert("RGB")).astype(int)
    assert np.abs(pixels[:, :12] - (200, 0, 0)).max() <= 8
    assert np.abs(pixels[:, 20:] - (255, 255, 255)).max() <= 8


# ------------------------------------------------------------ output type
def test_an_array_given_as_type_is_named_by_type_and_shape_not_its_repr(tiny_remover: Remover) -> None:
    with pytest.raises(ValueError) as info:
        tiny_remover.process(np.zeros((8, 8, 3), np.uint8), type=np.zeros((40, 40, 3), np.uint8))
    text = one_line(info.value)
    assert "shape=(40, 40, 3)" in text and "uint8" in text and "Image.fromarray" in text
    assert len(text) < 400


# ------------------------------------------------------------ checkpoints
def _tiny_swin(seed: int):
    """The reduced Swin of ``tiny_folder`` with the weights of ``seed``."""
    from model_helpers import TINY_SWIN

    from inspyrenet_lite import InSPyReNet

    torch.manual_seed(seed)
    return InSPyReNet("swinb", depth=8, base_size=(64, 64), backbone_args=TINY_SWIN).eval()


def test_a_saved_model_state_dict_in_our_own_layout_loads(tmp_path: Path) -> None:
    from inspyrenet_lite.checkpoint import save_checkpoint
    from inspyrenet_lite.serialization import architecture_config, safetensors_metadata

    trained = _tiny_swin(0)
    fresh = _tiny_swin(1)
    fresh.load_reference_state_dict(trained.state_dict())  # was: "missing keys: ...relative_position_index"
    assert same_outputs(fresh, trained)
    # The same through a file, as Remover(ckpt=...) reads one (the header says the reduced architecture).
    path = tmp_path / "own.safetensors"
    save_checkpoint(trained.state_dict(), path, metadata=safetensors_metadata(architecture_config(trained)))
    assert same_outputs(Remover(path, device="cpu").model, trained)


def test_an_incomplete_state_dict_in_our_own_layout_names_that_layout_and_the_missing_key() -> None:
    weights = _tiny_swin(0).state_dict()
    del weights["backbone.layers.1.blocks.0.attn.proj.weight"]
    with pytest.raises(ValueError, match=r"own layout.*missing keys: backbone\.layers\.1\.blocks\.0\.attn\.proj\.weight$"):
        _tiny_swin(1).load_reference_state_dict(weights)


# ------------------------------------------------- high-resolution notice
def test_the_skipped_pass_notice_names_only_the_caps_that_stop_it_and_the_value_that_lets_it_run(
    tiny_remover: Remover,
) -> None:
    strip = tiny_remover.high_resolution_notice((6000, 400), hr_blend=1.0)  # a 6016x384 pass: 2.3 MP
    assert "hr_long_side=6016 or more" in strip
    assert "hr_max_pixels" not in strip  # raising it would change nothing
    panorama = tiny_remover.high_resolution_notice((30000, 1300), hr_blend=1.0)  # 29536x1280: 37.8 MP
    assert "hr_long_side=29536 and hr_max_pixels=37806080 or more" in panorama
    assert "about 49 GB" in panorama


# -------------------------------------------------------------------- hub
_PUSH = """
import torch
from inspyrenet_lite import InSPyReNet
from model_helpers import TINY_SWIN
model = InSPyReNet("swinb", depth=8, base_size=(64, 64), backbone_args=TINY_SWIN)
try:
    model.push_to_hub("someone/tiny", token="hf_x")
except Exception as exc:
    print(type(exc).__name__, exc.__cause__ is None, exc.__suppress_context__)
    print(exc)
"""


@pytest.mark.parametrize("offline", [False, True])
def test_push_to_hub_without_the_hub_is_one_connection_error_saying_what_to_do(offline: bool) -> None:
    from fake_hub import closed_endpoint, run_python

    path = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))
    env = {**closed_endpoint(), "PYTHONPATH": path, **({"HF_HUB_OFFLINE": "1"} if offline else {})}
    proc = run_python(_PUSH, env)
    assert proc.returncode == 0, proc.stderr
    kind, message = proc.stdout.strip().splitlines()[-2:]
    assert kind == "ConnectionError True True"  # was httpx's ConnectError from deep in the client
    assert "'someone/tiny'" in message and ("HF_HUB_OFFLINE" in message) and "hf upload" in message
    assert ("offline mode is on" in message) == offline


# ------------------------------------------------------------------ Ctrl-C
class _InterruptedImport:
    """A module finder that stops the import of ``name`` as Ctrl-C would."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, name: str, path=None, target=None):
        if name == self.name:
            raise KeyboardInterrupt
        return None


def test_ctrl_c_during_the_commands_imports_is_status_130_and_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from inspyrenet_lite.cli import main

    monkeypatch.delitem(sys.modules, "inspyrenet_lite.cli.models", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedImport("inspyrenet_lite.cli.models"), *sys.meta_path])
    try:
        status = main(["models"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C during the imports escaped main (a traceback for the user)")
    assert status == 130
    assert capsys.readouterr().err == "inspyrenet-lite: interrupted\n"


_AFTER_SUMMARY = """
import signal, sys
from inspyrenet_lite.cli import main
sys.argv = ["inspyrenet-lite", "models"]
status = main()
print("status", status, flush=True)
signal.raise_signal(signal.SIGINT)  # Ctrl-C once the summary is out, while Python winds down
print("not reached")
"""


def test_ctrl_c_after_the_summary_is_status_130_and_one_line() -> None:
    proc = subprocess.run([sys.executable, "-c", _AFTER_SUMMARY], capture_output=True, text=True, timeout=120)
    assert "status 0" in proc.stdout and "not reached" not in proc.stdout
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "inspyrenet-lite: interrupted"
    assert "Traceback" not in proc.stderr
