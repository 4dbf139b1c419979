"""The ONNX export and the ONNX Runtime backend: PyTorch's maps, exported once, cached, verified.

Outside truths: ONNX Runtime running the exported file, PyTorch's own maps,
and the authors' maps in the parity fixtures.
"""

from __future__ import annotations

import logging
import stat
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from inspyrenet_lite.backends import TorchBackend, create_backend
from inspyrenet_lite.backends import ort as ort_module
from inspyrenet_lite.backends.onnx_export import (
    GRAPH_INPUT,
    GRAPH_OUTPUT,
    OnnxVerificationError,
    export_onnx,
    load_session,
    run_session,
)
from inspyrenet_lite.backends.ort import OrtBackend
from inspyrenet_lite.cli import main as cli_main
from parity_cases import build_case_model, case_io, manifest, parity_dir

MAP_ATOL = 1e-4  # issue 10: ORT's maps within 1e-4 of PyTorch's (the full-size model, on photos)
# The reduced parity models (random weights) sit at float32's noise floor: PyTorch's own
# map of swin_small_lr's square input moves 7.1e-5 between a batch of one and of two,
# and ORT is 1.0e-4 from it (measured). Their bound is a sixteenth of a grey level.
REDUCED_ATOL = 2.5e-4
GREY_LEVEL = 1 / 255
# Passes whose finest pyramid level is ill-conditioned (see test_parity.py): PyTorch's
# own map moves more between 1 and 2 threads (res2net square 6.5e-4, swin_small_hr
# 1.2e-2, measured) than ORT differs from it, so they are compared pixel-wise. The
# Res2Net's non-square pass joins them on an AVX2-only CPU (ORT 3.0e-4 from PyTorch on
# the generated fixtures; the authors' own code moves its d1 by 2e-2 between CPUs).
ILL_CONDITIONED = {("res2net_small_lr", "square"), ("res2net_small_lr", "nonsquare"), ("swin_small_hr", "square")}


