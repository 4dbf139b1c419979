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
from huggingface_hub import constants as hf_constants
from huggingface_hub.constants import CONFIG_NAME
from huggingface_hub.errors import EntryNotFoundError, OfflineModeIsEnabled

from inspyrenet_lite import __version__

from ._atomic import atomic_write_text
from .modeling.inspyrenet import InSPyReNet as _Network
from .serialization import (
    ARCH_FIELDS,
    ConfigError,
    architecture_config,
    check_config,
    config_from_metadata,
    encode_base_size,
    read_config_file,
    read_safetensors_metadata,
    safetensors_metadata,
)

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
LIBRARY_NAME = "inspyrenet-lite"

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

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> str:  # type: ignore[override]
        """Upload this model to the Hub repo ``repo_id`` (created if needed) in one commit.

        Keyword arguments are huggingface_hub's (``config``, ``private``,
        ``token``, ``commit_message``, ``branch``, ``create_pr``...).

        Raises ConnectionError (one line: the Hub, why, what to do) where the
        Hub cannot be reached or offline mode (``HF_HUB_OFFLINE``) is on.
        """
        card = {"repo_id": repo_id, **(model_card_kwargs or {})}
        try:
            return super().push_to_hub(repo_id, model_card_kwargs=card, **kwargs)
        except Exception as exc:
            if not _is_network_error(exc):
                raise
            why = "offline mode is on (HF_HUB_OFFLINE)" if isinstance(exc, OfflineModeIsEnabled) else f"it cannot be reached ({exc})"
            raise ConnectionError(
                f"cannot upload to the Hub repo {repo_id!r}: {hf_constants.ENDPOINT} {why}. Check the network "
                "(HF_ENDPOINT, a proxy) or unset HF_HUB_OFFLINE and try again; save_pretrained(folder) keeps the "
                f"model meanwhile, and `hf upload {repo_id} folder` uploads it later"
            ) from None

    def _save_pretrained(self, save_directory: Path) -> None:
        from .checkpoint import save_checkpoint

        save_checkpoint(
            self.reference_state_dict(),  # type: ignore[attr-defined]
            save_directory / WEIGHTS_NAME,
            metadata=safetensors_metadata(architecture_config(self)),
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):  # type: ignore[override]
        """Load a model saved with ``save_pretrained``: a local folder or a Hub repo ``"owner/name"``.

        Keyword arguments: ``revision``, ``cache_dir``, ``force_download``,
        ``local_files_only``, ``token`` (the Hub client's), ``device`` /
        ``map_location``, and architecture overrides (e.g.
        ``base_size=(1024, 1024)`` for weights that do not say it). The
        folder's config.json is validated
        (:class:`~inspyrenet_lite.serialization.ConfigError` names the bad
        field). An unreachable Hub or a missing repo fails in seconds with a
        :class:`~inspyrenet_lite.WeightsUnavailableError` saying what to do;
        a repo in the Hub cache loads from it (see :mod:`inspyrenet_lite._hub_access`).
        """
        from ._hub_access import load_pretrained

        return load_pretrained(cls._load_pretrained, str(pretrained_model_name_or_path), kwargs)

    @classmethod
    def _load_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        device: Any = "cpu",
        map_location: Any = None,
        **overrides: Any,
    ):
        """:meth:`from_pretrained` without its Hub-access guard."""
        model_id = str(pretrained_model_name_or_path)
        hub_args = dict(
            revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
            local_files_only=local_files_only,
        )
        config_file = _model_file(model_id, CONFIG_NAME, required=False, **hub_args)
        config = read_config_file(config_file) if config_file is not None else {}
        if config_file is None:
            logger.info("%s has no %s; the architecture comes from the weights' metadata", model_id, CONFIG_NAME)
        weights = _model_file(model_id, WEIGHTS_NAME, required=True, **hub_args)
        arch = {**config_from_metadata(read_safetensors_metadata(weights)), **config, **overrides}
        arch = {k: v for k, v in check_config(arch, source=f"{model_id} ({CONFIG_NAME} and arguments)").items() if k in ARCH_FIELDS}
        if "backbone" not in arch or "base_size" not in arch:
            raise ConfigError(
                f"{model_id} has no {CONFIG_NAME} and its {WEIGHTS_NAME} does not say its backbone and base size; "
                "pass them, e.g. from_pretrained(..., backbone='swinb', base_size=(384, 384))"
            )
        logger.info("Loading %s (%s, base size %s) from %s", model_id, arch["backbone"], arch["base_size"], weights)
        from .checkpoint import load_checkpoint
        from .modeling.build import from_config

        model = from_config(arch, load_checkpoint(weights), device=map_location or device, cls=cls)
        model.weights_file = str(weights)  # what a derived artefact (the ONNX cache) is keyed on
        if config:
            model._hub_mixin_config = dict(config)  # keeps informational fields for a later save
        return model


class InSPyReNet(_Network, InSPyReNetHubMixin):
    """The InSPyReNet network (:class:`inspyrenet_lite.modeling.inspyrenet.InSPyReNet`) with the Hub's
    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``; every model the package builds or loads is one."""


def with_hub_methods(model: _Network) -> InSPyReNet:
    """``model`` itself if it has the Hub methods, else the same network (sharing its weights) with them:
    a bare :class:`inspyrenet_lite.modeling.inspyrenet.InSPyReNet` built by hand can still be saved."""
    if isinstance(model, InSPyReNet):
        return model
    if not isinstance(model, _Network):
        raise TypeError(f"expected an InSPyReNet, got {type(model).__name__}")
    from .modeling.build import from_config

    return from_config(architecture_config(model), model.reference_state_dict(), device="cpu", cls=InSPyReNet).train(
        model.training
    )


def _is_network_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the Hub could not be reached: offline mode, or a failure of the HTTP
    client's transport (its ``TransportError`` family: refused, timed out, DNS...), not an answer."""
    return (
        isinstance(exc, OfflineModeIsEnabled)
        or isinstance(exc, (ConnectionError, TimeoutError))
        or any(cls.__name__ == "TransportError" for cls in type(exc).__mro__)
    )


def _model_file(model_id: str, filename: str, *, required: bool, **hub_args: Any) -> Path | None:
    """``filename`` of a local model folder or of a Hub repo (downloaded into the Hub cache).

    A missing optional file is ``None``; a missing required one raises FileNotFoundError.
    """
    if os.path.isdir(model_id):
        path = Path(model_id) / filename
        if path.is_file():
            return path
        if required:
            raise FileNotFoundError(f"{model_id} has no {filename}; save it with model.save_pretrained(folder)")
        return None
    try:
        return Path(
            hf_hub_download(
                repo_id=model_id, filename=filename, library_name=LIBRARY_NAME, library_version=__version__, **hub_args
            )
        )
    except EntryNotFoundError:
        if required:
            raise
        return None
