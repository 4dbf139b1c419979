"""Bad input gets one line naming what was wrong and what to do, never a traceback (issue 29, item 7).

The models are the small saved Swin of ``tiny_folder``: these tests are about
what a caller is told, not about the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspyrenet_lite.remover import Remover


@pytest.fixture(scope="module")
def tiny_remover(tiny_folder: Path) -> Remover:
    return Remover(tiny_folder, device="cpu")


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
