"""The Swin block's one-gather windowing equals pad -> roll -> partition written out with torch ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import window_partition, window_reverse

from inspyrenet_lite.modeling.backbones import SwinBackbone


def _block(shifted: bool):
    backbone = SwinBackbone(embed_dim=8, depths=(2,), num_heads=(2,), window_size=4).eval()
    return backbone.layers[0].blocks[1 if shifted else 0]


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("size", [(8, 12), (9, 14), (3, 5)])
def test_windows_are_padded_rolled_and_partitioned(shifted, size):
    block = _block(shifted)
    b, (h, w), c = 2, size, 8
    x = torch.randn(b, h, w, c)
    gather, padding, scatter = block._window_indices(b, h, w, x.device)
    windows = x.reshape(-1, c).index_select(0, gather)
    if padding is not None:
        windows.masked_fill_(padding, 0)

    # The reference order of operations: zero-pad bottom/right, roll by -shift, partition.
    ws = block.window_size
    padded = F.pad(x, (0, 0, 0, (-w) % ws[1], 0, (-h) % ws[0]))
    shift = block.shift_size
    rolled = torch.roll(padded, shifts=(-shift[0], -shift[1]), dims=(1, 2)) if shifted else padded
    expected = window_partition(rolled, ws).reshape(-1, c)
    assert torch.equal(windows, expected)
    assert (padding is not None) == (h % ws[0] != 0 or w % ws[1] != 0)

    # ... and the inverse: reverse partition, roll back, crop.
    hp, wp = padded.shape[1:3]
    back = window_reverse(expected.view(-1, ws[0], ws[1], c), ws, hp, wp)
    if shifted:
        back = torch.roll(back, shifts=shift, dims=(1, 2))
    assert torch.equal(expected.index_select(0, scatter).view(b, h, w, c), back[:, :h, :w])
    assert torch.equal(back[:, :h, :w], x)


def test_block_output_matches_timm_on_a_window_aligned_size():
    """The whole block: our gather path against timm's forward on a window-aligned input.

    On a size that needs no padding, timm's own shift-then-pad order gives the
    same windows as the reference's pad-then-shift, so timm's forward is an
    independent check of the attention, mask and residual code.
    """
    block = _block(shifted=True)
    x = torch.randn(2, 8, 12, 8)
    with torch.no_grad():
        ours = block(x)
        timm_forward = type(block).__mro__[1].forward  # SwinTransformerBlock.forward
        timm_attn = type(block).__mro__[1]._attn
        block.__dict__["_attn"] = lambda y: timm_attn(block, y)
        try:
            theirs = timm_forward(block, x)
        finally:
            del block.__dict__["_attn"]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_cached_position_bias_follows_the_weights():
    """Reloading or editing the bias table must never leave a stale cached bias behind."""
    block = _block(shifted=True)
    table = block.attn.relative_position_bias_table
    x = torch.randn(1, 8, 12, 8)
    with torch.inference_mode():
        before = block(x)
    with torch.no_grad():
        table.add_(torch.randn(table.shape))  # in place, as load_state_dict does
        edited = block(x)
    block.attn.relative_position_bias_table = torch.nn.Parameter(torch.zeros_like(table))  # assign=True
    with torch.no_grad():
        reassigned = block(x)
    block.attn.__dict__.pop("_bias_cache", None)
    with torch.no_grad():
        fresh = block(x)
    assert not torch.equal(before, edited)
    assert not torch.equal(edited, reassigned)
    assert torch.equal(reassigned, fresh)
    # With autograd on, the bias is rebuilt so gradients reach the table.
    block(x).sum().backward()
    assert block.attn.relative_position_bias_table.grad is not None


def test_threads_sharing_a_block_get_their_own_sizes_right():
    """Several threads, one model, many image sizes (more than the cache keeps)."""
    from concurrent.futures import ThreadPoolExecutor

    block = _block(shifted=True)
    sizes = [(6, 5 + i) for i in range(6)] + [(4 + i, 9) for i in range(6)]
    inputs = [torch.randn(1, h, w, 8) for h, w in sizes]
    with torch.no_grad():
        expected = [block(x) for x in inputs]
        for rounds in range(3):
            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(block, inputs * 2))
            for got, want in zip(results, expected * 2):
                assert torch.equal(got, want)
