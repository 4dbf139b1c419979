"""The registry of named models: every row builds the right network, with the authors' layout.

Shapes come from models built on the meta device (instant, no memory) and are
compared with the authors' key lists (tests/fixtures/key_lists.py: from their own package).
The expected rows are copied by hand from the model zoo table (TRAINING.md
section 4).
"""

from __future__ import annotations

import pytest
import torch

from fixtures.key_lists import authors_layout
from inspyrenet_lite.checkpoint import detect_backbone, to_reference_layout_shapes
from inspyrenet_lite.build import MODEL_CONFIGS, build_model
from inspyrenet_lite import InSPyReNet
from inspyrenet_lite.registry import MODELS, get_entry

# name: (authors' name, backbone, base size, Drive id, their inference: resize, pyramid blending)
ZOO = {
    "res2net50": ("InSPyReNet_Res2Net50", "res2net50", 384, "12moRuU8F0-xRvE16bVg6mkGWDuqYHJor", "static", False),
    "swinb": ("InSPyReNet_SwinB", "swinb", 384, "1k5hNJImgEgSmz-ZeJEEb_dVkrOnswVMq", "dynamic", True),
    "swinb-dh-lr": ("InSPyReNet_SwinB_DH_LR", "swinb", 384, "1nbs6Xa7NMtcikeHFtkQRVrsHbBRHtIqC", "dynamic", True),
    "swinb-hu-lr": ("InSPyReNet_SwinB_HU_LR", "swinb", 384, "1uLSIYXlRsZv4Ho0C-c87xKPhmF_b-Ll4", "dynamic", True),
    "swinb-dhu-lr": ("InSPyReNet_SwinB_DHU_LR", "swinb", 384, "14gRNwR7XwJ5oEcR4RWIVbYH3HEV6uBUq", "dynamic", True),
    "swinb-dh": ("InSPyReNet_SwinB_DH", "swinb", 1024, "1UBGFDUYZ9SysZr96dhsscZg7nDXt6IUD", "static", False),
    "swinb-hu": ("InSPyReNet_SwinB_HU", "swinb", 1024, "1HB02tiInEgo-pNzwqyvyV6eSN1Y2xPRJ", "static", False),
    "swinb-dis5k-lr": ("InSPyReNet_SwinB_DIS5K_LR", "swinb", 384, "1Sj7GZoocGMHyKNhFnQQc1FTs76ysJIX3", "dynamic", True),
    "swinb-dis5k": ("InSPyReNet_SwinB_DIS5K", "swinb", 1024, "1aCxHMbhvj8ah77jXVgqvqImQA_Y0G-Yg", "static", False),
    "plus-ultra-lr": ("Plus_Ultra_LR", "swinb", 384, "1iRX-0MVbUjvAVns5MtVdng6CQlGOIo3m", "dynamic", True),
    "plus-ultra": ("Plus_Ultra", "swinb", 1024, "13oBl5MTVcWER3YU4fSxW3ATlVfueFQPY", "dynamic", False),
}


@pytest.fixture(scope="module")
def reference_layouts() -> dict[str, dict[str, tuple[int, ...]]]:
    return {b: {key: shape for key, (shape, _dtype) in authors_layout(b).items()} for b in ("swinb", "res2net50")}


def test_every_model_of_the_zoo_is_registered_as_published() -> None:
    for name, (authors, backbone, base, drive_id, resize, pb) in ZOO.items():
        entry = get_entry(name)
        assert entry.authors_name == authors and entry.backbone == backbone, name
        assert entry.base_size == (base, base) and entry.gdrive_id == drive_id, name
        assert (entry.resize, entry.hr_blend > 0) == (resize, pb), name
        assert entry.md5 is None and entry.summary and entry.trained_on, name
    assert list(MODELS)[:3] == ["fast", "base", "base-nightly"]
    assert set(MODELS) == set(ZOO) | {"fast", "base", "base-nightly"}


def test_plus_ultra_models_say_they_saw_the_test_sets() -> None:
    for name in ("plus-ultra", "plus-ultra-lr"):
        assert MODELS[name].saw_test_sets and "benchmark" in MODELS[name].summary
    assert not any(MODELS[name].saw_test_sets for name in ZOO if not name.startswith("plus-ultra"))


@pytest.mark.parametrize("name", list(MODELS))
def test_every_entry_builds_its_model_with_the_authors_layout(name: str, reference_layouts) -> None:
    entry = MODELS[name]
    with torch.device("meta"):
        model = build_model(name)
    assert isinstance(model, InSPyReNet)
    assert (model.backbone_name, model.base_size) == (entry.backbone, entry.base_size)
    assert to_reference_layout_shapes(model) == reference_layouts[entry.backbone]
    # The SICA working sizes follow the base size.
    assert model.attention0.working_size == entry.base_size


@pytest.mark.parametrize("name", sorted(ZOO))
def test_each_zoo_name_builds_the_network_of_the_model_zoo_table(name: str, reference_layouts) -> None:
    """The built network (not the registry's own config) against the hand-copied zoo table."""
    _, backbone, base, *_ = ZOO[name]
    with torch.device("meta"):
        model = build_model(name)
    assert model.backbone_name == backbone and model.base_size == (base, base)
    assert model.attention0.working_size == (base, base)
    assert to_reference_layout_shapes(model) == reference_layouts[backbone]
    assert set(MODEL_CONFIGS) == set(MODELS)


def test_unknown_name_lists_the_registry() -> None:
    with pytest.raises(ValueError, match="swinb-dis5k"):
        get_entry("swinb-dis6k")


def test_backbone_is_detected_from_the_authors_keys(reference_layouts) -> None:
    for backbone, layout in reference_layouts.items():
        assert detect_backbone(layout) == backbone
    with pytest.raises(ValueError, match="backbone"):
        detect_backbone({"head.weight": None})
