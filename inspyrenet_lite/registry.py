"""The one table of named models: what each is, where its weights live, how the authors run it.

Every entry point (``weights.resolve_checkpoint``, ``build_model``,
``model_from_state_dict``, ``Remover``, the CLI and the Space) reads :data:`MODELS`.
Rows come from the authors' model zoo (``TRAINING.md`` section 4 and
``INSPYRENET.md`` section 4 in the project's reference notes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .serialization import decode_base_size, encode_base_size  # noqa: F401  (re-exported)

__all__ = ["MODELS", "ModelEntry", "get_entry", "HUB_REPO_ID", "DEFAULT_RELEASE_URL", "ENV_RELEASE_URL"]

HUB_REPO_ID = "plemeri/InSPyReNet"
DEFAULT_RELEASE_URL = "https://github.com/plemeri/transparent-background/releases/download/1.2.12"
ENV_RELEASE_URL = "INSPYRENET_LITE_RELEASE_URL"

_DUTS = "DUTS-TR"
_PLUS_ULTRA = "19 SOD/HR/DIS sets, test sets included"
TEST_SETS_WARNING = "saw the benchmark test sets in training: never use it for benchmark numbers"


@dataclass(frozen=True)
class ModelEntry:
    """One named model.

    ``resize`` / ``hr_blend`` / ``short_side`` are the authors' inference
    defaults for it (static or dynamic resize, pyramid blending strength,
    shorter-side cap of dynamic and high-resolution passes); ``Remover``
    uses them unless told otherwise.
    """

    name: str
    backbone: Literal["swinb", "res2net50"]
    base_size: tuple[int, int]  # (H, W) it was trained at
    trained_on: str
    summary: str  # one line: what it is for
    filename: str  # file name in the caches (and on the Hub / the release)
    md5: str | None = None  # published checksum of the file; None: sha256 recorded at first download
    repo_id: str | None = None  # Hub repo serving ``filename``
    release: bool = False  # also on the transparent-background GitHub release
    gdrive_id: str | None = None  # the authors' Google Drive file id
    resize: Literal["static", "dynamic"] = "static"
    hr_blend: float = 0.0
    short_side: int = 1280
    authors_name: str = ""  # the authors' folder name
    saw_test_sets: bool = False
    # Architecture overrides (empty for every published model; tests use reduced ones).
    backbone_args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def release_url(self) -> str | None:
        """The GitHub release URL (base overridable by ``$INSPYRENET_LITE_RELEASE_URL``), if released."""
        if not self.release:
            return None
        base = os.environ.get(ENV_RELEASE_URL, "").strip() or DEFAULT_RELEASE_URL
        return f"{base.rstrip('/')}/{self.filename}"

    @property
    def hub_url(self) -> str | None:
        """The Hub URL of the file (follows ``HF_ENDPOINT``), if on the Hub."""
        if self.repo_id is None:
            return None
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo_id, self.filename)

    @property
    def gdrive_url(self) -> str | None:
        """The Google Drive download URL, if the authors published one there."""
        if self.gdrive_id is None:
            return None
        from ._gdrive import drive_url

        return drive_url(self.gdrive_id)

    def architecture(self) -> dict[str, Any]:
        """Keyword arguments of ``InSPyReNet`` for this model."""
        arch: dict[str, Any] = {"backbone": self.backbone, "base_size": self.base_size}
        if self.backbone_args:
            arch["backbone_args"] = dict(self.backbone_args)
        return arch

    @property
    def inference(self) -> str:
        """The authors' inference setting, in words."""
        if self.hr_blend:
            return f"dynamic {self.short_side} + pyramid blending"
        if self.resize == "dynamic":
            return f"dynamic {self.short_side}"
        return f"static {encode_base_size(self.base_size)}"


def _drive(
    name: str, authors_name: str, backbone: str, base: int, trained_on: str, summary: str, gdrive_id: str,
    pb: bool, **kw: Any,
) -> ModelEntry:
    """An entry for one of the authors' Google Drive checkpoints (no published checksum)."""
    return ModelEntry(
        name=name, backbone=backbone, base_size=(base, base), trained_on=trained_on, summary=summary,  # type: ignore[arg-type]
        filename=f"{authors_name}.pth", gdrive_id=gdrive_id, authors_name=authors_name,
        resize="dynamic" if pb else "static", hr_blend=1.0 if pb else 0.0, **kw,
    )


