"""Predictor: items with their own options, batched by network size, thread-safe (issue 17)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspyrenet_lite import Remover
from inspyrenet_lite.predictor import MapRequest, Predictor

@pytest.fixture(scope="module")
def predictor(tiny_folder: Path) -> Predictor:
    # Small caps so that a 'high-resolution' pass stays small and fast.
    return Predictor.from_pretrained(str(tiny_folder), device="cpu", hr_short_side=96)


def photo(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)


# Four kinds of item: three network sizes, one of them with blending.
ITEMS = [
    MapRequest(photo(90, 70, 0)),
    MapRequest(photo(120, 100, 1), resize="dynamic"),
    MapRequest(photo(90, 70, 2), hr_blend=0.0),
    MapRequest(photo(700, 600, 3), hr_blend=0.7),
    MapRequest(photo(50, 40, 4)),
    MapRequest(photo(130, 90, 5), resize="dynamic"),
]


@pytest.fixture(scope="module")
def alone(tiny_folder: Path) -> list[np.ndarray]:
    """Each item's map from a Remover given that item alone, with that item's options."""
    maps = []
    for item in ITEMS:
        remover = Remover(model=str(tiny_folder), device="cpu", hr_short_side=96, resize=item.resize or "static")
        maps.append(remover.predict(item.image, hr_blend=item.hr_blend or 0.0))
    return maps


def test_mixed_options_give_each_item_the_map_it_gets_alone(predictor: Predictor, alone: list[np.ndarray]) -> None:
    maps = predictor.predict_maps(ITEMS, batch_size=8)
    assert len(maps) == len(ITEMS)
    for item, got, want in zip(ITEMS, maps, alone, strict=True):
        assert got.dtype == np.float32 and got.shape == (item.image.height, item.image.width)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_items_of_one_network_size_share_one_forward(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[int, ...], bool]] = []
    real = predictor.backend.predict

    def spy(x, x_lr=None, hr_blend=0.0):
        calls.append((tuple(x.shape), x_lr is not None))
        return real(x, x_lr=x_lr, hr_blend=hr_blend)

    monkeypatch.setattr(predictor.backend, "predict", spy)
    predictor.predict_maps(ITEMS, batch_size=8)
    # static 64x64 (3 items), dynamic 96x128 and 96x128 (2 items: same own size), blended 96x128 (+LR).
    assert sorted(calls) == sorted([((3, 3, 64, 64), False), ((2, 3, 96, 128), False), ((1, 3, 96, 128), True)])
    calls.clear()
    predictor.predict_maps(ITEMS, batch_size=2)
    assert sorted(c[0][0] for c in calls) == [1, 1, 2, 2]  # 3 static items split 2 + 1


def test_threads_with_mixed_options_each_get_their_own_maps(predictor: Predictor, alone: list[np.ndarray]) -> None:
    failures: list[str] = []

    def work(thread: int) -> None:
        # Each thread asks for its own rotation of the items, several times.
        order = [(thread + k) % len(ITEMS) for k in range(3)]
        for _ in range(3):
            maps = predictor.predict_maps([ITEMS[i] for i in order], batch_size=2)
            for i, got in zip(order, maps, strict=True):
                if got.shape != alone[i].shape or not np.allclose(got, alone[i], atol=1e-4):
                    failures.append(f"thread {thread}: item {i} wrong")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_a_bad_item_is_refused_or_skipped_in_its_place(predictor: Predictor) -> None:
    good = ITEMS[0]
    with pytest.raises(ValueError, match="hr_blend"):
        predictor.predict_maps([good, MapRequest(good.image, hr_blend=2.0)])
    maps = predictor.predict_maps([good, MapRequest(good.image, hr_blend=2.0), "photo.jpg"], errors="skip")
    assert isinstance(maps[0], np.ndarray)
    assert isinstance(maps[1], ValueError) and "hr_blend" in str(maps[1])
    assert isinstance(maps[2], ValueError) and "PIL image" in str(maps[2])


def test_predict_torch_takes_a_normalised_batch(predictor: Predictor) -> None:
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    pred = predictor.predict_torch(x)
    assert pred.shape == (2, 1, 64, 96) and pred.dtype == torch.float32
    assert float(pred.min()) >= 0.0 and float(pred.max()) <= 1.0
    with torch.no_grad():
        np.testing.assert_allclose(pred.numpy(), predictor.model.predict(x).numpy(), atol=1e-6)


def test_an_empty_batch_gives_no_maps_and_runs_nothing(predictor: Predictor) -> None:
    assert predictor.predict_maps([]) == []
    maps = predictor.predict_torch(torch.zeros(0, 3, 64, 96))  # the network's reshapes refused it
    assert maps.shape == (0, 1, 64, 96) and maps.dtype == torch.float32


def test_warmup_runs_each_size_once(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, ...]] = []
    real = predictor.model.predict
    monkeypatch.setattr(predictor.model, "predict", lambda x, **kw: shapes.append(tuple(x.shape)) or real(x, **kw))
    predictor.warmup([(64, 64), (96, 128)])
    assert shapes == [(1, 3, 64, 64), (1, 3, 96, 128)]


def test_predict_torch_gives_an_ordinary_tensor_the_caller_may_change(predictor: Predictor) -> None:
    pred = predictor.predict_torch(torch.zeros(1, 3, 64, 64))
    pred.mul_(255)  # an inference tensor would refuse this outside inference mode
    assert float(pred.max()) <= 255.0


def test_bf16_on_a_cpu_without_native_bf16_runs_fp32_with_one_log_line(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Emulated bfloat16 is slower than float32 there, never faster: it is not what the user asked bf16 for.
    import logging

    from inspyrenet_lite import predictor as predictor_module

    monkeypatch.setattr(predictor_module, "cpu_has_bf16", lambda: False)
    image = photo(48, 40, 6)
    with caplog.at_level(logging.WARNING, logger="inspyrenet_lite"):
        fallback = Predictor(predictor.model, device="cpu", precision="bf16")
    notes = [r.getMessage() for r in caplog.records if "bf16" in r.getMessage()]
    assert len(notes) == 1 and "running in fp32" in notes[0]
    assert fallback.precision == "fp32"
    np.testing.assert_array_equal(
        fallback.predict_maps([image])[0], Predictor(predictor.model, device="cpu").predict_maps([image])[0]
    )
    monkeypatch.setattr(predictor_module, "cpu_has_bf16", lambda: True)
    assert Predictor(predictor.model, device="cpu", precision="bf16").precision == "bf16"
