"""`python space/bundle.py OUT` writes a folder that is a whole Hugging Face Space (issue 31).

The end-to-end case does what the Space builder does: `pip install -r
requirements.txt` with that file alone in an empty folder (the builder mounts it
before the rest of the Space is there), then `python app.py` in the folder. The
fresh venv sees this interpreter's packages, so torch and gradio are already
there and nothing is downloaded, but not the checkout's editable install; the
app runs with PYTHONPATH cleared, outside the checkout, and must import the
library from the folder. It serves the random full-size checkpoint of conftest.py
(INSPYRENET_LITE_CKPT) on a free loopback port.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import httpx
import packaging.requirements as requirements_lib
import pytest
from PIL import Image

from serving_helpers import free_port, photo, png_bytes

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "space"
BUNDLE = SPACE / "bundle.py"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
NAME, VERSION = PYPROJECT["project"]["name"], PYPROJECT["project"]["version"]
PACKAGE = NAME.replace("-", "_")
BUNDLE_TIMEOUT_S = 300
PIP_TIMEOUT_S = 300
START_TIMEOUT_S = 240
CALL_TIMEOUT_S = 120

if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("gradio", reason="needs the space extra: pip install -e '.[test,space,serve,video]'")


def run_bundle(out: Path, *, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BUNDLE), str(out)],
        cwd=cwd, capture_output=True, text=True, timeout=BUNDLE_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )


def front_matter(readme: Path) -> dict[str, str]:
    match = re.match(r"---\n(.*?)\n---\n", readme.read_text(encoding="utf-8"), re.S)
    assert match, f"{readme} must start with the Space's front matter"
    fields = {}
    for line in match.group(1).splitlines():
        key, _, value = line.partition(":")
        if value.strip():
            fields[key.strip()] = value.strip().strip("'\"")
    return fields


def requirements(path: Path) -> list:
    """The requirements of a requirements file, parsed by `packaging` as pip parses them."""
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [requirements_lib.Requirement(line) for line in lines if line]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Space written by the command, from a folder outside the checkout."""
    work = tmp_path_factory.mktemp("bundle")
    out = work / "space"
    done = run_bundle(out, cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


# --------------------------------------------------------------- the folder
def test_the_bundle_has_the_app_its_modules_and_the_examples(bundle: Path):
    expected = sorted(p.name for p in SPACE.glob("*.py") if p.name != "bundle.py")
    assert "app.py" in expected
    assert sorted(p.name for p in bundle.glob("*.py")) == expected
    for name in expected:
        assert (bundle / name).read_bytes() == (SPACE / name).read_bytes()
    shipped = sorted(p.name for p in (SPACE / "examples").iterdir())
    assert sorted(p.name for p in (bundle / "examples").iterdir()) == shipped
    assert "LICENSES.md" in shipped


def test_the_front_matter_is_a_gradio_space_on_the_pinned_gradio(bundle: Path):
    fields = front_matter(bundle / "README.md")
    assert fields["sdk"] == "gradio"
    assert (bundle / fields["app_file"]).is_file()
    gradio = [req for req in requirements(bundle / "requirements.txt") if req.name == "gradio"]
    extras = PYPROJECT["project"]["optional-dependencies"]
    space_extra = [requirements_lib.Requirement(line) for line in extras["space"]]
    pinned = [req for req in space_extra if req.name == "gradio"]
    assert pinned and gradio, "the space extra and the Space's requirements both name gradio"
    # The builder installs gradio==sdk_version together with requirements.txt: they must agree.
    for req in pinned + gradio:
        assert req.specifier.contains(fields["sdk_version"], prereleases=True), (str(req), fields["sdk_version"])
    assert fields["license"].upper() == PYPROJECT["project"]["license"].upper()
    ours = front_matter(SPACE / "README.md")
    assert {key: fields[key] for key in ours} == ours | {"sdk_version": fields["sdk_version"]}
    body = re.compile(r"\A---\n.*?\n---\n", re.S)
    assert body.sub("", (bundle / "README.md").read_text()) == body.sub("", (SPACE / "README.md").read_text())


def test_requirements_are_the_library_dependencies_and_its_extras_from_pyproject(bundle: Path):
    got = requirements(bundle / "requirements.txt")
    names = {req.name for req in got}
    assert NAME not in names, "the library is carried in the folder, not fetched from an index"
    project = PYPROJECT["project"]
    expected = list(project["dependencies"])
    for extra in ("space", "serve", "video"):  # what app.py and video_tab.py import
        expected += project["optional-dependencies"][extra]
    assert {str(req) for req in got} == {str(requirements_lib.Requirement(line)) for line in expected}
    # Nothing that resolves against the folder: the builder runs pip before the folder is there.
    assert not any(req.url for req in got)


def test_the_folder_carries_the_checkout_library_with_its_metadata(bundle: Path):
    """Every module of the checkout's package, byte for byte, and nothing else; the dist-info names
    this project at this version with its dependencies (what importlib.metadata reads at run time)."""
    source = REPO / PACKAGE
    modules = {str(p.relative_to(source)) for p in source.rglob("*.py") if "__pycache__" not in p.parts}
    carried = {str(p.relative_to(bundle / PACKAGE)) for p in (bundle / PACKAGE).rglob("*") if p.is_file()}
    assert carried == modules
    for name in modules:
        assert (bundle / PACKAGE / name).read_bytes() == (source / name).read_bytes(), name
    (info,) = bundle.glob("*.dist-info")
    assert info.name == f"{PACKAGE}-{VERSION}.dist-info"
    headers = (info / "METADATA").read_text().split("\n\n")[0].splitlines()
    assert f"Name: {NAME}" in headers and f"Version: {VERSION}" in headers
    requires = {str(requirements_lib.Requirement(line.partition(": ")[2])) for line in headers
                if line.startswith("Requires-Dist: ")}
    core = {str(requirements_lib.Requirement(line)) for line in PYPROJECT["project"]["dependencies"]}
    assert core <= requires


# ------------------------------------------------------------- bad requests
def test_a_folder_with_files_is_refused_and_kept(tmp_path: Path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    done = run_bundle(out, cwd=tmp_path)
    assert done.returncode == 1
    assert "not an empty folder" in done.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def _space_copy(tmp_path: Path, requirements_txt: str) -> Path:
    space = tmp_path / "space"
    shutil.copytree(SPACE, space, ignore=shutil.ignore_patterns("__pycache__", "examples"))
    (space / "requirements.txt").write_text(requirements_txt)
    return space


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"{NAME}[space]==0.0.1", "pins"),
        (f"{NAME}[spaceship]", "spaceship"),
        ("numpy", f"no line for {NAME}"),
    ],
)
def test_a_space_requirements_file_the_bundle_cannot_honour_is_refused(tmp_path: Path, line: str, message: str):
    sys.path.insert(0, str(SPACE))
    try:
        import bundle as bundle_module
    finally:
        sys.path.remove(str(SPACE))
    space = _space_copy(tmp_path, line + "\n")
    with pytest.raises(bundle_module.BundleError, match=re.escape(message)):
        bundle_module.write_bundle(tmp_path / "out", repo=REPO, space=space)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["space"], "a refused bundle leaves nothing behind"


