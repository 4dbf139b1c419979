"""Sharing models on the Hub: save_pretrained / from_pretrained / push_to_hub.

Reduced models (tiny backbones, odd base sizes) keep this fast; the format is
the same for full-size ones. Hub downloads go to tests/fake_hub.py in a
subprocess (huggingface_hub reads HF_ENDPOINT at import); the upload is
checked by replacing huggingface_hub's HfApi with a recorder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub, closed_endpoint, run_python
from model_helpers import same_outputs
from safetensors import safe_open

from inspyrenet_lite import InSPyReNet
from inspyrenet_lite.checkpoint import load_checkpoint

REPO = "someone/tiny-inspyrenet"


def tiny(backbone: str, base_size: tuple[int, int]) -> InSPyReNet:
    torch.manual_seed(0)
    if backbone == "res2net50":
        args = {"layers": [1, 1, 1, 1]}
    else:
        args = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 2}
    return InSPyReNet(backbone, depth=8, base_size=base_size, backbone_args=args).eval()


@pytest.mark.parametrize(("backbone", "base_size"), [("res2net50", (64, 96)), ("swinb", (64, 64))])
def test_save_and_load_folder_round_trip(
    tmp_path: Path, backbone: str, base_size: tuple[int, int], current_umask: int
) -> None:
    model = tiny(backbone, base_size)
    model.save_pretrained(tmp_path, config={"trained_on": "my photos"})

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["backbone"] == backbone and config["depth"] == 8 and config["base_size"] == list(base_size)
    assert config["library_name"] == "inspyrenet-lite" and config["trained_on"] == "my photos"
    # The weights are in the authors' layout, with the architecture in the header.
    assert set(load_checkpoint(tmp_path / "model.safetensors")) == set(model.reference_state_dict())
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["backbone"] == backbone and meta["base_size"] == f"{base_size[0]}x{base_size[1]}"
    assert "InSPyReNet" in (tmp_path / "README.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~current_umask

    loaded = InSPyReNet.from_pretrained(tmp_path)
    assert (loaded.backbone_name, loaded.base_size, loaded.depth) == (backbone, base_size, 8)
    assert same_outputs(model, loaded)
    # Informational fields survive a second save.
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["trained_on"] == "my photos"


def test_folder_without_config_uses_the_weights_header(tmp_path: Path) -> None:
    model = tiny("swinb", (96, 64))
    model.save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    assert same_outputs(model, InSPyReNet.from_pretrained(tmp_path))


def test_folder_without_weights_says_so(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"backbone": "swinb", "depth": 64, "base_size": [384, 384]}))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        InSPyReNet.from_pretrained(tmp_path)


class _RecordingApi:
    """Stands in for huggingface_hub.HfApi: records what would be uploaded."""

    calls: list[tuple[str, dict]] = []
    uploaded: Path

    def __init__(self, token=None) -> None:
        self.token = token

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        _RecordingApi.calls.append(("create_repo", {"repo_id": repo_id, "private": private, "token": self.token}))

        class Url:
            pass

        url = Url()
        url.repo_id = repo_id
        return url

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, **kwargs):
        _RecordingApi.calls.append(("upload_folder", {"repo_id": repo_id, "commit_message": commit_message}))
        shutil.copytree(folder_path, _RecordingApi.uploaded)
        return f"https://huggingface.co/{repo_id}/commit/abc"


def test_push_to_hub_uploads_a_loadable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.hub_mixin

    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", _RecordingApi)
    _RecordingApi.calls = []
    _RecordingApi.uploaded = tmp_path / "uploaded"
    model = tiny("swinb", (64, 64))

    url = model.push_to_hub(REPO, private=True, token="hf_x", commit_message="fine-tuned", config={"trained_on": "A"})

    assert url.endswith("/commit/abc")
    assert _RecordingApi.calls == [
        ("create_repo", {"repo_id": REPO, "private": True, "token": "hf_x"}),
        ("upload_folder", {"repo_id": REPO, "commit_message": "fine-tuned"}),
    ]
    files = {p.name for p in _RecordingApi.uploaded.iterdir()}
    assert files == {"config.json", "model.safetensors", "README.md"}
    assert json.loads((_RecordingApi.uploaded / "config.json").read_text())["trained_on"] == "A"
    assert f'Remover(model="{REPO}")' in (_RecordingApi.uploaded / "README.md").read_text()
    assert same_outputs(model, InSPyReNet.from_pretrained(_RecordingApi.uploaded))


_LOAD = """
import json, torch
from inspyrenet_lite import InSPyReNet
m = InSPyReNet.from_pretrained({repo!r})
x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    y = m.predict(x)
print(json.dumps({{"base_size": list(m.base_size), "sum": float(y.double().sum())}}))
"""


def test_from_pretrained_downloads_from_the_hub_then_works_offline(tmp_path: Path) -> None:
    model = tiny("swinb", (64, 96))
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = float(model.predict(x).double().sum())

    env = {"HF_HUB_CACHE": str(tmp_path / "hub-cache")}
    with FakeHub(repo_id=REPO) as hub:
        for name in ("config.json", "model.safetensors"):
            hub.serve(name, folder / name)
        online = run_python(_LOAD.format(repo=REPO), {**env, **hub.env()})
        assert online.returncode == 0, online.stderr
        assert hub.count("hub") > 0
        hub.clear_requests()
        offline = run_python(_LOAD.format(repo=REPO), {**env, **hub.env(), "HF_HUB_OFFLINE": "1"})
        assert offline.returncode == 0, offline.stderr
        assert hub.count() == 0, "offline mode made a request"
    for run in (online, offline):
        out = json.loads(run.stdout.strip().splitlines()[-1])
        assert out["base_size"] == [64, 96]
        assert out["sum"] == pytest.approx(expected, rel=1e-6)


# -- failing fast and clearly; saying nothing about a folder without config.json (issue 18) -------

_TRY = """
import json, time
from inspyrenet_lite import InSPyReNet
started = time.monotonic()  # after the imports: only the loading is timed
try:
    InSPyReNet.from_pretrained({repo!r})
