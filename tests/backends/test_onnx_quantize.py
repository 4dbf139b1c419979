"""precision="int8": ONNX Runtime's graph with the linear layers in int8, made once, cached, checked.

Outside truths: ONNX Runtime running the files, the graph's own nodes (read
back with onnx) against the model's ``nn.Linear`` layers, and PyTorch's
float32 maps. Its quality on a trained model is held in test_training_learns.py.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from inspyrenet_lite.backends import TorchBackend, create_backend
from inspyrenet_lite.backends import ort as ort_module
from inspyrenet_lite.backends.onnx_export import OnnxVerificationError
from inspyrenet_lite.backends.ort import OrtBackend
from inspyrenet_lite.predictor import Predictor
from inspyrenet_lite.training import TrainConfig
from parity_cases import build_case_model, case_io, manifest, parity_dir

CASE = "swin_small_lr"


def _weights() -> Path:
    return parity_dir() / manifest()["cases"][CASE]["weights"]


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return build_case_model(CASE)


@pytest.fixture(scope="module")
def int8_cache(model, swin_graph_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder after one int8 backend's first use, made from the float32 graph cached there
    (the path with no float32 graph yet is test_training_learns.py's int8 test)."""
    cache = tmp_path_factory.mktemp("int8-cache")
    for path in swin_graph_cache.glob("*.onnx*"):
        shutil.copy(path, cache / path.name)
    with torch.inference_mode():
        OrtBackend(model, _weights(), cache_dir=cache, precision="int8").predict(case_io(CASE)["input.square"])
    return cache


def _graphs(cache: Path) -> dict[str, Path]:
    return {("int8" if ".int8-" in p.name else "fp32"): p for p in cache.glob("*.onnx")}


