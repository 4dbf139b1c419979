"""Write a folder that is a complete Hugging Face Space: ``python space/bundle.py OUT``.

The folder holds the app (every ``space/*.py`` but this file), its sample
photos, ``README.md`` with the Space's front matter, ``requirements.txt`` and
this library itself, built into a wheel by pip and unpacked beside the app
(``inspyrenet_lite/`` and its ``.dist-info``), so the Space runs this very
version of the library, which no package index needs to have.

The library travels unpacked rather than as a wheel named in
``requirements.txt`` because the Space builder installs the requirements
before the rest of the folder is there: it mounts ``requirements.txt``
alone, so a path to a file in the folder would not resolve. ``app.py``
runs from the folder, which Python puts first on ``sys.path``, so the
unpacked package is the one imported.

``requirements.txt`` is written from ``pyproject.toml``: the library's
dependencies plus those of the extras that ``space/requirements.txt`` names
on its line for this project (``inspyrenet-lite[serve,space,video]``); its
other lines are carried as they are. ``sdk_version`` is the gradio version
that the ``space`` extra pins, or, for a range, the installed one.
Upload the folder with ``hf upload OWNER/NAME OUT . --repo-type space``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

logger = logging.getLogger("inspyrenet_space.bundle")

SPACE_DIR = Path(__file__).resolve().parent
REPO_DIR = SPACE_DIR.parent
APP_FILE = "app.py"
#: Folders of space/ that the app reads at run time.
DATA_DIRS = ("examples",)
PIP_TIMEOUT_S = 600
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([^\]]*)\])?\s*(.*)$")
_FRONT_MATTER = re.compile(r"\A---\n(.*?\n)---\n", re.S)


class BundleError(RuntimeError):
    """The bundle cannot be written; the message says what to fix."""


@dataclass(frozen=True)
class Project:
    """What the bundle needs from ``pyproject.toml``."""

    name: str
    version: str
    dependencies: tuple[str, ...]
    extras: dict[str, tuple[str, ...]]
    licence: str | None

    @classmethod
    def read(cls, repo: Path) -> Project:
        try:
            data = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise BundleError(f"cannot read {repo / 'pyproject.toml'}: {err}") from err
        project = data.get("project", {})
        licence = project.get("license")
        if isinstance(licence, dict):  # the older table form {text = ...}
            licence = licence.get("text")
        return cls(
            name=project["name"],
            version=project["version"],
            dependencies=tuple(project.get("dependencies", ())),
            extras={key: tuple(value) for key, value in project.get("optional-dependencies", {}).items()},
            licence=licence,
        )


def canonical_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(line: str) -> tuple[str, list[str], str]:
    """``(name, extras, rest)`` of one requirement line such as ``gradio[oauth]==6.31.0``."""
    match = _REQUIREMENT.match(line)
    if not match:
        raise BundleError(f"not a requirement: {line!r}")
    name, extras, rest = match.groups()
    return name, [extra.strip() for extra in (extras or "").split(",") if extra.strip()], rest.strip()


def requirement_lines(text: str) -> list[str]:
    """The requirements of a requirements file, without comments and blank lines."""
    lines = (line.split(" #")[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def space_requirements(project: Project, template: str) -> list[str]:
    """The Space's requirements: the template's line for this project becomes the project's
    dependencies and those of the extras it names; the template's other lines stay."""
    own = canonical_name(project.name)
    ours: list[str] | None = None
    others: list[str] = []
    for line in requirement_lines(template):
        if line.startswith("-"):
            raise BundleError(
                f"space/requirements.txt: pip options such as {line!r} are not carried; name packages only"
            )
        name, extras, rest = split_requirement(line)
        if canonical_name(name) != own:
            others.append(line)
            continue
        if rest and not rest.startswith(";"):
            raise BundleError(
                f"space/requirements.txt pins {line!r}: the bundle carries version {project.version} itself; "
                f"write the line as {project.name}[{','.join(extras)}]"
            )
        unknown = [extra for extra in extras if extra not in project.extras]
        if unknown:
            raise BundleError(
                f"space/requirements.txt asks for extras {unknown} that pyproject.toml does not define "
                f"(it has {sorted(project.extras)})"
            )
        ours = list(project.dependencies)
        for extra in extras:
            ours.extend(project.extras[extra])
    if ours is None:
        raise BundleError(
            f"space/requirements.txt has no line for {project.name}: add one such as {project.name}[space]"
        )
    return unique(ours + others)


def unique(items: Iterable[str]) -> list[str]:
    """``items`` in order, each once."""
    return list(dict.fromkeys(items))


def gradio_version(requirements: list[str]) -> str:
    """The Space's ``sdk_version``: the exact pin of gradio, else the installed gradio if the
    requirements allow it."""
    parsed = [split_requirement(line) for line in requirements]
    specs = [rest for name, _, rest in parsed if canonical_name(name) == "gradio"]
    for spec in specs:
        exact = re.fullmatch(r"===?\s*([\w.+!-]+)", spec)
        if exact:
            return exact.group(1)
    try:
        installed = metadata.version("gradio")
    except metadata.PackageNotFoundError as err:
        raise BundleError(
            "the Space needs an sdk_version: pin gradio exactly in the space extra (gradio==X.Y.Z) "
            "or install the gradio version to deploy"
        ) from err
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:
        return installed
    for spec in specs:
        if spec and not SpecifierSet(spec.split(";")[0]).contains(installed, prereleases=True):
            raise BundleError(
                f"the installed gradio {installed} is outside the requirement gradio{spec}: install one inside it"
            )
    return installed


