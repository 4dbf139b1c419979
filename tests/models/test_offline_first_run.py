"""A first run without network gives up quickly and prints each warning once (issue 9, item 24).

The Hub and the release URL point at the fake hub after it has been stopped:
its port is closed, so every connection is refused, as on a machine without
network. Runs in subprocesses (huggingface_hub reads HF_ENDPOINT at import).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from fake_hub import FakeHub, run_python

_RESOLVE = """
import json
from inspyrenet_lite import weights
try:
    weights.resolve_checkpoint("fast")
except weights.WeightsUnavailableError as exc:
    print(json.dumps(exc.attempts))
"""


def _stopped_hub_env(tmp_path: Path) -> dict[str, str]:
    hub = FakeHub().start()
    env = hub.env()
    hub.stop()  # the port is closed now: connections are refused
    return {**env, "HF_HOME": str(tmp_path / "hf"), "INSPYRENET_LITE_CACHE": str(tmp_path / "own")}


def test_an_unreachable_hub_and_release_fail_within_seconds(tmp_path: Path):
    env = _stopped_hub_env(tmp_path)
    started = time.monotonic()
    proc = run_python(_RESOLVE, env, timeout=90)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    attempts = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    hub = next(why for source, why in attempts.items() if source.startswith("Hugging Face Hub http"))
    release = next(why for source, why in attempts.items() if source.startswith("GitHub release"))
    assert "cannot connect" in hub and "cannot connect" in release
    # Before: five Hub retries with back-off (1+2+4+8+8 s) on top of the start-up.
    assert seconds < 15, f"took {seconds:.1f} s"
    assert "Retrying" not in proc.stderr


_CLI = """
import sys, types
import huggingface_hub.utils.logging as hub_logging
from inspyrenet_lite.cli import remove

class Remover:  # stands in for the model: logs as the Hub client does when retrying, then fails
    def __init__(self, **kwargs):
        hub_logging.get_logger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        raise RuntimeError("no weights")

sys.modules["inspyrenet_lite.remover"] = types.SimpleNamespace(Remover=Remover)
sys.exit(remove.main([sys.argv[1], "-o", sys.argv[2]]))
"""


def test_the_cli_prints_a_hub_warning_once(tmp_path: Path):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    code = _CLI.replace("sys.argv[1]", repr(str(photo))).replace("sys.argv[2]", repr(str(tmp_path / "out")))
    proc = run_python(code, {"HF_HUB_OFFLINE": "1"}, timeout=90)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("Retrying in 1s") == 1, proc.stderr
    assert "no weights" in proc.stderr


_EACH_ENTRY_POINT = """
import sys
from inspyrenet_lite.cli import main
from inspyrenet_lite import Remover, WeightsUnavailableError

print("exit", main([sys.argv[1], "-o", sys.argv[2]]))
try:
    Remover(device="cpu")
except WeightsUnavailableError as exc:
    print(exc)
"""


def test_each_entry_point_names_its_own_way_to_a_local_checkpoint(tmp_path: Path):
    """Offline without cached weights: the CLI's error names --ckpt (and the variable), the Python
    API's names ckpt=; neither tells users of one about the other's spelling."""
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    out = tmp_path / "out"
    code = _EACH_ENTRY_POINT.replace("sys.argv[1]", repr(str(photo))).replace("sys.argv[2]", repr(str(out)))
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "INSPYRENET_LITE_CACHE": str(tmp_path / "own")}
    proc = run_python(code, env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cli_error, api_error = proc.stderr, proc.stdout
    assert "exit 2" in api_error
    assert "cannot load the model" in cli_error and "offline mode" in cli_error
    assert "--ckpt /path/to/" in cli_error and "INSPYRENET_LITE_CKPT=/path/to/" in cli_error
    assert "ckpt='" not in cli_error and "Remover(" not in cli_error
    assert "Remover(model='fast', ckpt='/path/to/" in api_error and "INSPYRENET_LITE_CKPT=/path/to/" in api_error
    assert "--ckpt" not in api_error



_OTHER_COMMANDS = """
import sys
from inspyrenet_lite.cli import main
for argv in (["export", "--model", "fast", "-o", sys.argv[1]], ["serve", "--model", "fast", "--port", "0"]):
    print("exit", main(argv))
    print("=== end of", argv[0], file=sys.stderr)
"""


def test_the_other_commands_name_ckpt_too(tmp_path: Path):
    """export and serve, offline without weights, name --ckpt as the default command does."""
    code = _OTHER_COMMANDS.replace("sys.argv[1]", repr(str(tmp_path / "model.onnx")))
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "INSPYRENET_LITE_CACHE": str(tmp_path / "own")}
    proc = run_python(code, env, timeout=120)
    assert proc.stdout.split() == ["exit", "2", "exit", "1"], (proc.stdout, proc.stderr[-2000:])
    export, serve = proc.stderr.split("=== end of export")
    for command, said in (("export", export), ("serve", serve)):
        assert f"inspyrenet-lite {command}" in said and "cannot load the model" in said, said[-2000:]
        assert "--ckpt /path/to/ckpt_fast.pth" in said and "Remover(" not in said, said[-2000:]
