"""How a model's architecture is written down: config.json, safetensors metadata, "HxW" base sizes.

Below :mod:`inspyrenet_lite.modeling`'s users and :mod:`inspyrenet_lite.hub`;
no model code here. Every config.json is read through :func:`read_config_file`,
which validates each architecture field and names the file and the field in
one error (:class:`ConfigError`) instead of letting a bad value reach the network.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .constants import STRIDE

logger = logging.getLogger(__name__)

BACKBONES = ("swinb", "res2net50")
#: config.json fields that describe the architecture (the rest is information).
ARCH_FIELDS = ("backbone", "depth", "base_size", "backbone_args")


class ConfigError(ValueError):
    """A model's config.json (or metadata) is unusable; the message names the file and the field."""


def encode_base_size(base_size: tuple[int, int]) -> str:
    """(H, W) -> "HxW", as shown to people and kept in safetensors metadata."""
    return f"{int(base_size[0])}x{int(base_size[1])}"


def decode_base_size(text: str) -> tuple[int, int]:
    """ "HxW" (or "N") -> (H, W); ValueError if it is neither."""
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        raise ValueError(f"base size {text!r} is not of the form 'HxW' (e.g. '384x384')")
    return values[0], values[1]


def architecture_config(model: Any) -> dict[str, Any]:
    """The config.json fields that rebuild ``model``'s architecture."""
    config: dict[str, Any] = {
        "backbone": model.backbone_name,
        "depth": int(model.depth),
        "base_size": [int(model.base_size[0]), int(model.base_size[1])],
    }
    backbone_args = getattr(model, "backbone_args", None)
    if backbone_args:
        config["backbone_args"] = json.loads(json.dumps(dict(backbone_args)))
    return config


def safetensors_metadata(config: Mapping[str, Any]) -> dict[str, str]:
    """The safetensors header metadata for a model with this config (strings only)."""
    return {
        "format": "pt",
        "backbone": str(config["backbone"]),
        "base_size": encode_base_size(config["base_size"]),
        "depth": str(config["depth"]),
        "config": json.dumps({k: config[k] for k in ARCH_FIELDS if k in config}, sort_keys=True),
    }


def config_from_metadata(metadata: Mapping[str, str] | None) -> dict[str, Any]:
    """Architecture fields found in a safetensors header (possibly none)."""
    if not metadata:
        return {}
    if "config" in metadata:
        try:
            config = json.loads(metadata["config"])
            if isinstance(config, dict):
                return {k: v for k, v in config.items() if k in ARCH_FIELDS}
        except ValueError:
            pass
    out: dict[str, Any] = {}
    if "backbone" in metadata:
        out["backbone"] = metadata["backbone"]
    if "base_size" in metadata:
        out["base_size"] = metadata["base_size"]  # "HxW": check_config decodes it, naming the field if bad
    if "depth" in metadata and str(metadata["depth"]).isdigit():
        out["depth"] = int(metadata["depth"])
    return out


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors file's header ({} if none or not safetensors)."""
    if Path(path).suffix.lower() != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # corrupt header: the loader reports it properly
        logger.debug("could not read safetensors metadata of %s: %s", path, exc)
        return {}


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model folder's config.json as a dict whose architecture fields are checked.

    Raises :class:`ConfigError` naming the file (and the field) when it is not
    JSON, not an object, or a field has a value no network can be built with.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc}); write it again with model.save_pretrained") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or delete it (model.save_pretrained writes it)") from exc
    return check_config(data, source=str(path))


def check_config(data: Any, source: str = "config") -> dict[str, Any]:
    """``data`` (a parsed config) with its architecture fields checked and normalised; see :func:`read_config_file`."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source} must hold a JSON object like {{\"backbone\": \"swinb\", \"base_size\": [384, 384]}}, "
            f"got {type(data).__name__} ({json.dumps(data)[:60]})"
        )
    config = dict(data)
    for name, check in _FIELD_CHECKS.items():
        if name in config and not (name == "backbone_args" and config[name] is None):
            try:
                config[name] = check(config[name])
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: field {name!r} = {json.dumps(config[name])}: {exc}") from None
    if config.get("backbone_args") is None:
        config.pop("backbone_args", None)
    return config


def _backbone(value: Any) -> str:
    if value not in BACKBONES:
        raise ValueError(f"must be one of {', '.join(map(repr, BACKBONES))}")
    return value


def _depth(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a positive integer (64 in every published model)")
    return value


def _base_size(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if isinstance(value, str):
        value = list(decode_base_size(value))
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % STRIDE == 0 for v in value)
    ):
        raise ValueError(f"must be [H, W] with positive multiples of {STRIDE}, e.g. [384, 384]")
    return [int(value[0]), int(value[1])]


def _backbone_args(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be an object of backbone hyper-parameters, or absent")
    return value


_FIELD_CHECKS = {"backbone": _backbone, "depth": _depth, "base_size": _base_size, "backbone_args": _backbone_args}