except Exception as exc:
    out = {{"error": type(exc).__name__, "message": str(exc)}}
else:
    out = {{"loaded": True}}
print(json.dumps({{**out, "seconds": time.monotonic() - started}}))
"""


def test_an_unreachable_hub_repo_fails_in_seconds_with_what_to_do(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    env = {**closed_endpoint(), "HF_HOME": str(tmp_path / "hf")}
    args = [str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--model", REPO]
    code = (
        "import sys, time\nimport inspyrenet_lite.remover\nfrom inspyrenet_lite.cli import main\n"
        f"started = time.monotonic()\nstatus = main({args!r})\n"
        "print(time.monotonic() - started)\nsys.exit(status)\n"
    )
    proc = run_python(code, env)
    seconds = float(proc.stdout.strip().splitlines()[-1])  # the run itself, imports aside
    assert proc.returncode == 2, proc.stderr
    # Before: five "Retrying in ..." lines (26 s), then a generic LocalEntryNotFoundError.
    assert seconds < 10, f"took {seconds:.1f} s"
    assert "Retrying" not in proc.stderr and "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if REPO in line]
    assert "cannot be reached" in line and "HF_HUB_OFFLINE" in line and "folder" in line


@pytest.mark.parametrize("case", ["offline, not cached", "no such repo"])
def test_a_hub_repo_that_cannot_be_had_says_why(tmp_path: Path, case: str) -> None:
    with FakeHub(repo_id="someone/other-model") as hub:
        env = {**hub.env(), "HF_HOME": str(tmp_path / "hf")}
        if case == "offline, not cached":
            env["HF_HUB_OFFLINE"] = "1"
        proc = run_python(_TRY.format(repo=REPO), env)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["error"] == "WeightsUnavailableError", out
        assert REPO in out["message"]
        if case == "offline, not cached":
            assert "HF_HUB_OFFLINE" in out["message"] and "hf download" in out["message"]
            assert hub.requests == []
        else:
            assert "no such repo" in out["message"] and "HF_TOKEN" in out["message"]


def test_a_cached_hub_repo_loads_in_seconds_while_the_hub_is_unreachable(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    tiny("swinb", (64, 64)).save_pretrained(folder)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub-cache")}
    with FakeHub(repo_id=REPO) as hub:
        for name in ("config.json", "model.safetensors"):
            hub.serve(name, folder / name)
        assert run_python(_TRY.format(repo=REPO), {**env, **hub.env()}).returncode == 0
        endpoint = hub.env()
    proc = run_python(_TRY.format(repo=REPO), {**env, **endpoint})  # the port is closed now; not offline
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.get("loaded"), (out, proc.stderr)
    assert out["seconds"] < 10 and "Retrying" not in proc.stderr, (out, proc.stderr)


def test_a_folder_without_config_loads_without_printing_anything(tmp_path: Path, images_dir: Path) -> None:
    folder = tmp_path / "model"
    tiny("swinb", (64, 64)).save_pretrained(folder)
    (folder / "config.json").unlink()
    # A fresh interpreter: the Hub client's own handler writes to the stderr it found at import.
    code = (
        "import sys\n"
        "from inspyrenet_lite import InSPyReNet\n"
        f"InSPyReNet.from_pretrained({str(folder)!r})\n"
        "from inspyrenet_lite.cli import main\n"
        f"sys.exit(main({[str(images_dir / 'cat.png'), '-o', str(tmp_path / 'out'), '--model', str(folder), '-q']!r}))\n"
    )
    proc = run_python(code, {})
    assert proc.returncode == 0, proc.stderr
    # Before: "config.json not found in <folder>" once from the library, once more from the CLI (-q or not).
    assert "config.json" not in proc.stdout + proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("text", "field"),
    [("[]", "JSON object"), ("null", "JSON object"), ("{", "not valid JSON"), ('{"depth": -3}', "'depth'"),
     ('{"base_size": [65, 64]}', "'base_size'"), ('{"backbone": "vit"}', "'backbone'"),
     ('{"backbone_args": [1]}', "'backbone_args'")],
)
def test_a_bad_config_json_is_one_clear_error_naming_the_file_and_field(tmp_path: Path, text: str, field: str, capsys) -> None:
    """Issue 18 item 5: no raw AttributeError/torch error, and no model that loads and then fails every image."""
    from inspyrenet_lite.cli import main
    from inspyrenet_lite.serialization import ConfigError

    tiny("swinb", (64, 64)).save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "config.json").write_text(text)
    with pytest.raises(ConfigError) as info:
        InSPyReNet.from_pretrained(tmp_path / "model")
    assert str(tmp_path / "model" / "config.json") in str(info.value) and field in str(info.value)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(photo)
    assert main([str(photo), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "model"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the model" in err and field in err and "Traceback" not in err
