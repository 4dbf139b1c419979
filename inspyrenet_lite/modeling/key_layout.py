"""The authors' checkpoint key layout and its conversion to this package's modules: in one place.

The authors' checkpoints (``checkpoint_keys_*.tsv``) differ from this package's
modules in two ways, both in the Swin backbone:

* the reference keeps a stage's patch merging at the end of that stage
  (``backbone.layers.i.downsample``) where timm keeps it at the start of the
  next (``backbone.layers.{i+1}.downsample``);
* the reference stores each block's ``attn.relative_position_index``, a
  derived buffer that timm rebuilds itself (non-persistent).

Everything else maps one to one. It lives in ``modeling/`` because it is a
fact of the network's module tree; files are read and written by
:mod:`inspyrenet_lite.checkpoint`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

_DOWNSAMPLE = re.compile(r"^backbone\.layers\.(\d+)\.downsample\.")
_REL_INDEX = re.compile(r"^backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index$")
_MAX_NAMED = 10

StateDict = dict[str, torch.Tensor]


def _shift_downsample(key: str, offset: int) -> str:
    match = _DOWNSAMPLE.match(key)
    if match is None:
        return key
    return f"backbone.layers.{int(match.group(1)) + offset}.downsample." + key[match.end():]


def _is_swin(model: nn.Module) -> bool:
    return getattr(model, "backbone_name", None) == "swinb"


def to_reference_layout(model: nn.Module) -> StateDict:
    """The model's state dict renamed to the authors' layout (derived buffers included)."""
    ours = model.state_dict()
    if not _is_swin(model):
        return dict(ours)
    out: StateDict = {}
    for key, value in ours.items():
        out[_shift_downsample(key, -1)] = value
    for key, index in _derived_buffers(model):
        out[key] = index.clone()
    return out


def _derived_buffers(model: nn.Module):
    """(reference key, tensor) of each Swin block's relative position index."""
    for name, module in model.named_modules():
        index = getattr(module, "relative_position_index", None)
        if name.endswith(".attn") and isinstance(index, torch.Tensor):
            yield f"{name}.relative_position_index", index


def from_reference_layout(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """Split a reference-layout dict into (weights in our layout, derived buffers to check)."""
    if not _is_swin(model):
        return dict(state_dict), {}
    ours: StateDict = {}
    derived: StateDict = {}
    for key, value in state_dict.items():
        if _REL_INDEX.match(key):
            derived[key] = value
        else:
            ours[_shift_downsample(key, 1)] = value
    return ours, derived


def _describe(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMED])
    more = len(names) - _MAX_NAMED
    return shown + (f" (and {more} more)" if more > 0 else "")


def check_reference_layout(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """ValueError naming missing, unexpected or wrongly shaped keys unless ``state_dict`` fits ``model``."""
    _check_keys(model, to_reference_layout_shapes(model), state_dict, "the authors' layout")


def is_own_layout(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` is in this package's own key layout (``torch.save(model.state_dict())``)
    rather than the authors'. The two differ only for Swin, and there without ambiguity: the
    authors' layout has every block's ``relative_position_index`` and the first stage's patch
    merging (``backbone.layers.0.downsample``), ours has neither."""
    if not _is_swin(model):
        return False
    keys = list(state_dict)
    return (
        any(_DOWNSAMPLE.match(k) for k in keys)
        and not any(_REL_INDEX.match(k) for k in keys)
        and not any(k.startswith("backbone.layers.0.downsample.") for k in keys)
    )


def _check_keys(
    model: nn.Module, expected: Mapping[str, tuple[int, ...]], state_dict: Mapping[str, torch.Tensor], layout: str
) -> None:
    given = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(
        f"{k} (checkpoint {list(given[k])}, model {list(expected[k])})"
        for k in set(expected) & set(given)
        if expected[k] != given[k]
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if wrong:
        problems.append(f"wrongly shaped keys: {_describe(wrong)}")
    if problems:
        raise ValueError(
            "checkpoint does not match an InSPyReNet "
            f"({getattr(model, 'backbone_name', '?')}, depth {getattr(model, 'depth', '?')}) in {layout}; "
            + "; ".join(problems)
        )


def load_reference_layout(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], assign: bool = False
) -> None:
    """Strictly load a state dict into ``model``; ValueError on any mismatch.

    The authors' layout is expected; a dict in this package's own layout (``model.state_dict()``
    saved with ``torch.save``, see :func:`is_own_layout`) is recognised and loaded as it is.
    """
    if is_own_layout(model, state_dict):
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        _check_keys(model, own, state_dict, "this package's own layout (model.state_dict())")
        weights = dict(state_dict)
    else:
        check_reference_layout(model, state_dict)
        weights, _ = from_reference_layout(model, state_dict)
    if assign:
        params = model.state_dict()
        weights = {
            k: v.to(params[k].dtype) if v.is_floating_point() and v.dtype != params[k].dtype else v
            for k, v in weights.items()
        }
    model.load_state_dict(weights, strict=True, assign=assign)


def to_reference_layout_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the authors' layout for this model, without copying any weights."""
    swin = _is_swin(model)
    shapes = {_shift_downsample(k, -1) if swin else k: tuple(v.shape) for k, v in model.state_dict().items()}
    if swin:
        shapes.update((key, tuple(index.shape)) for key, index in _derived_buffers(model))
    return shapes


def detect_backbone(keys) -> str:
    """'swinb' or 'res2net50' from an authors'-layout checkpoint's key names; ValueError if neither."""
    keys = set(keys)
    if any(k.startswith("backbone.layers.") and ".blocks." in k for k in keys):
        return "swinb"
    if any(k.startswith("backbone.layer1.") for k in keys):
        return "res2net50"
    sample = ", ".join(sorted(keys)[:5])
    raise ValueError(
        "cannot tell the backbone from the checkpoint's keys (neither Swin 'backbone.layers.N.blocks' nor "
        f"Res2Net 'backbone.layer1' keys; first keys: {sample}); is it an InSPyReNet checkpoint in the authors' layout?"
    )
