"""Share models on the Hugging Face Hub: ``save_pretrained``, ``from_pretrained``, ``push_to_hub``.

A saved model is a folder (or Hub repo) with

* ``config.json``: ``{"backbone": "swinb" | "res2net50", "depth": int,
  "base_size": [H, W]}``, plus ``backbone_args`` for reduced backbones,
  ``"library_name": "inspyrenet-lite"`` and any extra fields given (e.g.
  ``"trained_on"``);
* ``model.safetensors``: the weights in the AUTHORS' key layout, with the
  safetensors metadata ``{"backbone": ..., "base_size": "HxW", "depth": ...}``,
  so the same file also loads with ``Remover(ckpt=".../model.safetensors")``;
* ``README.md``: a model card (not overwritten if present).

The methods follow huggingface_hub's ``ModelHubMixin``: the Hub cache,
``HF_TOKEN``, ``HF_ENDPOINT`` and offline mode are the Hub client's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelHubMixin, hf_hub_download
from huggingface_hub.constants import CONFIG_NAME

from inspyrenet_lite import __version__

from ._atomic import atomic_write_text
from .registry import decode_base_size, encode_base_size

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
LIBRARY_NAME = "inspyrenet-lite"
# config.json fields that describe the architecture (the rest is information).
ARCH_FIELDS = ("backbone", "depth", "base_size", "backbone_args")

_CARD = """---
{{ card_data }}
---

# InSPyReNet ({{ backbone }}, base size {{ base_size }})

An [InSPyReNet](https://arxiv.org/abs/2209.09475) saliency / background-removal model
saved with [inspyrenet-lite](https://pypi.org/project/inspyrenet-lite/).
{% if trained_on %}Trained on: {{ trained_on }}.{% endif %}

```python
from inspyrenet_lite import Remover, InSPyReNet
remover = Remover(model="{{ repo_id | default('OWNER/REPO', true) }}")
cutout = remover.process("photo.jpg")
model = InSPyReNet.from_pretrained("{{ repo_id | default('OWNER/REPO', true) }}")
```

The weights (`model.safetensors`) are in the authors' key layout.
"""


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
        out["base_size"] = list(decode_base_size(metadata["base_size"]))
    if "depth" in metadata and str(metadata["depth"]).isdigit():
        out["depth"] = int(metadata["depth"])
    return out


class InSPyReNetHubMixin(
    ModelHubMixin,
    library_name=LIBRARY_NAME,
    paper_url="https://arxiv.org/abs/2209.09475",
    pipeline_tag="image-segmentation",
    tags=["background-removal", "salient-object-detection", "inspyrenet"],
    model_card_template=_CARD,
):
    """Hub methods of :class:`~inspyrenet_lite.InSPyReNet` (see the module docstring)."""

    def hub_config(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """config.json of this model: extra fields (kept from loading or given), then the architecture."""
        kept = getattr(self, "_hub_mixin_config", None)
        config: dict[str, Any] = {}
        if isinstance(kept, Mapping):
            config.update({k: v for k, v in kept.items() if k not in ARCH_FIELDS})
        config.update({k: v for k, v in dict(extra or {}).items() if k not in ARCH_FIELDS})
        config.update(architecture_config(self))
        config["library_name"] = LIBRARY_NAME
        return config

    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | Path,
        *,
        config: Mapping[str, Any] | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write ``config.json``, ``model.safetensors`` and a model card into ``save_directory``.

        ``config`` adds informational fields (e.g. ``{"trained_on": "DUTS-TR"}``);
        the architecture fields always come from the model. Every file is
        written atomically.
        """
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        merged = self.hub_config(config)
        self._save_pretrained(save_directory)
        atomic_write_text(save_directory / CONFIG_NAME, json.dumps(merged, sort_keys=True, indent=2) + "\n")
        card_path = save_directory / "README.md"
        if not card_path.exists():
            card_kwargs = {
                "backbone": merged["backbone"],
                "base_size": encode_base_size(merged["base_size"]),
                "trained_on": merged.get("trained_on"),
                "repo_id": repo_id,
                **(model_card_kwargs or {}),
            }
            atomic_write_text(card_path, str(self.generate_model_card(**card_kwargs)))
        if push_to_hub:
            return self.push_to_hub(
                repo_id or save_directory.name, config=merged, model_card_kwargs=model_card_kwargs, **push_to_hub_kwargs
            )
        return None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):  # type: ignore[override]
        """Load a folder or Hub repo; an unreachable Hub or a missing repo fails in seconds with a clear error."""
        from ._hub_access import load_pretrained

        return load_pretrained(super().from_pretrained, str(pretrained_model_name_or_path), kwargs)

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> str:  # type: ignore[override]
        """Upload this model to the Hub repo ``repo_id`` (created if needed) in one commit.

        Keyword arguments are huggingface_hub's (``config``, ``private``,
        ``token``, ``commit_message``, ``branch``, ``create_pr``...).
        """
        card = {"repo_id": repo_id, **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, model_card_kwargs=card, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        from .checkpoint import save_checkpoint

        save_checkpoint(
            self.reference_state_dict(),  # type: ignore[attr-defined]
            save_directory / WEIGHTS_NAME,
            metadata=safetensors_metadata(architecture_config(self)),
        )

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: Mapping[str, Any] | None = None,
        device: Any = "cpu",
        map_location: Any = None,
        **model_kwargs: Any,
    ):
        from .checkpoint import load_checkpoint
        from .modeling.build import from_config

        if os.path.isdir(model_id):
            weights = Path(model_id) / WEIGHTS_NAME
            if not weights.is_file():
                raise FileNotFoundError(f"{model_id} has no {WEIGHTS_NAME}; save it with model.save_pretrained(folder)")
        else:
            weights = Path(
                hf_hub_download(
                    repo_id=model_id,
                    filename=WEIGHTS_NAME,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    token=token,
                    local_files_only=local_files_only,
                    library_name=LIBRARY_NAME,
                    library_version=__version__,
                )
            )
        arch = {**config_from_metadata(read_safetensors_metadata(weights)), **model_kwargs}
        if "backbone" not in arch or "base_size" not in arch:
            raise ValueError(
                f"{model_id} has no {CONFIG_NAME} and its {WEIGHTS_NAME} does not say its backbone and base size; "
                "pass them, e.g. from_pretrained(..., backbone='swinb', base_size=(384, 384))"
            )
        arch = {k: v for k, v in arch.items() if k in ARCH_FIELDS}
        logger.info("Loading %s (%s, base size %s) from %s", model_id, arch["backbone"], arch["base_size"], weights)
        model = from_config(arch, load_checkpoint(weights), device=map_location or device)
        model.weights_file = str(weights)  # what a derived artefact (the ONNX cache) is keyed on
        if config:
            model._hub_mixin_config = dict(config)  # keeps informational fields for a later save
        return model


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
