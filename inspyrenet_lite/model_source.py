"""The one loader: from what the user named to a loaded model.

A source is a registry name (``"fast"``, ``"swinb-dis5k"``...), a Hub repo
(``"owner/name"`` or ``"hf-hub:owner/name"``), a ``save_pretrained`` folder, or
a checkpoint file (``.pth`` / ``.safetensors`` in the authors' layout). The
backbone of a file is read from its keys; its base size from ``base_size``,
the file's metadata, or the registry row named, and a file whose base size
cannot be known is refused, never guessed. :class:`~inspyrenet_lite.Remover`,
the :class:`~inspyrenet_lite.predictor.Predictor`, ``train --init``, ``eval``,
``export`` and the Space all load through :func:`load`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from .registry import MODELS, ModelEntry

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "fast"


@dataclass
class LoadedModel:
    """A model ready to run, with where it came from."""

    model: Any  # InSPyReNet
    name: str  # registry name, Hub repo id or folder
    entry: ModelEntry | None  # the registry row, if the name is one
    source: str  # the checkpoint file, Hub repo or folder it was loaded from
    weights_file: str | None = None  # the local file the weights were read from (cache keys hash it)


HUB_PREFIX = "hf-hub:"
#: Suffixes of checkpoint files a source may name directly.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


def is_checkpoint_file(name: str) -> bool:
    """True if ``name`` is an existing file (a checkpoint given by path)."""
    return name not in MODELS and os.path.isfile(name)


def is_hub_or_folder(name: str) -> bool:
    """True if ``name`` is not a registry name or file but a folder or an ``owner/repo`` Hub id."""
    if name.startswith(HUB_PREFIX):
        return True
    return name not in MODELS and not os.path.isfile(name) and (os.path.isdir(name) or name.count("/") == 1)


def _local_path(name: str, given_as_path: bool) -> str:
    """``name`` with ``~`` expanded; FileNotFoundError for a name that can only be a local path (``/``,
    ``./``, ``../``, ``~``, a trailing separator, a ``pathlib.Path``) and does not exist, rather than
    trying it as a Hub repo."""
    looks_local = given_as_path or name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or name.endswith(("/", os.sep))
    if not looks_local:
        return name
    path = os.path.expanduser(name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model folder or file {name!r} does not exist; check the path")
    return path


def pick_name(model: str | os.PathLike[str] | None, mode: str | None) -> str:
    """The model name from ``model=`` (a path object too) or its alias ``mode=`` (the default if neither)."""
    given_as_path = isinstance(model, os.PathLike)
    if given_as_path:
        model = os.fspath(model)
    if model is not None and mode is not None and model != mode:
        raise ValueError(f"model={model!r} and mode={mode!r} disagree; mode is an alias of model, give one")
    name = model if model is not None else mode if mode is not None else DEFAULT_MODEL
    if not isinstance(name, str) or not name:
        raise ValueError(f"model must be a registry name, a Hub repo 'owner/name' or a folder, got {name!r}")
    name = _local_path(name, given_as_path)
    missing_file = not name.startswith(HUB_PREFIX) and not os.path.exists(name)
    if name not in MODELS and missing_file and name.lower().endswith(CHECKPOINT_SUFFIXES):
        # "ckpts/model.pth" would otherwise look like a Hub repo "owner/name".
        raise FileNotFoundError(f"checkpoint file {name!r} does not exist; check the path")
    if name not in MODELS and not is_hub_or_folder(name) and not is_checkpoint_file(name):
        from .registry import get_entry

        get_entry(name)  # a typo is refused before anything is loaded; the error lists the names
    return name


def load(
    name: str | os.PathLike[str],
    ckpt: str | os.PathLike[str] | None = None,
    base_size: tuple[int, int] | int | None = None,
    device: torch.device | str = "cpu",
) -> LoadedModel:
    """Load ``name`` (a registry name, Hub repo, folder or checkpoint file; see the module docstring) onto ``device``.

    ``ckpt`` (or ``$INSPYRENET_LITE_CKPT``) replaces a registry model's download
    by a local file; ``base_size`` (H, W) sets the base size of a file that
    does not say it. Raises ValueError (with what to pass) when a file's base
    size cannot be known.
    """
    from .weights import ENV_CKPT, resolve_checkpoint

    given_as_path = isinstance(name, os.PathLike)
    name = _local_path(os.fspath(name), given_as_path)
    if is_checkpoint_file(name) or is_hub_or_folder(name):
        if ckpt is not None:
            raise ValueError(
                f"ckpt= replaces the download of a registry model, and {name!r} is not one (it is a checkpoint "
                "file, a folder or a Hub repo): give the file as the model, or a registry name with ckpt="
            )
        if os.environ.get(ENV_CKPT, "").strip():
            logger.info("%s applies to registry names only, not to %s", ENV_CKPT, name)
        if is_checkpoint_file(name):
            return LoadedModel(load_file(name, None, base_size, device), name, None, name, name)
        from .hub import InSPyReNet

        repo = name[len(HUB_PREFIX) :] if name.startswith(HUB_PREFIX) else name
        overrides = {"base_size": _pair(base_size)} if base_size is not None else {}
        model = InSPyReNet.from_pretrained(repo, device=device, **overrides)
        return LoadedModel(model, name, None, repo, getattr(model, "weights_file", None))
    from .registry import get_entry

    entry = get_entry(name)  # raises for an unknown name, listing the names
    path = resolve_checkpoint(name, ckpt)
    model = load_file(path, entry, base_size, device, named=name != DEFAULT_MODEL)
    return LoadedModel(model, name, entry, str(path), str(path))


def load_file(
    path: str | os.PathLike[str],
    entry: ModelEntry | None = None,
    base_size: tuple[int, int] | int | None = None,
    device: torch.device | str = "cpu",
    named: bool = False,
):
    """Build the model of a checkpoint file: backbone from its keys, base size from
    ``base_size``, the file's metadata, or ``entry`` (the registry row named)."""
    from .build import from_config
    from .checkpoint import detect_backbone, load_checkpoint
    from .serialization import check_config, config_from_metadata, read_safetensors_metadata

    state_dict = load_checkpoint(path)
    try:
        backbone = detect_backbone(state_dict)
    except ValueError as exc:
        raise ValueError(f"checkpoint {str(path)!r}: {exc}") from exc
    arch = check_config(config_from_metadata(read_safetensors_metadata(path)), source=f"{path} (its metadata)")
    arch["backbone"] = backbone
    if base_size is not None:
        arch["base_size"] = _pair(base_size)
    elif "base_size" not in arch:
        arch["base_size"] = _base_size_from_registry(path, backbone, entry, named)
    if entry is not None and entry.backbone != backbone:
        logger.info("%s holds a %s model, not the %s of %r: building a %s", path, backbone, entry.backbone, entry.name, backbone)
    try:
        return from_config(arch, state_dict, device=device)
    except ValueError as exc:
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit a {backbone} InSPyReNet at base size {arch['base_size']}: {exc}"
        ) from exc


def _base_size_from_registry(path: Any, backbone: str, entry: ModelEntry | None, named: bool) -> tuple[int, int]:
    if entry is not None and entry.backbone == backbone:
        return entry.base_size
    sizes = {e.base_size for e in MODELS.values() if e.backbone == backbone}
    if len(sizes) == 1:
        return sizes.pop()
    raise ValueError(
        f"{path} holds a {backbone} checkpoint but does not say its base size, and "
        + (f"the model named ({entry.name}) is a {entry.backbone}" if entry and named else "no model was named")
        + f"; {backbone} models exist at {', '.join('x'.join(map(str, s)) for s in sorted(sizes))}. "
        "Pass base_size=(H, W) (CLI: --base-size) or the registry name it came from (model=...)."
    )


def _pair(size: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"base_size must be positive multiples of 32, got {size!r}")
    return h, w
