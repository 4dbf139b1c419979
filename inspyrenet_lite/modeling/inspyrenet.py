"""The InSPyReNet network: backbone, PAA context modules, PAA-d and three SICA stages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import STRIDE as _STRIDE
from .backbones import build_backbone
from .key_layout import load_reference_layout, to_reference_layout
from .layers import resize
from .paa import PAADecoder, PAAEncoder
from .pyramid import expand, reconstruct, transition
from .sica import SICA

# Transition kernel sizes used when blending levels d3->d2, d2->d1, d1->d0.
_TRANSITION_SIZES = (5, 9, 17)


def normalise_per_image(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Min-max normalise each image of a (B, 1, H, W) batch on its own."""
    flat = x.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return (x - lo) / (hi - lo + eps)


class InSPyReNet(nn.Module):
    """Inverse Saliency Pyramid Reconstruction Network (Kim et al., ACCV 2022).

    Args:
        backbone: 'swinb' or 'res2net50'.
        depth: decoder width d (64 in every published checkpoint).
        base_size: (H, W) the model was trained at; it fixes the SICA working sizes.
        backbone_args: overrides of backbone hyper-parameters (swinb: embed_dim,
            depths, num_heads, window_size; res2net50: layers).

    Inputs are ImageNet-normalised (B, 3, H, W) tensors with H and W multiples of 32.
    This is the bare network; the package's ``inspyrenet_lite.InSPyReNet`` is
    this class with the Hub's ``save_pretrained`` / ``from_pretrained`` /
    ``push_to_hub`` (see :mod:`inspyrenet_lite.hub`), kept above ``modeling/``.
    """

    blend_threshold: int = 512

    def __init__(
        self,
        backbone: str = "swinb",
        depth: int = 64,
        base_size: tuple[int, int] | int = (384, 384),
        backbone_args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(base_size, int):
            base_size = (base_size, base_size)
        self.backbone_name = backbone
        self.depth = depth
        self.base_size = (int(base_size[0]), int(base_size[1]))
        self.backbone_args = dict(backbone_args or {})
        self.backbone = build_backbone(backbone, **dict(backbone_args or {}))
        channels = self.backbone.out_channels
        for i, c in enumerate(channels, start=1):
            self.add_module(f"context{i}", PAAEncoder(c, depth))
        self.decoder = PAADecoder(depth)
        bh, bw = self.base_size
        self.attention2 = SICA(2 * depth, depth, (bh // 4, bw // 4), lmap_in=False)
        self.attention1 = SICA(2 * depth, depth, (bh // 2, bw // 2), lmap_in=True)
        self.attention0 = SICA(depth, depth, (bh, bw), lmap_in=True)

    # ------------------------------------------------------------------ forward
    @staticmethod
    def check_input(x: torch.Tensor, name: str = "x") -> None:
        """Raise ValueError unless x is (B, 3, H, W) with H and W multiples of 32."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} must be a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % _STRIDE or w % _STRIDE or h == 0 or w == 0:
            raise ValueError(
                f"{name} has size {h}x{w}; both sides must be positive multiples of {_STRIDE}. "
                "Resize the image first (Remover does this for you)."
            )

    def pyramid(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run the network: ([d3, d2, d1, d0] saliency logits, [p2, p1, p0] Laplacian logits)."""
        self.check_input(x)
        h, w = x.shape[-2:]
        x1, x2, x3, x4, x5 = self.backbone(x)
        x1, x2, x3 = self.context1(x1), self.context2(x2), self.context3(x3)
        x4, x5 = self.context4(x4), self.context5(x5)

        # Each feature map is released as soon as its last user has run, which
        # bounds peak memory at large inputs.
        f3, d3 = self.decoder(x3, x4, x5)
        del x3, x4, x5
        # The coarser maps enter SICA as guidance and serve as the base of each
        # reconstruction detached (TRAINING.md 1): a level's loss trains its own
        # Laplacian head and the shared features, never the coarser output.
        # Detaching changes no value, so inference is unaffected.
        f2, p2 = self.attention2(torch.cat([x2, resize(f3, (h // 4, w // 4))], dim=1), d3.detach())
        del x2, f3
        d2 = reconstruct(d3.detach(), p2)

        f1, p1 = self.attention1(
            torch.cat([resize(x1, (h // 2, w // 2)), resize(f2, (h // 2, w // 2))], dim=1), d2.detach(), p2.detach()
        )
        del x1, f2
        d1 = reconstruct(d2.detach(), p1)

        _, p0 = self.attention0(f1, d1.detach(), p1.detach(), size=(h, w))
        del f1
        d0 = reconstruct(d1.detach(), p0)
        return [d3, d2, d1, d0], [p2, p1, p0]

    def predict(
        self, x: torch.Tensor, x_lr: torch.Tensor | None = None, hr_blend: float = 1.0
    ) -> torch.Tensor:
        """Saliency map in [0, 1], shape (B, 1, H, W) at x's size, min-max normalised per image.

        Without ``x_lr``: one pass on ``x``. With ``x_lr`` (the same images resized
        to ``base_size``): pyramid blending of a low-resolution pass on ``x_lr`` and a
        high-resolution pass on ``x``, with ``hr_blend`` as the strength β of the
        high-resolution detail (1 = the paper). As in the reference, blending
        applies only when both sides of ``x`` exceed ``blend_threshold`` (512);
        otherwise the low-resolution pass alone is used, resized to x's size.
        """
        if x_lr is None:
            d0 = self.pyramid(x)[0][-1]
            return normalise_per_image(torch.sigmoid(d0))
        if not 0.0 <= hr_blend <= 1.0:
            raise ValueError(f"hr_blend must be in [0, 1], got {hr_blend}")
        self.check_input(x, "x")
        self.check_input(x_lr, "x_lr")
        if x.shape[0] != x_lr.shape[0]:
            raise ValueError(f"x and x_lr hold {x.shape[0]} and {x_lr.shape[0]} images; they must match")
        lr_d0 = self.pyramid(x_lr)[0][-1]
        h, w = x.shape[-2:]
        if min(h, w) <= self.blend_threshold:
            # The reference returns the LR map; resizing it afterwards is what its pipeline does.
            lr_map = normalise_per_image(torch.sigmoid(lr_d0))
            return F.interpolate(lr_map, size=(h, w), mode="bilinear", align_corners=True)
        return normalise_per_image(torch.sigmoid(self._blend(x, lr_d0, hr_blend)))

    def _blend(self, x: torch.Tensor, lr_d0: torch.Tensor, beta: float) -> torch.Tensor:
        """Pyramid blending: carry the LR result up the HR pyramid, admitting HR detail in uncertain bands."""
        h, w = x.shape[-2:]
        d = resize(lr_d0, (h // 8, w // 8))
        if beta == 0.0:
            # β = 0 admits no high-resolution detail: skip the HR pass altogether.
            for _ in _TRANSITION_SIZES:
                d = expand(d)
            return d
        _, laplacians = self.pyramid(x)
        for k, lap in zip(_TRANSITION_SIZES, laplacians):
            gate = resize(transition(d, k), lap.shape[-2:])
            d = reconstruct(d, gate * lap * beta)
        return d

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the backbone's activations in the backward pass instead of storing them.

        Trades about a third more compute for much less training memory; no
        effect on outputs, nor at inference (no gradient, nothing stored).
        """
        setter = getattr(self.backbone, "set_grad_checkpointing", None)
        if setter is None:
            raise ValueError(f"gradient checkpointing is not supported for the {self.backbone_name} backbone")
        setter(enable)

    # ------------------------------------------------------- reference layout
    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights in the authors' checkpoint key layout."""
        return to_reference_layout(self)

    def load_reference_state_dict(self, state_dict: Mapping[str, torch.Tensor], assign: bool = False) -> None:
        """Load weights in the authors' key layout, strictly (this package's own layout,
        ``model.state_dict()``, is recognised and loaded too).

        Raises ValueError naming (up to ten of) the missing, unexpected or
        wrongly shaped keys. ``assign=True`` keeps the given tensors instead of
        copying them (no second copy of the weights in memory).
        """
        load_reference_layout(self, state_dict, assign=assign)
