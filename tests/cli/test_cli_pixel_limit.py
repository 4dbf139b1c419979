"""The CLI's --max-pixels is the only pixel limit, and 0 lifts it (issue 9, item 21).

The model is replaced by a stand-in that records the limit it is given and
decodes the input with that limit, as Remover does (the decoding itself is
tested in test_image_load_edges.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from fake_hub import run_python
from PIL import Image

_CLI = """
import json, sys, types
from PIL import Image
from inspyrenet_lite.cli import remove
from inspyrenet_lite.image_io import load_image

Image.MAX_IMAGE_PIXELS = 1_000  # Pillow refuses above 2000 pixels; the photo has 6000
seen = []

class Remover:
    def __init__(self, max_pixels, **kwargs):
        seen.append(max_pixels)
        self.max_pixels = max_pixels

    def process(self, path, **kwargs):
        return load_image(path, max_pixels=self.max_pixels).rgb

sys.modules["inspyrenet_lite.remover"] = types.SimpleNamespace(Remover=Remover)
status = remove.main(ARGS)
print(json.dumps({"status": status, "seen": seen, "pillow": Image.MAX_IMAGE_PIXELS}))
"""


def _run(tmp_path: Path, *extra: str) -> tuple[dict, str]:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (100, 60), (10, 200, 30)).save(photo)
    args = [str(photo), "-o", str(tmp_path / "out"), "-q", *extra]
    proc = run_python(_CLI.replace("ARGS", repr(args)), {"HF_HUB_OFFLINE": "1"}, timeout=90)
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_max_pixels_0_lifts_every_limit_pillows_included(tmp_path: Path):
    result, stderr = _run(tmp_path, "--max-pixels", "0")
    assert result == {"status": 0, "seen": [None], "pillow": None}, stderr  # no limit asked: Pillow's lifted too
    assert (tmp_path / "out" / "photo.png").is_file()


def test_a_max_pixels_above_pillows_guard_is_the_one_that_applies(tmp_path: Path):
    result, stderr = _run(tmp_path, "--max-pixels", "6000")
    assert result["status"] == 0 and result["seen"] == [6000], stderr
    result, stderr = _run(tmp_path, "--max-pixels", "5999")
    assert result["status"] == 1
    assert "above the limit of 5999" in stderr and "--max-pixels" in stderr and "0 for no limit" in stderr
    assert "MAX_IMAGE_PIXELS" not in stderr