class _Counting:
    """Wraps a function in a module and counts its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module, name: str) -> None:
        self.calls = 0
        self.wrapped = getattr(module, name)
        monkeypatch.setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.wrapped(*args, **kwargs)


def test_int8_quantises_exactly_the_swin_linear_layers_and_caches_both_graphs(model, int8_cache):
    graphs = _graphs(int8_cache)
    assert set(graphs) == {"fp32", "int8"}
    for path in graphs.values():
        assert (path.parent / (path.name + ".sha256")).is_file()
    nodes = onnx.load(graphs["int8"], load_external_data=False).graph.node
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert linears > 0
    assert sum(n.op_type == "MatMulInteger" for n in nodes) == linears  # every linear layer, nothing else
    assert not any(n.op_type == "ConvInteger" for n in nodes)  # convolutions stay float32
    assert graphs["int8"].stat().st_size < graphs["fp32"].stat().st_size


@torch.inference_mode()
def test_a_second_int8_backend_opens_the_cache_and_fp32_reuses_its_float_graph(
    model, int8_cache, monkeypatch: pytest.MonkeyPatch
):
    from inspyrenet_lite.backends import onnx_quantize

    exports = _Counting(monkeypatch, ort_module, "export_onnx")
    quantisations = _Counting(monkeypatch, onnx_quantize, "quantize_int8")
    x = case_io(CASE)["input.square"]
    int8 = OrtBackend(model, _weights(), cache_dir=int8_cache, precision="int8")
    fp32 = OrtBackend(model, _weights(), cache_dir=int8_cache)
    fp32_map, int8_map = fp32.predict(x), int8.predict(x)
    assert exports.calls == 0 and quantisations.calls == 0
    assert (fp32_map - model.predict(x)).abs().max() <= 2.5e-4  # test_onnx.py's bound for these models
    assert not torch.equal(int8_map, fp32_map)  # the int8 graph, not the float one, answered


def test_a_broken_int8_graph_is_refused_and_nothing_is_cached(model, int8_cache, tmp_path: Path, monkeypatch):
    """The check against PyTorch catches a quantiser that returns a wrong graph (here: the inverted map)."""
    import onnxruntime.quantization

    fp32 = _graphs(int8_cache)["fp32"]
    for path in (fp32, fp32.parent / (fp32.name + ".sha256")):
        shutil.copy(path, tmp_path / path.name)

    def inverting_quantiser(source: onnx.ModelProto, target, **kwargs):
        graph = onnx.ModelProto()
        graph.CopyFrom(source)
        out = graph.graph.output[0].name
        for node in graph.graph.node:
            node.output[:] = [f"{o}_raw" if o == out else o for o in node.output]
        graph.graph.initializer.append(onnx.numpy_helper.from_array(torch.ones(()).numpy(), "one"))
        graph.graph.node.append(onnx.helper.make_node("Sub", ["one", f"{out}_raw"], [out]))
        onnx.save(graph, target)

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", inverting_quantiser)
    strict = OrtBackend(model, _weights(), cache_dir=tmp_path, precision="int8")
    with pytest.raises(OnnxVerificationError, match="int8 graph's maps differ"):
        strict.session((384, 384))
    assert set(_graphs(tmp_path)) == {"fp32"}  # no int8 graph, no temporary
    assert len(list(tmp_path.iterdir())) == 2


def test_int8_is_refused_where_it_cannot_run_with_what_to_do(model, monkeypatch: pytest.MonkeyPatch):
    cpu = torch.device("cpu")
    for kwargs in ({"name": "torch"}, {"name": "auto", "compile": True}):
        with pytest.raises(ValueError, match=r"int8.*backend='onnxruntime'.*--backend onnxruntime"):
            create_backend(model=model, device=cpu, precision="int8", checkpoint_path=_weights(), **kwargs)
    with pytest.raises(ValueError, match=r"int8.*on the CPU, not on cuda.*precision='fp32'"):
        Predictor(model, device="cuda", precision="int8", backend="onnxruntime")  # refused before moving
    with pytest.raises(ValueError, match=r"int8.*no checkpoint file"):
        create_backend("onnxruntime", model, device=cpu, precision="int8", checkpoint_path=None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.raises(ValueError, match=r"int8.*inspyrenet-lite\[onnx\]"):
        create_backend("auto", model, device=cpu, precision="int8", checkpoint_path=_weights())


def test_auto_takes_onnxruntime_for_int8_without_measuring(model, monkeypatch: pytest.MonkeyPatch):
    from inspyrenet_lite.backends import matmul_speed

    def slow_onnxruntime() -> float:
        return 1.0  # fp32 would stay in torch

    monkeypatch.setattr(matmul_speed, "onnxruntime_speedup", slow_onnxruntime)
    backend = create_backend("auto", model, device=torch.device("cpu"), precision="int8", checkpoint_path=_weights())
    assert isinstance(backend, OrtBackend) and backend.precision == "int8"
    assert backend.strict  # a failed int8 graph raises; it never runs float32 under the name int8
    fp32 = create_backend("auto", model, device=torch.device("cpu"), precision="fp32", checkpoint_path=_weights())
    assert isinstance(fp32, TorchBackend)


def test_training_refuses_int8_and_says_what_to_train_in():
    with pytest.raises(ValueError, match=r"inference only.*'fp32'.*'bf16'"):
        TrainConfig(precision="int8").check()


def test_int8_from_a_cached_float_graph_exports_nothing_and_stays_out_of_the_users_logging(
    model, int8_cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
):
    """ONNX Runtime's quantiser logs through the root logger (and would configure logging for the whole
    process where nothing has yet); an unconfigured root logger stays so, and nothing reaches stderr."""
    fp32 = _graphs(int8_cache)["fp32"]
    for path in (fp32, fp32.parent / (fp32.name + ".sha256")):
        shutil.copy(path, tmp_path / path.name)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a script that never configured logging
    monkeypatch.setattr(root, "level", logging.WARNING)
    exports = _Counting(monkeypatch, ort_module, "export_onnx")
    OrtBackend(model, _weights(), cache_dir=tmp_path, precision="int8").session((384, 384))
    assert exports.calls == 0
    assert root.handlers == [] and root.filters == []
    assert capfd.readouterr().err == ""
    graphs = _graphs(tmp_path)
    assert set(graphs) == {"fp32", "int8"}
    # nothing else: no scratch copy of the graph, no temporary
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        name for path in graphs.values() for name in (path.name, path.name + ".sha256")
    )

def test_int8_says_when_a_models_defaults_keep_every_pass_in_float32(model, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger="inspyrenet_lite")
    Predictor(model, device="cpu", precision="int8", backend="onnxruntime", weights_file=_weights())
    assert not caplog.records  # static, no blending: the int8 graph runs every pass
    for options in ({"resize": "dynamic"}, {"hr_blend": 1.0}):
        caplog.clear()
        Predictor(model, device="cpu", precision="int8", backend="onnxruntime", weights_file=_weights(), **options)
        (record,) = caplog.records
        assert "float32" in record.getMessage() and "resize='static' and hr_blend=0" in record.getMessage()


def test_export_command_writes_an_int8_graph_to_ship(model, tmp_path: Path, capsys, current_umask: int):
    import stat

    from inspyrenet_lite.backends.onnx_export import load_session, probe_input, run_session
    from inspyrenet_lite.backends.onnx_quantize import INT8_MEAN_ATOL
    from inspyrenet_lite.cli import main as cli_main

    folder = tmp_path / "my-model"
    model.save_pretrained(folder)
    out = tmp_path / "deploy" / "model-int8.onnx"
    # --no-verify skips the float32 graph's check (test_onnx.py covers it); the int8 check always runs
    args = ["export", "--model", str(folder), "--precision", "int8", "--no-verify", "--size", "128", "128"]
    assert cli_main([*args, "-o", str(out)]) == 0
    assert "int8" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["model-int8.onnx"]  # no float32 graph left behind
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~current_umask
    graph = onnx.load(str(out))
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert sum(n.op_type == "MatMulInteger" for n in graph.graph.node) == linears  # quantised as the backend does
    assert "min-max" in {p.key: p.value for p in graph.metadata_props}["inspyrenet_lite.output"]
    x = probe_input((128, 128), batch=1, seed=5)  # not the seed the export's own check used
    with torch.inference_mode():
        expected = model.predict(x)
    got = run_session(load_session(out), x)
    assert got.shape == (1, 1, 128, 128) and (got - expected).abs().mean() <= INT8_MEAN_ATOL