# --------------------------------------------------- installed and started
def _clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "PYTHONSTARTUP"}}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1", **extra)
    return env


def make_venv_over_this_interpreter(venv: Path) -> Path:
    """A fresh venv that sees this interpreter's packages (torch, gradio...), so pip has nothing to fetch.

    ``--system-site-packages`` alone would show the base Python's packages, not those of the venv the
    tests may run in; a ``.pth`` file adds those. Plain path lines: the ``.pth`` files found there are
    not run, so the checkout's editable install is not importable from the new venv."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, timeout=PIP_TIMEOUT_S)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    ours = unique_paths([*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (purelib / "test-interpreter-packages.pth").write_text("".join(f"{path}\n" for path in ours))
    return venv / "bin" / "python"


def unique_paths(paths: list[str]) -> list[str]:
    return list(dict.fromkeys(str(Path(path).resolve()) for path in paths if Path(path).is_dir()))


def _wait_for_page(url: str, process: subprocess.Popen, log: Path) -> httpx.Response:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the bundled app exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            response = httpx.get(url, timeout=10)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-4000:]
    pytest.fail(f"the bundled app did not serve {url} in {START_TIMEOUT_S} s:\n{tail}")


def _wait_until_ready(base: str, process: subprocess.Popen, log: Path) -> None:
    """Until ``/v1/ready`` says the model is loaded (the app loads it in the background)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while httpx.get(f"{base}/v1/ready", timeout=10).status_code != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the bundled app's model did not load:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)


@pytest.mark.slow
def test_the_bundle_installs_like_the_builder_does_and_serves_its_page(
    bundle: Path, random_checkpoint: Path, tmp_path: Path
):
    venv = tmp_path / "venv"
    python = make_venv_over_this_interpreter(venv)
    # The builder mounts requirements.txt alone, before the Space's other files are there.
    mounted, workdir = tmp_path / "mounted", tmp_path / "workdir"
    mounted.mkdir()
    workdir.mkdir()
    shutil.copy2(bundle / "requirements.txt", mounted / "requirements.txt")
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-r", str(mounted / "requirements.txt")],
        cwd=workdir, env=_clean_env(), capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # The library that the app's folder gives Python is the folder's copy, found with its metadata.
    probe = subprocess.run(
        [str(python), "-B", "-c",
         "import json, os, sys, importlib.metadata as m, inspyrenet_lite as lib;"
         f"d = m.distribution({NAME!r});"
         "print(json.dumps([lib.__file__, os.path.abspath(d.locate_file('')), d.version, sys.prefix]))"],
        cwd=bundle, env=_clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    module_file, dist_root, version, prefix = json.loads(probe.stdout)
    assert Path(module_file).resolve() == (bundle / PACKAGE / "__init__.py").resolve()
    assert Path(dist_root).resolve() == bundle.resolve() and version == VERSION
    assert Path(prefix).resolve() == venv.resolve()

    assert not list(bundle.rglob("__pycache__")), "the folder is fresh before the app starts"
    port = free_port()
    log = tmp_path / "app.log"
    env = _clean_env(
        INSPYRENET_LITE_CKPT=str(random_checkpoint),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_SSR_MODE="False",
        GRADIO_TEMP_DIR=str(tmp_path / "gradio"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TMPDIR=str(tmp_path),
    )
    with open(log, "wb") as sink:
        process = subprocess.Popen([str(python), "app.py"], cwd=bundle, env=env, stdin=subprocess.DEVNULL,
                                   stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        page = _wait_for_page(f"{base}/", process, log)
        health = httpx.get(f"{base}/v1/health", timeout=30)
        _wait_until_ready(base, process, log)
        image = photo(96, 72)
        removed = httpx.post(f"{base}/v1/remove", content=png_bytes(image), timeout=CALL_TIMEOUT_S)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
    assert "<html" in page.text.lower() and "gradio" in page.text.lower()
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert removed.status_code == 200, removed.text[:500]
    cut = Image.open(io.BytesIO(removed.content))
    assert cut.format == "PNG" and cut.size == image.size
    # The running app compiled the folder's modules: it imported the library from there.
    compiled = {path.name.split(".")[0] for path in (bundle / PACKAGE).rglob("__pycache__/*.pyc")}
    assert {"__init__", "remover", "app"} <= compiled, sorted(compiled)