class _CountingExport:
    """Wraps export_onnx in the backend module and counts the exports."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        monkeypatch.setattr(ort_module, "export_onnx", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return export_onnx(*args, **kwargs)


@pytest.fixture(scope="module")
def swin_cache(swin_graph_cache: Path) -> Path:
    """A cache folder holding the reduced Swin model's graph, exported (and verified) by the backend's first use
    (conftest.py; test_onnx_quantize.py makes its int8 graphs from the same float32 graph)."""
    return swin_graph_cache


def _weights(case: str) -> Path:
    return parity_dir() / manifest()["cases"][case]["weights"]


def _graph(cache: Path) -> Path:
    (path,) = cache.glob("*.onnx")
    return path


def _assert_maps_agree(got: torch.Tensor, expected: torch.Tensor, ill_conditioned: bool, what: str) -> None:
    err = (got - expected).abs()
    if ill_conditioned:
        assert (err <= GREY_LEVEL).float().mean().item() >= 0.999, f"{what}: max {err.max().item():.3g}"
    else:
        assert err.max().item() <= REDUCED_ATOL, f"{what}: max {err.max().item():.3g}"


@torch.inference_mode()
def test_reduced_swin_graph_gives_pytorch_and_reference_maps_for_a_batch(swin_case, swin_cache):
    model, io = swin_case
    path = _graph(swin_cache)
    assert "384x384" in path.name and (path.parent / (path.name + ".sha256")).is_file()
    session = load_session(path)
    assert [i.name for i in session.get_inputs()] == [GRAPH_INPUT]
    assert [o.name for o in session.get_outputs()] == [GRAPH_OUTPUT]
    batch = torch.cat([io["input.square"], io["input.lr"]])  # the fixtures' two 384x384 inputs
    got = run_session(session, batch)
    assert got.shape == (2, 1, 384, 384)
    for i in range(2):
        _assert_maps_agree(got[i], model.predict(batch[i : i + 1])[0], False, f"image {i}")
        _assert_maps_agree(got[i : i + 1], run_session(session, batch[i : i + 1]), False, f"image {i} alone")
    # The authors' map (test_parity.py holds PyTorch to 1e-3 of it).
    assert (got[:1] - io["square.pred"]).abs().max().item() <= 1e-3


@pytest.mark.parametrize(
    "case,tag",
    [("swin_small_lr", "nonsquare"), ("res2net_small_lr", "nonsquare"), ("res2net_small_lr", "square"),
     ("swin_small_hr", "square")],
)
@torch.inference_mode()
def test_reduced_models_export_at_every_fixture_size(case: str, tag: str, tmp_path: Path):
    model, io = build_case_model(case), case_io(case)
    x = io[f"input.{tag}"]
    size = tuple(x.shape[-2:])
    path = export_onnx(model, tmp_path / "model.onnx", size=size, verify=False)  # checked here, by the test
    got = run_session(load_session(path), x)
    ill = (case, tag) in ILL_CONDITIONED
    _assert_maps_agree(got, model.predict(x), ill, f"{case}/{tag} vs PyTorch")
    reference = io[f"{tag}.pred"]
    if case == "swin_small_hr":
        _assert_maps_agree(got, reference, True, f"{case}/{tag} vs the authors")
    else:
        assert (got - reference).abs().max().item() <= 1e-3


@torch.inference_mode()
def test_a_cache_hit_makes_no_export_and_a_corrupt_cache_file_is_rebuilt(
    swin_case, swin_cache, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    model, io = swin_case
    x = io["input.square"]
    expected = model.predict(x)
    exports = _CountingExport(monkeypatch)

    hit = OrtBackend(model, _weights("swin_small_lr"), cache_dir=swin_cache)
    assert (hit.predict(x) - expected).abs().max() <= REDUCED_ATOL
    assert exports.calls == 0

    path = _graph(swin_cache)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # zeroed weights: ORT would load it and answer wrongly
    path.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="inspyrenet_lite")
    rebuilt = OrtBackend(model, _weights("swin_small_lr"), cache_dir=swin_cache)
    assert (rebuilt.predict(x) - expected).abs().max() <= REDUCED_ATOL
    assert exports.calls == 1
    assert any("rebuilding the cached ONNX graph" in r.getMessage() for r in caplog.records)
    assert _graph(swin_cache) == path and path.read_bytes() != bytes(data)


def test_the_cache_is_keyed_by_checkpoint_size_and_versions(swin_case, swin_cache):
    import onnxruntime

    import inspyrenet_lite

    model, _ = swin_case
    name = OrtBackend(model, _weights("swin_small_lr"), cache_dir=swin_cache).cache_path((384, 384)).name
    other = OrtBackend(model, _weights("res2net_small_lr"), cache_dir=swin_cache).cache_path((384, 384)).name
    assert name != other
    assert "384x384" in name and torch.__version__ in name and onnxruntime.__version__ in name
    assert inspyrenet_lite.__version__ in name


def test_the_default_cache_is_the_weights_cache_not_the_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("INSPYRENET_LITE_ONNX_DIR", raising=False)
    monkeypatch.setenv("INSPYRENET_LITE_CACHE", str(tmp_path / "weights"))
    assert ort_module.default_cache_dir() == tmp_path / "weights" / "onnx"
    monkeypatch.setenv("INSPYRENET_LITE_ONNX_DIR", str(tmp_path / "graphs"))
    assert ort_module.default_cache_dir() == tmp_path / "graphs"


def test_export_refuses_a_graph_that_disagrees_with_pytorch(swin_case, tmp_path: Path):
    """A model that behaves differently while traced (as the row bands once did) is refused."""
    model, _ = swin_case

    def traced_only_offset(module, inputs, output):
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            features, logits = output
            return features, logits + 0.5 * torch.sin(logits)
        return output

    handle = model.attention0.register_forward_hook(traced_only_offset)
    model.train()  # e.g. an export in the middle of fine-tuning
    try:
        with pytest.raises(OnnxVerificationError, match="differ from PyTorch"):
            export_onnx(model, tmp_path / "bad.onnx")
        assert model.training  # left as it came
    finally:
        handle.remove()
        model.eval()
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


def test_a_failed_export_is_not_retried_on_every_image(swin_case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model, io = swin_case
    calls = []

    def failing_export(*args, **kwargs):
        calls.append(1)
        raise OnnxVerificationError("the ONNX graph's maps differ from PyTorch's")

    monkeypatch.setattr(ort_module, "export_onnx", failing_export)
    strict = OrtBackend(model, _weights("swin_small_lr"), cache_dir=tmp_path)
    for _ in range(3):
        with pytest.raises(OnnxVerificationError):
            strict.predict(io["input.square"])
    lenient = OrtBackend(model, _weights("swin_small_lr"), cache_dir=tmp_path, strict=False)
    with torch.inference_mode():
        for _ in range(2):
            # The lenient backend's fallback gives the authors' map (not just whatever the model returns).
            assert (lenient.predict(io["input.square"]) - io["square.pred"]).abs().max().item() <= 1e-3
    assert len(calls) == 2  # one per backend


@torch.inference_mode()
def test_passes_onnx_does_not_cover_run_in_pytorch_and_say_why_once(
    swin_case, swin_cache, caplog: pytest.LogCaptureFixture
):
    model, io = swin_case
    backend = OrtBackend(model, _weights("swin_small_lr"), cache_dir=swin_cache)
    caplog.set_level(logging.INFO, logger="inspyrenet_lite")
    for _ in range(2):
        blended = backend.predict(io["input.hr"], x_lr=io["input.lr"], hr_blend=1.0)
        assert torch.equal(blended, model.predict(io["input.hr"], x_lr=io["input.lr"], hr_blend=1.0))
        other = backend.predict(io["input.nonsquare"])  # not the base size: dynamic resizing
        assert torch.equal(other, model.predict(io["input.nonsquare"]))
    reasons = [r.getMessage() for r in caplog.records if r.name.startswith("inspyrenet_lite.backends")]
    assert len(reasons) == 2 and "pyramid blending" in reasons[0] and "320x480" in reasons[1]
    assert backend._sessions == {}  # nothing was exported for them


def test_auto_without_onnxruntime_uses_torch_with_one_log_line(
    random_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from inspyrenet_lite.remover import Remover

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    caplog.set_level(logging.INFO, logger="inspyrenet_lite.backends")
    remover = Remover(mode="fast", device="cpu", ckpt=random_checkpoint, backend="auto")
    assert isinstance(remover.backend, TorchBackend)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("inspyrenet_lite.backends")]
    assert len(lines) == 1 and "onnxruntime is not installed" in lines[0] and "[onnx]" in lines[0]
    with pytest.raises(ValueError, match=r"inspyrenet-lite\[onnx\]"):
        create_backend("onnxruntime", remover.model, device=torch.device("cpu"), precision="fp32",
                       checkpoint_path=random_checkpoint)


@pytest.mark.parametrize("speedup,chosen", [(1.02, "torch"), (2.1, "onnxruntime")])
def test_auto_takes_onnxruntime_only_where_its_matrix_products_are_faster(
    swin_case, speedup: float, chosen: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from inspyrenet_lite.backends import matmul_speed

    model, _ = swin_case
    monkeypatch.setattr(matmul_speed, "onnxruntime_speedup", lambda threads=None: speedup)
    caplog.set_level(logging.INFO, logger="inspyrenet_lite.backends")
    backend = create_backend("auto", model, device=torch.device("cpu"), precision="fp32",
                             checkpoint_path=_weights("swin_small_lr"))
    assert backend.name == chosen
    (line,) = [r.getMessage() for r in caplog.records if r.name.startswith("inspyrenet_lite.backends")]
    assert f"{speedup:.2f}x" in line and chosen in line
    forced = create_backend("onnxruntime", model, device=torch.device("cpu"), precision="fp32",
                            checkpoint_path=_weights("swin_small_lr"))
    assert forced.name == "onnxruntime"  # asked for by name, it is used whatever the CPU


def test_auto_falls_back_to_torch_when_the_speed_probe_fails(
    swin_case, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from inspyrenet_lite.backends import matmul_speed

    def broken(threads=None):
        raise RuntimeError("no CPU info")

    monkeypatch.setattr(matmul_speed, "onnxruntime_speedup", broken)
    caplog.set_level(logging.INFO, logger="inspyrenet_lite.backends")
    backend = create_backend("auto", swin_case[0], device=torch.device("cpu"), precision="fp32",
                             checkpoint_path=_weights("swin_small_lr"))
    assert backend.name == "torch"
    assert any("could not be measured" in r.getMessage() for r in caplog.records)


def test_the_matrix_product_probe_measures_both_runtimes():
    from inspyrenet_lite.backends.matmul_speed import matmul_gflops

    small = (256, 128, 256)
    for runtime in ("torch", "onnxruntime"):
        assert 0.1 < matmul_gflops(runtime, threads=1, repeats=2, shape=small) < 1e5
    with pytest.raises(ValueError, match="runtime"):
        matmul_gflops("openvino", shape=small)


@torch.inference_mode()
def test_export_command_writes_a_verified_documented_graph_of_a_saved_model(
    swin_case, tmp_path: Path, capsys: pytest.CaptureFixture, current_umask: int
):
    model, io = swin_case
    folder = tmp_path / "my-model"
    model.save_pretrained(folder)  # a fine-tuned model as users keep it
    out = tmp_path / "deploy" / "model.onnx"
    out.parent.mkdir()
    assert cli_main(["export", "--format", "onnx", "--model", str(folder), "-o", str(out)]) == 0
    assert "verified against PyTorch" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~current_umask
    graph = onnx.load(str(out))
    meta = {p.key: p.value for p in graph.metadata_props}
    assert "0.485" in meta["inspyrenet_lite.input"] and "min-max" in meta["inspyrenet_lite.output"]
    session = load_session(out)
    (inp,) = session.get_inputs()
    assert inp.name == GRAPH_INPUT and inp.shape[1:] == [3, 384, 384] and not isinstance(inp.shape[0], int)
    x = io["input.square"]
    _assert_maps_agree(run_session(session, x), model.predict(x), False, "exported graph")

    # A check that cannot pass refuses the graph: exit 1, the reason, nothing written.
    refused = tmp_path / "deploy" / "strict.onnx"
    assert cli_main(["export", "--model", str(folder), "-o", str(refused), "--atol", "1e-12"]) == 1
    assert "differ from PyTorch" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]

    # The backend keys its cache on the folder's weights file (exported on first use, not here).
    from inspyrenet_lite.remover import Remover

    saved = Remover(model=str(folder), device="cpu", backend="onnxruntime")
    assert saved.backend.checkpoint_path == folder / "model.safetensors"
    assert "384x384" in saved.backend.cache_path((384, 384)).name


def test_the_cli_backend_says_it_exports_once_and_gives_the_torch_maps(
    swin_case, images_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    model, _ = swin_case
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    monkeypatch.setenv("INSPYRENET_LITE_ONNX_DIR", str(tmp_path / "graphs"))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(images_dir / "coffee.png").convert("RGB").resize((200, 150)).save(photos / "coffee.png")
    common = [str(photos), "--model", str(folder), "--device", "cpu", "--type", "map", "-q"]
    assert cli_main([*common, "-o", str(tmp_path / "torch")]) == 0
    # The warning is logged (the command prints warnings; pytest's log capture takes them here).
    caplog.set_level(logging.WARNING, logger="inspyrenet_lite")
    caplog.clear()
    assert cli_main([*common, "-o", str(tmp_path / "ort"), "--backend", "onnxruntime"]) == 0
    assert "exporting the network to ONNX" in caplog.text
    assert len(list((tmp_path / "graphs").glob("*.onnx"))) == 1
    caplog.clear()
    assert cli_main([*common, "-o", str(tmp_path / "again"), "--backend", "onnxruntime"]) == 0
    assert "exporting" not in caplog.text  # the cached graph
    expected = np.asarray(Image.open(tmp_path / "torch" / "coffee.png"), dtype=np.int16)
    for run in ("ort", "again"):
        got = np.asarray(Image.open(tmp_path / run / "coffee.png"), dtype=np.int16)
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1


def test_export_command_refuses_bad_arguments_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture):
    import subprocess

    from inspyrenet_lite.backends import onnx_export
    from inspyrenet_lite.cli import export as export_cli

    assert export_cli.EXPORTERS == onnx_export.EXPORTERS
    code = "import sys\nfrom inspyrenet_lite.cli import export\nexport.build_parser().format_help()\nprint('torch' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"  # --help stays instant
    with pytest.raises(SystemExit):
        cli_main(["export", "--size", "100", "384"])
    assert "multiple of 32" in capsys.readouterr().err
    assert cli_main(["export", "--model", "no-such-model", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "Unknown model" in capsys.readouterr().err
    assert cli_main(["export", "--model", "fast", "-o", str(tmp_path)]) == 2  # before any download
    assert "is a folder" in capsys.readouterr().err
    assert cli_main(["export", "--ckpt", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_full_size_fast_model_in_onnxruntime_gives_pytorch_maps_on_photos(
    random_checkpoint: Path, remover, images_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from inspyrenet_lite.remover import Remover

    monkeypatch.setenv("INSPYRENET_LITE_ONNX_DIR", str(tmp_path))
    fast = Remover(mode="fast", device="cpu", ckpt=random_checkpoint, backend="onnxruntime")
    photos = [Image.open(images_dir / name).convert("RGB") for name in ("coffee.png", "astronaut.png")]
    maps = fast.process(photos, type="map", batch_size=2)  # one batch of two
    assert len(list(tmp_path.glob("*.onnx"))) == 1
    for photo, got in zip(photos, maps, strict=True):
        assert np.abs(fast.predict(photo) - remover.predict(photo)).max() <= MAP_ATOL
        grey = np.asarray(remover.process(photo, type="map"), dtype=np.int16)
        assert np.abs(np.asarray(got, dtype=np.int16) - grey).max() <= 1


@torch.inference_mode()
def test_onednn_linear_is_as_close_to_float64_as_the_blas_path(monkeypatch: pytest.MonkeyPatch):
    from inspyrenet_lite.modeling import backbones

    monkeypatch.setattr(backbones, "_ONEDNN_LINEAR", torch.backends.mkldnn.is_available())
    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 1536)
    x = torch.randn(4, 576, 512)
    assert backbones._onednn_linear_applies(layer, x) == torch.backends.mkldnn.is_available()
    exact = torch.nn.functional.linear(x.double(), layer.weight.double(), layer.bias.double())
    blas_error = (layer(x).double() - exact).abs().max()
    ours = backbones._linear(layer, x)
    assert ours.shape == (4, 576, 1536)
    assert (ours.double() - exact).abs().max() <= 4 * blas_error + 1e-6


# -- told before the export; auto never slower; a cache path that is a file (issue 18) -------------


class _StopBeforeExport(Exception):
    pass


@pytest.mark.parametrize("asked", [True, False])
def test_the_user_is_warned_how_long_the_export_takes_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, asked: bool
):
    seen_at_export: list[list[logging.LogRecord]] = []

    def export(*args, **kwargs):
        seen_at_export.append(list(caplog.records))
        raise _StopBeforeExport

    monkeypatch.setattr(ort_module, "export_onnx", export)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    backend = OrtBackend(torch.nn.Identity(), weights, strict=True, cache_dir=tmp_path / "graphs")
    backend.strict = asked  # asked for by name (strict), or chosen by auto
    caplog.set_level(logging.WARNING, logger="inspyrenet_lite")
    with pytest.raises(_StopBeforeExport):
        backend._open_or_export((384, 384))
    (records,) = seen_at_export
    (warning,) = [r for r in records if r.levelno == logging.WARNING and r.name.startswith("inspyrenet_lite")]
    text = warning.getMessage()
    assert "exporting the network to ONNX" in text and "384x384" in text
    assert "minute" in text and "memory" in text and str(tmp_path / "graphs") in text  # how long, what it costs
    if asked:
        assert "Intel" in text and "no faster" in text and "auto" in text  # why it may not pay, what to use


@pytest.mark.parametrize("speedup", [1.49, 1.0, 0.6, float("nan")])
def test_auto_never_takes_onnxruntime_where_it_measures_no_clearly_faster(
    swin_case, speedup: float, monkeypatch: pytest.MonkeyPatch
):
    from inspyrenet_lite.backends import matmul_speed

    monkeypatch.setattr(matmul_speed, "onnxruntime_speedup", lambda threads=None: speedup)
    backend = create_backend("auto", swin_case[0], device=torch.device("cpu"), precision="fp32",
                             checkpoint_path=_weights("swin_small_lr"))
    assert backend.name == "torch"


def test_an_onnx_cache_dir_that_is_a_file_is_refused_with_what_to_do(
    swin_case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    from inspyrenet_lite.backends import matmul_speed

    not_a_folder = tmp_path / "graphs"
    not_a_folder.write_text("a file")
    monkeypatch.setenv("INSPYRENET_LITE_ONNX_DIR", str(not_a_folder))
    model = swin_case[0]
    kwargs = {"device": torch.device("cpu"), "precision": "fp32", "checkpoint_path": _weights("swin_small_lr")}
    with pytest.raises(ValueError) as info:
        create_backend("onnxruntime", model, **kwargs)
    message = str(info.value)
    assert "INSPYRENET_LITE_ONNX_DIR" in message and "is a file, not a folder" in message and "Errno" not in message
    monkeypatch.setattr(matmul_speed, "onnxruntime_speedup", lambda threads=None: 3.0)
    assert create_backend("auto", model, **kwargs).name == "torch"  # auto falls back instead
    monkeypatch.setenv("INSPYRENET_LITE_ONNX_DIR", str(not_a_folder / "sub"))  # below a file
    with pytest.raises(ValueError, match="is a file, not a folder"):
        create_backend("onnxruntime", model, **kwargs)

    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30)).save(photo)
    capsys.readouterr()
    args = [str(photo), "-o", str(tmp_path / "out"), "--model", str(folder), "--backend", "onnxruntime", "-q"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "INSPYRENET_LITE_ONNX_DIR" in err and "Errno" not in err
    assert not not_a_folder.is_dir()


def test_the_command_prints_the_export_warning_before_exporting(swin_case, tmp_path: Path):
    from fake_hub import run_python

    folder = tmp_path / "saved"
    swin_case[0].save_pretrained(folder)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30)).save(photo)
    args = [str(photo), "-o", str(tmp_path / "out"), "--model", str(folder), "--backend", "onnxruntime", "-q"]
    code = (
        "import sys\nfrom inspyrenet_lite.backends import ort\n"
        "def export(*a, **k):\n    raise RuntimeError('stopped here by the test')\n"
        "ort.export_onnx = export\nfrom inspyrenet_lite.cli import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    proc = run_python(code, {"INSPYRENET_LITE_ONNX_DIR": str(tmp_path / "graphs")})
    assert proc.returncode == 2, proc.stderr
    warned = proc.stderr.find("exporting the network to ONNX")
    assert 0 <= warned < proc.stderr.find("stopped here by the test"), proc.stderr
    assert proc.stderr.count("exporting the network to ONNX") == 1 and "minute" in proc.stderr


def test_autos_speed_probe_never_changes_torchs_thread_count(monkeypatch: pytest.MonkeyPatch):
    """torch's thread count is process-wide: the auto probe must not set it, even to the same value (issue 17)."""
    from inspyrenet_lite.backends import matmul_speed

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    speedup = matmul_speed.onnxruntime_speedup(repeats=1)
    assert speedup > 0 and calls == []