_ROWS = [
    # The package's three modes (transparent-background's files; its defaults: static, no blending).
    ModelEntry(
        "fast", "swinb", (384, 384), _PLUS_ULTRA,
        "the default: general background removal, quick; add hr_blend for crisper edges on large photos",
        "ckpt_fast.pth", md5="9efdbfbcc49b79ef0f7891c83d2fd52f", repo_id=HUB_REPO_ID, release=True,
        authors_name="Plus_Ultra_LR (ckpt_fast)", saw_test_sets=True,
    ),
    ModelEntry(
        "base", "swinb", (1024, 1024), _PLUS_ULTRA,
        "general background removal at 1024: finer edges, slower",
        "ckpt_base.pth", md5="d692e3dd5fa1b9658949d452bebf1cda", repo_id=HUB_REPO_ID, release=True,
        authors_name="Plus_Ultra (ckpt_base)", saw_test_sets=True,
    ),
    ModelEntry(
        "base-nightly", "swinb", (1024, 1024), "not published",
        "a newer 1024 SwinB from the authors' package; training data and checksum not published, "
        "so not for benchmark numbers either",
        "ckpt_base_nightly.pth", repo_id=HUB_REPO_ID, release=True, authors_name="ckpt_base_nightly",
    ),
    # The authors' model zoo (Google Drive; TRAINING.md section 4).
    _drive("res2net50", "InSPyReNet_Res2Net50", "res2net50", 384, _DUTS,
           "the paper's Res2Net50 model (DUTS-TR only): for comparisons with the paper's tables",
           "12moRuU8F0-xRvE16bVg6mkGWDuqYHJor", pb=False),
    _drive("swinb", "InSPyReNet_SwinB", "swinb", 384, _DUTS,
           "the paper's SwinB model (DUTS-TR only): for comparisons with the paper's tables",
           "1k5hNJImgEgSmz-ZeJEEb_dVkrOnswVMq", pb=True),
    _drive("swinb-dh-lr", "InSPyReNet_SwinB_DH_LR", "swinb", 384, "DUTS-TR, HRSOD-TR (at 384)",
           "high-resolution SOD, trained at 384 for pyramid blending", "1nbs6Xa7NMtcikeHFtkQRVrsHbBRHtIqC", pb=True),
    _drive("swinb-hu-lr", "InSPyReNet_SwinB_HU_LR", "swinb", 384, "HRSOD-TR, UHRSD-TR (at 384)",
           "high-resolution SOD (HR sets only), trained at 384 for pyramid blending",
           "1uLSIYXlRsZv4Ho0C-c87xKPhmF_b-Ll4", pb=True),
    _drive("swinb-dhu-lr", "InSPyReNet_SwinB_DHU_LR", "swinb", 384, "DUTS-TR, HRSOD-TR, UHRSD-TR (at 384)",
           "high-resolution SOD, widest training mix without test sets, for pyramid blending",
           "14gRNwR7XwJ5oEcR4RWIVbYH3HEV6uBUq", pb=True),
    _drive("swinb-dh", "InSPyReNet_SwinB_DH", "swinb", 1024, "DUTS-TR, HRSOD-TR",
           "high-resolution SOD at 1024, one pass", "1UBGFDUYZ9SysZr96dhsscZg7nDXt6IUD", pb=False),
    _drive("swinb-hu", "InSPyReNet_SwinB_HU", "swinb", 1024, "HRSOD-TR, UHRSD-TR",
           "high-resolution SOD at 1024 (HR sets only), one pass", "1HB02tiInEgo-pNzwqyvyV6eSN1Y2xPRJ", pb=False),
    _drive("swinb-dis5k-lr", "InSPyReNet_SwinB_DIS5K_LR", "swinb", 384, "DIS-TR",
           "fine structures (DIS5K: wires, lattices, hair) at 384 with pyramid blending",
           "1Sj7GZoocGMHyKNhFnQQc1FTs76ysJIX3", pb=True),
    _drive("swinb-dis5k", "InSPyReNet_SwinB_DIS5K", "swinb", 1024, "DIS-TR",
           "fine structures (DIS5K) at 1024, one pass", "1aCxHMbhvj8ah77jXVgqvqImQA_Y0G-Yg", pb=False),
    _drive("plus-ultra-lr", "Plus_Ultra_LR", "swinb", 384, _PLUS_ULTRA,
           "an older copy of `fast` with the authors' dynamic + blending setting; " + TEST_SETS_WARNING,
           "1iRX-0MVbUjvAVns5MtVdng6CQlGOIo3m", pb=True, saw_test_sets=True),
    ModelEntry(
        "plus-ultra", "swinb", (1024, 1024), _PLUS_ULTRA,
        "an older copy of `base` with the authors' dynamic 1280 setting; " + TEST_SETS_WARNING,
        "Plus_Ultra.pth", gdrive_id="13oBl5MTVcWER3YU4fSxW3ATlVfueFQPY", authors_name="Plus_Ultra",
        resize="dynamic", saw_test_sets=True,
    ),
]

#: name -> entry, in the order above (the package's three modes first).
MODELS: dict[str, ModelEntry] = {row.name: row for row in _ROWS}


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``; ValueError listing the names otherwise."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown model {name!r}; choose one of: {', '.join(MODELS)} "
            "(or a Hub repo 'owner/name', or a folder saved with save_pretrained)."
        ) from None