def hub_licence(spdx: str | None) -> str | None:
    """The Hub's licence identifier for an SPDX expression (``MIT`` -> ``mit``)."""
    return spdx.strip().lower() if spdx and re.fullmatch(r"[\w.+-]+", spdx.strip()) else None


def front_matter(readme: str, fields: dict[str, str]) -> str:
    """``readme`` with these front-matter fields set (replaced where present, else added)."""
    match = _FRONT_MATTER.match(readme)
    if not match:
        raise BundleError("space/README.md must start with the Space's front matter between '---' lines")
    lines = match.group(1).splitlines()
    for key, value in fields.items():
        line = f"{key}: {value}"
        at = [i for i, old in enumerate(lines) if re.match(rf"{re.escape(key)}\s*:", old)]
        if at:
            lines[at[0]] = line
        else:
            lines.append(line)
    return "---\n" + "\n".join(lines) + "\n---\n" + readme[match.end():]


def project_sources(repo: Path, into: Path) -> Path:
    """Copy what the wheel is built from (pyproject.toml, its readme, the packages) into ``into``,
    so a build leaves no ``build/`` in the checkout and cannot pick up its stale files."""
    data = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    into.mkdir(parents=True)
    shutil.copy2(repo / "pyproject.toml", into)
    readme = data.get("project", {}).get("readme")
    if isinstance(readme, str):
        shutil.copy2(repo / readme, into / readme)
    patterns = data.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("include", ["*"])
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pattern in patterns:
        for package in sorted(repo.glob(pattern.split(".")[0])):
            if (package / "__init__.py").is_file() and not (into / package.name).exists():
                shutil.copytree(package, into / package.name, ignore=ignore)
    return into


def build_wheel(repo: Path, project: Project, work: Path) -> Path:
    """Build the library's wheel with pip (from a copy of its sources) into ``work/wheels``."""
    sources = project_sources(repo, work / "src")
    wheels = work / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
               "--wheel-dir", str(wheels), str(sources)]
    logger.info("building the %s wheel", project.name)
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.CalledProcessError as err:
        output = (err.stdout or "")[-2000:] + (err.stderr or "")[-4000:]
        raise BundleError(f"pip could not build the wheel:\n{output}") from err
    except subprocess.TimeoutExpired as err:
        raise BundleError(f"pip did not build the wheel within {PIP_TIMEOUT_S} s") from err
    prefix = f"{canonical_name(project.name).replace('-', '_')}-{project.version}-"
    found = sorted(wheels.glob("*.whl"))
    if len(found) != 1 or not found[0].name.startswith(prefix):
        raise BundleError(f"expected one wheel {prefix}*.whl from pip, got {[path.name for path in found]}")
    return found[0]


def unpack_wheel(wheel: Path, into: Path) -> None:
    """Unpack a pure-Python wheel as pip would install it into site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        data = [name for name in names if name.split("/")[0].endswith(".data")]
        if data:
            raise BundleError(f"{wheel.name} has files outside the package ({data[:3]}...): it cannot run unpacked")
        archive.extractall(into)


def copy_space(space: Path, into: Path) -> list[str]:
    """Copy the app's modules (every space/*.py but this script) and its data folders."""
    modules = sorted(path for path in space.glob("*.py") if path.name != Path(__file__).name)
    if not any(path.name == APP_FILE for path in modules):
        raise BundleError(f"{space / APP_FILE} is missing")
    for path in modules:
        shutil.copy2(path, into / path.name)
    for name in DATA_DIRS:
        if (space / name).is_dir():
            shutil.copytree(space / name, into / name, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    return [path.name for path in modules]


def write_bundle(out: Path, repo: Path = REPO_DIR, space: Path = SPACE_DIR) -> Path:
    """Write the Space into ``out`` (a new or empty folder) and return it.

    Everything is made in a sibling folder first and moved into place at the
    end, so a failure leaves no half-written Space.
    """
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} exists and is not an empty folder: choose a new folder or empty it")
    if out == space or space in out.parents or out in space.parents:
        raise BundleError(f"{out} overlaps the space/ folder it is made from: choose a folder elsewhere")
    project = Project.read(repo)
    requirements = space_requirements(project, (space / "requirements.txt").read_text(encoding="utf-8"))
    fields = {"sdk": "gradio", "sdk_version": gradio_version(requirements), "app_file": APP_FILE}
    licence = hub_licence(project.licence)
    if licence:
        fields["license"] = licence
    readme = front_matter((space / "README.md").read_text(encoding="utf-8"), fields)

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="inspyrenet-bundle-") as work:
            wheel = build_wheel(repo, project, Path(work))
            unpack_wheel(wheel, stage)
        modules = copy_space(space, stage)
        (stage / "README.md").write_text(readme, encoding="utf-8")
        header = (
            f"# The Space's Python packages besides {project.name} {project.version} itself, which is unpacked\n"
            "# in this folder: its dependencies and those of its extras, from its pyproject.toml.\n"
        )
        (stage / "requirements.txt").write_text(header + "\n".join(requirements) + "\n", encoding="utf-8")
        os.chmod(stage, 0o777 & ~current_umask())
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    logger.info("wrote the Space to %s (%s, gradio %s)", out, ", ".join(modules), fields["sdk_version"])
    return out


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a folder that is a complete Hugging Face Space (app, README front matter, "
        "requirements and this library).",
        epilog="Then: hf upload OWNER/NAME OUT . --repo-type space",
    )
    parser.add_argument("out", type=Path, help="the folder to write (new, or empty)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        write_bundle(args.out)
    except BundleError as err:
        logger.error("bundle: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
