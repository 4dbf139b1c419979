"""Remover end to end with a full-size SwinB checkpoint of random weights (fast mode).

Every network pass costs about a second on a CPU, so in this module a pass on
a tensor already seen returns the stored result (the network is
deterministic), and the checks that only concern sizes use a stand-in for
the network.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from inspyrenet_lite import ImageLoadError, Remover
from inspyrenet_lite.predictor import pick_device
from inspyrenet_lite.transforms import own_size


def _digest(t: torch.Tensor) -> tuple:
    return tuple(t.shape), hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def _reuse_network_results(remover: Remover):
    """Run the network once per distinct input tensor in this module."""
    real = remover.model.predict
    store: dict[tuple, torch.Tensor] = {}

    def predict(x, x_lr=None, hr_blend=1.0):
        key = (_digest(x), None if x_lr is None else _digest(x_lr), float(hr_blend))
        if key not in store:
            store[key] = real(x, x_lr=x_lr, hr_blend=hr_blend)
        return store[key].clone()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(remover.model, "predict", predict)
        yield


def _reference_map(remover: Remover, img: Image.Image) -> np.ndarray:
    """The spec's section 4 pipeline, written out independently of Remover."""
    base_h, base_w = remover.base_size
    arr = np.asarray(img.convert("RGB").resize((base_w, base_h), Image.BILINEAR), dtype=np.float32) / 255.0
    arr = (arr - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    x = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        pred = remover.model.predict(x)
        pred = F.interpolate(pred, size=(img.height, img.width), mode="bilinear", align_corners=True)
    return (pred[0, 0].numpy() * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cat_map(remover: Remover, cat_photo: Image.Image) -> np.ndarray:
    out = remover.process(cat_photo, type="map")
    assert isinstance(out, Image.Image) and out.mode == "L"
    return np.asarray(out)


def test_map_follows_the_reference_pipeline(remover, cat_photo, cat_map):
    assert cat_map.shape == (cat_photo.height, cat_photo.width)
    assert len(np.unique(cat_map)) > 50  # a real map, not a constant
    np.testing.assert_array_equal(cat_map, _reference_map(remover, cat_photo))


def test_each_input_kind_gives_the_same_map_in_its_own_kind(remover, cat_photo, cat_map, tmp_path: Path):
    path = tmp_path / "cat.png"
    cat_photo.save(path)
    from_path = remover.process(path, type="map")
    assert isinstance(from_path, Image.Image)
    from_str = remover.process(str(path), type="map")
    from_array = remover.process(np.asarray(cat_photo), type="map")
    assert isinstance(from_array, np.ndarray) and from_array.dtype == np.uint8
    from_bytes = remover.process(path.read_bytes(), type="map")
    assert isinstance(from_bytes, bytes) and from_bytes.startswith(b"\x89PNG")
    for out in (from_path, from_str, from_array, Image.open(io.BytesIO(from_bytes))):
        np.testing.assert_array_equal(np.asarray(out), cat_map)


def test_rgba_carries_the_map_as_alpha_and_comes_back_as_an_array(remover, cat_photo, cat_map):
    rgba = remover.process(np.asarray(cat_photo))
    assert rgba.shape == (cat_photo.height, cat_photo.width, 4) and rgba.dtype == np.uint8
    np.testing.assert_array_equal(rgba[..., 3], cat_map)
    solid = cat_map == 255
    np.testing.assert_array_equal(rgba[..., :3][solid], np.asarray(cat_photo)[solid])


@pytest.mark.parametrize(
    "type_, colour", [("green", (0, 255, 0)), ("white", (255, 255, 255)), ("#ff0000", (255, 0, 0))]
)
def test_colour_outputs_fill_the_background(remover, cat_photo, cat_map, type_, colour):
    out = np.asarray(remover.process(cat_photo, type=type_))
    assert out.shape == (cat_photo.height, cat_photo.width, 3)
    gone = cat_map == 0
    assert gone.any()
    assert (out[gone] == colour).all()


def test_blur_overlay_and_background_image_outputs(remover, cat_photo, cat_map, images_dir: Path):
    photo = np.asarray(cat_photo)
    kept = cat_map == 255
    for type_ in ("blur", "overlay", images_dir / "coffee.png"):
        out = remover.process(cat_photo, type=type_)
        assert out.mode == "RGB" and out.size == cat_photo.size, type_
        arr = np.asarray(out)
        assert not np.array_equal(arr, photo), type_
        if type_ != "overlay":
            np.testing.assert_array_equal(arr[kept], photo[kept])


def test_threshold_and_reverse(remover, cat_photo, cat_map):
    hard = np.asarray(remover.process(cat_photo, type="map", threshold=0.5))
    assert set(np.unique(hard)) == {0, 255}
    np.testing.assert_array_equal(hard == 255, cat_map > 127)
    flipped = np.asarray(remover.process(cat_photo, type="map", reverse=True)).astype(int)
    assert np.abs(flipped + cat_map - 255).max() <= 1
    both = remover.process(cat_photo, type="rgba", threshold=0.5, reverse=True)
    np.testing.assert_array_equal(np.asarray(both)[..., 3], 255 - hard)


def test_a_batch_gives_each_image_its_own_result(remover, cat_photo, cat_map, tmp_path: Path):
    other = cat_photo.transpose(Image.Transpose.ROTATE_90)
    path = tmp_path / "other.png"
    other.save(path)
    alone = np.asarray(remover.process(other, type="map"))
    results = remover.process([cat_photo, np.asarray(other), path], type="map", batch_size=3)
    assert isinstance(results, list) and len(results) == 3
    assert isinstance(results[0], Image.Image) and isinstance(results[1], np.ndarray)
    # Each image is normalised on its own, so batching changes nothing but
    # float rounding: convolution kernels pick their summation order by batch
    # size (about 1e-7 relative), which can move a pixel by one grey level.
    for got, want in ((results[0], cat_map), (results[1], alone), (results[2], alone)):
        diff = np.abs(np.asarray(got).astype(int) - want)
        assert diff.max() <= 1
        assert (diff == 0).mean() > 0.99
    assert remover.process([], type="map") == []


def test_hr_blend_runs_a_high_resolution_pass_and_changes_the_map(remover, images_dir: Path):
    with Image.open(images_dir / "astronaut.png") as img:
        big = img.convert("RGB").resize((600, 560), Image.BILINEAR)
    lr_only = np.asarray(remover.process(big, type="map", hr_blend=0.0))
    blended = np.asarray(remover.process(big, type="map", hr_blend=1.0))
    assert blended.shape == lr_only.shape == (560, 600)
    assert np.abs(blended.astype(int) - lr_only).max() > 10


class _SizeSpy:
    """Stands in for ``model.predict``: records the sizes it gets, returns a ramp."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, x, x_lr=None, hr_blend=1.0):
        self.calls.append((tuple(x.shape), None if x_lr is None else tuple(x_lr.shape), hr_blend))
        b, _, h, w = x.shape
        return torch.linspace(0, 1, h * w).view(1, 1, h, w).expand(b, 1, h, w).clone()


def test_network_input_sizes_for_each_setting(remover, monkeypatch: pytest.MonkeyPatch):
    spy = _SizeSpy()
    monkeypatch.setattr(remover.model, "predict", spy)
    img = Image.new("RGB", (1000, 700))
    remover.process(img, type="map")
    remover.process(img, type="map", hr_blend=0.5)
    monkeypatch.setattr(remover, "resize", "dynamic")
    remover.process(img, type="map")
    remover.process(Image.new("RGB", (4000, 3000)), type="map")
    assert spy.calls == [
        ((1, 3, 384, 384), None, 1.0),
        ((1, 3, 704, 992), (1, 3, 384, 384), 0.5),
        ((1, 3, 704, 992), None, 1.0),
        ((1, 3, 1280, 1696), None, 1.0),
    ]


def test_an_overflowing_network_is_reported_not_turned_into_a_mask(remover, monkeypatch: pytest.MonkeyPatch):
    def overflow(x, x_lr=None, hr_blend=1.0):
        return torch.full((x.shape[0], 1, *x.shape[-2:]), float("nan"))

    monkeypatch.setattr(remover.model, "predict", overflow)
    with pytest.raises(RuntimeError, match="precision='fp32' or 'bf16'"):
        remover.process(Image.new("RGB", (40, 30)), type="map")


def test_own_size_caps_the_shorter_side_and_rounds_to_32():
    assert own_size(1000, 700) == (704, 992)
    assert own_size(4000, 3000) == (1280, 1696)
    assert own_size(3000, 4000, short_side=640) == (864, 640)
    assert own_size(5, 3) == (32, 32)
    # Ties go to the even multiple, as the reference's dynamic resize does.
    assert own_size(600, 400) == (384, 608)
    assert own_size(400, 80) == (64, 384)


def test_inputs_people_really_have(remover, tmp_path: Path):
    grey16 = Image.fromarray(np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50)
    cmyk = Image.new("CMYK", (33, 17), (0, 200, 200, 0))
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (48, 20), (200, 30, 30)).save(turned, exif=exif.tobytes())
    tiny = np.full((2, 3, 4), 200, np.uint8)
    results = remover.process([grey16, cmyk, turned, tiny], type="rgba", batch_size=4)
    assert [r.size if isinstance(r, Image.Image) else r.shape for r in results] == [
        (40, 30),
        (33, 17),
        (20, 48),  # EXIF orientation applied
        (2, 3, 4),
    ]


def test_bad_inputs_raise_image_load_error_naming_them(remover, tmp_path: Path, cat_photo):
    truncated = tmp_path / "truncated.png"
    cat_photo.save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    for name in ("truncated.png", "empty.jpg", "notes.png"):
        with pytest.raises(ImageLoadError, match=name):
            remover.process(tmp_path / name)
    with pytest.raises(ImageLoadError, match="notes.png"):
        remover.process([cat_photo, tmp_path / "notes.png"], batch_size=2)


def test_the_pixel_limit_is_configurable(remover, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(remover, "max_pixels", 100)
    with pytest.raises(ImageLoadError, match="limit of 100"):
        remover.process(np.zeros((11, 10, 3), np.uint8))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"type": "purple"}, "unknown output type"),
        ({"threshold": 1.5}, "threshold"),
        ({"hr_blend": 2.0}, "hr_blend"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(remover, kwargs, message, tmp_path: Path):
    # The argument is refused before the (missing) input is even looked at.
    for image in (tmp_path / "missing.png", [tmp_path / "missing.png"]):
        with pytest.raises(ValueError, match=message):
            remover.process(image, **kwargs)


def test_predict_refuses_a_bad_hr_blend_before_any_work(remover, tmp_path: Path):
    with pytest.raises(ValueError, match="hr_blend must be in"):
        remover.predict(tmp_path / "missing.png", hr_blend=-0.5)


def test_bad_batch_size(remover):
    with pytest.raises(ValueError, match="batch_size"):
        remover.process([np.zeros((8, 8, 3), np.uint8)], batch_size=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "huge"}, "mode"),
        ({"resize": "sometimes"}, "resize"),
        ({"precision": "fp8"}, "precision"),
        ({"max_pixels": 0}, "max_pixels"),
    ],
)
def test_bad_constructor_arguments(kwargs, message, random_checkpoint):
    with pytest.raises(ValueError, match=message):
        Remover(ckpt=random_checkpoint, device="cpu", **kwargs)


def test_dynamic_resizing_with_the_fast_model_warns(random_checkpoint):
    with pytest.warns(UserWarning, match="mode='base'"):
        Remover(ckpt=random_checkpoint, device="cpu", resize="dynamic")


def test_a_checkpoint_that_does_not_fit_names_the_file(tmp_path: Path):
    from inspyrenet_lite.checkpoint import save_checkpoint

    bad = tmp_path / "not_inspyrenet.safetensors"
    save_checkpoint({"head.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(ValueError, match="not_inspyrenet.safetensors"):
        Remover(ckpt=bad, device="cpu")


def test_device_none_picks_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None).type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device(None).type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device(None).type == "cpu"
    assert pick_device("cpu") == torch.device("cpu")


def test_a_remover_wraps_a_predictor_it_is_given(tiny_folder) -> None:
    """Remover(predictor): decoding and rendering around a model already built (SAM's SamPredictor(sam))."""
    from inspyrenet_lite import Predictor, Remover

    predictor = Predictor.from_pretrained(str(tiny_folder), device="cpu")
    wrapped = Remover(predictor)
    loaded = Remover.from_pretrained(str(tiny_folder), device="cpu")
    assert wrapped.predictor is predictor
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(wrapped.process(image)), np.asarray(loaded.process(image)))
    with pytest.raises(ValueError, match="device belong to Predictor.from_pretrained"):
        Remover(predictor, device="cpu")


def test_the_package_exports_the_names_users_start_from() -> None:
    import inspyrenet_lite
    from inspyrenet_lite import model_source, predictor

    assert inspyrenet_lite.load_model is model_source.load
    assert inspyrenet_lite.Predictor is predictor.Predictor and inspyrenet_lite.MapRequest is predictor.MapRequest
    for name in inspyrenet_lite.__all__:
        assert getattr(inspyrenet_lite, name) is not None
