"""Remover's argument checks, limits and error handling (issue 9, items 4, 15, 16, 17).

The network is replaced by a stand-in that records the sizes it is asked for
and returns a gradient map: these tests are about what reaches the network
and what comes back, not about the network.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspyrenet_lite import ImageLoadError, Remover
from inspyrenet_lite.checks import check_options


class _StandIn:
    def __init__(self, fail_on_width: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_on_width = fail_on_width

    def __call__(self, x, x_lr=None, hr_blend=1.0):
        self.calls.append((tuple(x.shape), None if x_lr is None else tuple(x_lr.shape)))
        b, _, h, w = x.shape
        return torch.linspace(0, 1, h * w).view(1, 1, h, w).expand(b, 1, h, w).clone()


@pytest.fixture
def stand_in(remover: Remover, monkeypatch: pytest.MonkeyPatch) -> _StandIn:
    spy = _StandIn()
    monkeypatch.setattr(remover.model, "predict", spy)
    return spy


# ------------------------------------------------------------ item 17
BAD_CALL_OPTIONS = [
    ({"threshold": None}, None),  # allowed: no threshold
    ({"threshold": [0.5]}, "threshold must be a number"),
    ({"threshold": True}, "threshold must be a number"),
    ({"threshold": math.nan}, "threshold must be a finite number"),
    ({"threshold": "0.5"}, "threshold must be a number"),
    ({"hr_blend": None}, None),  # allowed: the Remover's default (the model's, from the registry)
    ({"hr_blend": [1.0]}, "hr_blend must be a number"),
    ({"hr_blend": math.inf}, "hr_blend must be a finite number"),
    ({"hr_blend": -0.1}, r"hr_blend must be in \[0, 1\]"),
    ({"reverse": "no"}, "reverse must be True or False"),
    ({"reverse": 1}, "reverse must be True or False"),
    ({"reverse": None}, "reverse must be True or False"),
    ({"batch_size": 0}, "batch_size must be an integer of at least 1"),
    ({"batch_size": 2.0}, "batch_size must be an integer"),
    ({"batch_size": True}, "batch_size must be an integer"),
    ({"errors": "ignore"}, "errors must be one of 'raise', 'skip'"),
]


@pytest.mark.parametrize("kwargs, message", [case for case in BAD_CALL_OPTIONS if case[1]])
def test_single_and_list_calls_refuse_bad_options_with_a_value_error(remover, stand_in, kwargs, message, tmp_path):
    # Checked before the (missing) input is looked at, for one image as for a list.
    for image in (tmp_path / "missing.png", [tmp_path / "missing.png"]):
        with pytest.raises(ValueError, match=message):
            remover.process(image, **kwargs)
    assert stand_in.calls == []


@pytest.mark.parametrize("hr_blend", ["1", [0.5], math.nan, True])  # None: the Remover's default
def test_predict_refuses_bad_hr_blend_with_a_value_error(remover, stand_in, hr_blend, tmp_path):
    with pytest.raises(ValueError, match="hr_blend"):
        remover.predict(tmp_path / "missing.png", hr_blend=hr_blend)


def test_good_options_of_other_numeric_types_are_accepted(remover, stand_in):
    img = np.zeros((40, 30, 3), np.uint8)
    out = remover.process(img, type="map", threshold=np.float32(0.5), hr_blend=0, reverse=np.bool_(True))
    assert out.shape == (40, 30)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_pixels": 1.5}, "max_pixels must be an integer"),
        ({"max_pixels": True}, "max_pixels must be an integer"),
        ({"max_pixels": 0}, "max_pixels must be an integer of at least 1"),
        ({"hr_short_side": math.nan}, "hr_short_side must be an integer"),
        ({"hr_short_side": 16}, "hr_short_side must be an integer of at least 32"),
        ({"hr_long_side": "2048"}, "hr_long_side must be an integer"),
        ({"hr_max_pixels": None}, "hr_max_pixels must be an integer"),
        ({"resize": "big"}, "resize must be one of"),  # None: the model's default
        ({"precision": ["fp32"]}, "precision must be one of"),
        ({"mode": "nope"}, "Unknown model .nope."),
    ],
)
def test_the_constructor_refuses_bad_options_before_loading_anything(kwargs, message, tmp_path):
    # The checkpoint does not exist: the argument must be refused before it is looked for.
    with pytest.raises(ValueError, match=message):
        Remover(ckpt=tmp_path / "missing.pth", device="cpu", **kwargs)


def test_check_options_normalises_and_names_unknown_options():
    assert check_options(threshold=np.float64(0.25), reverse=np.bool_(False), batch_size=np.int64(3)) == {
        "threshold": 0.25,
        "reverse": False,
        "batch_size": 3,
    }
    with pytest.raises(TypeError, match="colour"):
        check_options(colour=1)


# ------------------------------------------------------------ item 16
def test_fp16_on_a_cpu_is_refused_with_the_reason_and_the_alternatives(tmp_path):
    with pytest.raises(ValueError, match=r"slower than fp32.*'fp32' or 'bf16'"):
        Remover(ckpt=tmp_path / "missing.pth", device="cpu", precision="fp16")


# ------------------------------------------------------------ item 15
def test_errors_skip_keeps_every_good_result_and_puts_the_error_in_place(remover, stand_in, tmp_path: Path):
    good = np.full((40, 30, 3), 90, np.uint8)
    (tmp_path / "notes.png").write_text("not an image")
    images = [good, tmp_path / "notes.png", good, tmp_path / "missing.png", good]
    results = remover.process(images, type="map", batch_size=2, errors="skip")
    assert len(results) == 5
    for i in (0, 2, 4):
        assert isinstance(results[i], np.ndarray) and results[i].shape == (40, 30)
    for i, name in ((1, "notes.png"), (3, "missing.png")):
        assert isinstance(results[i], ImageLoadError) and name in str(results[i])
    # The default still stops at the first bad item.
    with pytest.raises(ImageLoadError, match="notes.png"):
        remover.process(images, type="map", batch_size=2)


def test_errors_skip_isolates_a_network_failure_to_its_image(remover, monkeypatch: pytest.MonkeyPatch):
    stand_in = _StandIn()

    def picky(x, x_lr=None, hr_blend=1.0):
        if x.shape[0] > 1:
            raise RuntimeError("batch failed")
        if float(x[0, 0, 0, 0]) > 2.0:  # the bright image
            raise RuntimeError("this one cannot be done")
        return stand_in(x)

    monkeypatch.setattr(remover.model, "predict", picky)
    dark, bright = np.zeros((40, 30, 3), np.uint8), np.full((40, 30, 3), 255, np.uint8)
    results = remover.process([dark, bright, dark], type="map", batch_size=3, errors="skip")
    assert isinstance(results[0], np.ndarray) and isinstance(results[2], np.ndarray)
    assert isinstance(results[1], RuntimeError) and "cannot be done" in str(results[1])


# ------------------------------------------------------------ item 4
def test_the_high_resolution_pass_is_capped_by_the_long_side(remover, stand_in, caplog):
    panorama = Image.new("RGB", (30000, 1300))  # 39 MP, short side under the 1280 cap after scaling
    with caplog.at_level(logging.WARNING, logger="inspyrenet_lite.remover"):
        remover.process(panorama, type="map", hr_blend=1.0)
    # Before the cap: a 1280x29536 pass. Now the base-size pass only.
    assert stand_in.calls == [((1, 3, 384, 384), None)]
    assert any("hr_long_side" in r.getMessage() and "base-size pass" in r.getMessage() for r in caplog.records)


def test_dynamic_resize_is_capped_by_total_pixels(remover, stand_in, monkeypatch: pytest.MonkeyPatch, caplog):
    monkeypatch.setattr(remover, "resize", "dynamic")
    monkeypatch.setattr(remover, "hr_max_pixels", 1_000_000)
    with caplog.at_level(logging.WARNING, logger="inspyrenet_lite.remover"):
        remover.process(Image.new("RGB", (1500, 1000)), type="map")  # a 992x1504 pass: 1.5 MP
        remover.process(Image.new("RGB", (1000, 700)), type="map")  # 704x992: 0.7 MP, allowed
    assert stand_in.calls == [((1, 3, 384, 384), None), ((1, 3, 704, 992), None)]
    assert sum("hr_max_pixels=1000000" in r.getMessage() for r in caplog.records) == 1


def test_the_caps_are_configurable_and_the_notice_is_public(remover, random_checkpoint):
    r = Remover(ckpt=random_checkpoint, device="cpu", hr_long_side=40_000, hr_max_pixels=50_000_000)
    assert r.high_resolution_notice((30000, 1300), hr_blend=1.0) is None
    del r
    default = remover
    notice = default.high_resolution_notice((30000, 1300), hr_blend=1.0)
    assert "29536x1280" in notice and "hr_long_side=2560" in notice
    assert default.high_resolution_notice((30000, 1300), hr_blend=0.0) is None
    assert default.high_resolution_notice((4000, 3000), hr_blend=1.0) is None
