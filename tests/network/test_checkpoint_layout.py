"""Full-size models export exactly the authors' keys and shapes, and checkpoint files round-trip."""

from __future__ import annotations

import pickle

import pytest
import torch

from fixtures.key_lists import authors_layout
from inspyrenet_lite.checkpoint import convert_checkpoint, load_checkpoint, save_checkpoint
from inspyrenet_lite.build import build_model


@pytest.fixture(scope="module", params=[("fast", "swinb"), ("res2net50", "res2net50")], ids=["swinb", "res2net50"])
def full_model(request):
    name, table = request.param
    return build_model(name), table


def test_full_size_model_exports_the_authors_layout(full_model):
    model, table = full_model
    expected = authors_layout(table)
    exported = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.reference_state_dict().items()}
    assert sorted(set(expected) - set(exported)) == []
    assert sorted(set(exported) - set(expected)) == []
    assert {k: v for k, v in exported.items() if v != expected[k]} == {}


def test_reference_state_dict_loads_back_into_a_fresh_model(full_model):
    model, _ = full_model
    sd = model.reference_state_dict()
    twin = build_model("fast" if model.backbone_name == "swinb" else "res2net50")
    twin.load_reference_state_dict(sd)
    for key, value in twin.reference_state_dict().items():
        assert torch.equal(value, sd[key]), key


def test_mismatched_checkpoint_is_refused_with_the_offending_keys(full_model):
    model, _ = full_model
    sd = model.reference_state_dict()
    first = next(iter(sd))
    del sd[first]
    sd["decoder.bogus.weight"] = torch.zeros(1)
    sd["decoder.conv1.conv.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError) as info:
        model.load_reference_state_dict(sd)
    message = str(info.value)
    assert first in message and "decoder.bogus.weight" in message and "decoder.conv1.conv.weight" in message


def test_error_names_at_most_ten_keys():
    model = build_model("res2net50")
    sd = {f"junk.{i}": torch.zeros(1) for i in range(25)} | model.reference_state_dict()
    with pytest.raises(ValueError, match=r"and 15 more"):
        model.load_reference_state_dict(sd)


@pytest.fixture(scope="module")
def small_state_dict():
    from parity_cases import build_case_model

    return build_case_model("swin_small_lr").reference_state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_files_round_trip(tmp_path, small_state_dict, suffix):
    path = save_checkpoint(small_state_dict, tmp_path / f"ckpt{suffix}")
    loaded = load_checkpoint(path)
    assert loaded.keys() == small_state_dict.keys()
    assert all(torch.equal(loaded[k], small_state_dict[k]) for k in loaded)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left behind


def test_convert_pth_to_safetensors_and_back(tmp_path, small_state_dict):
    pth = save_checkpoint(small_state_dict, tmp_path / "a.pth")
    st = convert_checkpoint(pth, tmp_path / "b.safetensors")
    back = convert_checkpoint(st, tmp_path / "c.pth")
    loaded = load_checkpoint(back)
    assert all(torch.equal(loaded[k], small_state_dict[k]) for k in small_state_dict)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_pth_loading_never_unpickles_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(ValueError, match="evil.pth"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", pickle.dumps([1, 2, 3])])
def test_corrupt_checkpoint_files_raise_value_error_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="broken.pth"):
        load_checkpoint(path)


def test_missing_and_unknown_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pth")
    odd = tmp_path / "weights.onnx"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported"):
        load_checkpoint(odd)


def test_load_model_builds_straight_from_a_state_dict(full_model):
    from inspyrenet_lite.build import model_from_state_dict

    model, _ = full_model
    sd = model.reference_state_dict()
    name = "fast" if model.backbone_name == "swinb" else "res2net50"
    loaded = model_from_state_dict(name, sd)
    assert not loaded.training
    out = loaded.reference_state_dict()
    assert out.keys() == sd.keys()
    # derived buffers (Swin relative position index) are rebuilt, not left on the meta device
    assert all(torch.equal(out[k], sd[k]) for k in sd)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(loaded.predict(x), model.eval().predict(x), atol=0, rtol=0)
