"""A bad option is refused with the same words by Python, the command line and HTTP (issue 32).

The rules live in :mod:`inspyrenet_lite.checks` and :mod:`inspyrenet_lite.options`;
each entry point only turns the ``ValueError`` into its own kind of error (an
exception, a usage error with exit status 2, a 422 naming the field).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_helpers import BoxPredictor, photo, png_bytes

from inspyrenet_lite import pipeline
from inspyrenet_lite.cli import main as cli_main
from inspyrenet_lite.options import OutputOptions
from inspyrenet_lite.serving.app import create_app
from inspyrenet_lite.serving.settings import ServeSettings

# (python keyword options, CLI arguments, HTTP fields, the words all three must say)
CASES = [
    ({"threshold": 1.5}, ["--threshold", "1.5"], {"threshold": "1.5"}, "threshold must be in [0, 1], got 1.5"),
    ({"hr_blend": -0.5}, ["--hr-blend=-0.5"], {"hr_blend": "-0.5"}, "hr_blend must be in [0, 1], got -0.5"),
    ({"format": "webp", "quality": 0}, ["--format", "webp", "--quality", "0"], {"format": "webp", "quality": "0"},
     "quality must be an integer in 1..100, got 0"),
    ({"format": "gif"}, ["--format", "gif"], {"format": "gif"},
     "format must be one of png, webp, jpg, jpeg, bmp, tiff, got 'gif'"),
    ({"format": "jpg"}, ["--format", "jpg"], {"format": "jpg"}, "format jpg cannot store transparency"),
    ({"format": "png", "quality": 90}, ["--quality", "90"], {"quality": "90"},
     "quality applies to jpg and webp; format png is always lossless"),
]


def python_message(options: dict, tiny_remover) -> str:
    """What the Python API raises: options of the result go to Remover.process, those of the file to
    OutputOptions (what pipeline.encode and the job runners are given)."""
    image = photo(40, 30)
    with pytest.raises(ValueError) as raised:
        if set(options) <= {"threshold", "hr_blend"}:
            tiny_remover.process(image, **options)
        else:
            OutputOptions(**options)
    return str(raised.value)


def cli_message(arguments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    source = tmp_path / "in.png"
    photo(40, 30).save(source)
    with pytest.raises(SystemExit) as stopped:
        cli_main([str(source), "-o", str(tmp_path / "out"), *arguments])
    assert stopped.value.code == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(BoxPredictor(), ServeSettings())) as test_client:
        yield test_client


@pytest.mark.parametrize(("python", "cli", "http", "words"), CASES, ids=[case[3][:28] for case in CASES])
def test_one_rule_one_message_everywhere(python, cli, http, words, tmp_path, capsys, client, tiny_remover) -> None:
    said_in_python = python_message(python, tiny_remover)
    said_by_cli = cli_message(cli, tmp_path, capsys)
    answer = client.post("/v1/remove", files={"image": ("in.png", png_bytes(photo(40, 30)))}, data=http)
    assert answer.status_code == 422
    said_over_http = answer.json()["error"]["message"]
    for said in (said_in_python, said_by_cli, said_over_http):
        assert words in said
    assert answer.json()["error"]["field"] == words.split(" ", 1)[0]  # the option the message is about


def test_encoding_refuses_what_the_options_refuse() -> None:
    image = photo(8, 8)
    with pytest.raises(ValueError, match="format must be one of"):
        pipeline.encode(image, "gif")
    with pytest.raises(ValueError, match=r"quality must be an integer in 1\.\.100, got 0"):
        pipeline.encode(image, "webp", 0)
