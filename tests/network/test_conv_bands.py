"""ConvBN's banded CPU path must compute what one whole-image convolution computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inspyrenet_lite.modeling import layers
from inspyrenet_lite.modeling.layers import ConvBN


def _randomised(module: ConvBN) -> ConvBN:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        module.conv.weight.copy_(torch.randn(module.conv.weight.shape, generator=g) * 0.2)
        if module.bn is not None:
            c = module.bn.num_features
            module.bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
            module.bn.bias.copy_(torch.randn(c, generator=g))
            module.bn.running_mean.copy_(torch.randn(c, generator=g))
            module.bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return module.eval()


def _whole_image(module: ConvBN, x: torch.Tensor) -> torch.Tensor:
    """Reference: plain conv -> BN -> ReLU with torch's own modules."""
    y = F.conv2d(x, module.conv.weight, None, 1, module.conv.padding, module.conv.dilation)
    if module.bn is not None:
        y = F.batch_norm(y, module.bn.running_mean, module.bn.running_var,
                         module.bn.weight, module.bn.bias, False, 0.0, module.bn.eps)
    return torch.relu(y) if module.relu is not None else y


# Every ConvBN shape the network uses: 3x3, 1x1, 1xr, rx1, dilated 3x3, no BN.
SHAPES = [
    dict(kernel_size=3, relu=True),
    dict(kernel_size=1, relu=True),
    dict(kernel_size=(1, 5)),
    dict(kernel_size=(7, 1)),
    dict(kernel_size=3, dilation=5),
    dict(kernel_size=3, bn=False),
]


@pytest.mark.parametrize("kwargs", SHAPES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_bands_match_the_whole_image(monkeypatch, kwargs):
    # Small limits so that a small map is cut into many bands, the last one short.
    monkeypatch.setattr(layers, "_BAND_MIN_ELEMENTS", 0)
    monkeypatch.setattr(layers, "_BAND_ELEMENTS", 6 * 40)
    module = _randomised(ConvBN(5, 6, **kwargs))
    x = torch.randn(2, 5, 37, 40)
    with torch.no_grad():
        assert layers._use_bands(module, (x,))
        got = module(x)
    expected = _whole_image(module, x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_two_inputs_are_the_convolution_of_their_concatenation(monkeypatch):
    module = _randomised(ConvBN(7, 4, 3, relu=True))
    a, b = torch.randn(1, 3, 33, 21), torch.randn(1, 4, 33, 21)
    expected = _whole_image(module, torch.cat([a, b], dim=1))
    with torch.no_grad():
        whole = module(a, b)
        monkeypatch.setattr(layers, "_BAND_MIN_ELEMENTS", 0)
        monkeypatch.setattr(layers, "_BAND_ELEMENTS", 4 * 21 * 5)
        banded = module(a, b)
    torch.testing.assert_close(whole, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(banded, expected, rtol=0, atol=1e-5)


def test_wrong_channel_count_is_a_clear_error():
    module = _randomised(ConvBN(7, 4, 3))
    for widths in ((3, 3), (3, 5), (8,)):
        with torch.no_grad(), pytest.raises(ValueError, match="7 input channels"):
            module(*(torch.randn(1, c, 8, 8) for c in widths))


def test_bands_only_for_cpu_inference(monkeypatch):
    monkeypatch.setattr(layers, "_BAND_MIN_ELEMENTS", 0)
    module = _randomised(ConvBN(2, 2, 3))
    x = torch.randn(1, 2, 8, 8)
    assert not layers._use_bands(module, (x,))  # autograd on: training code gets plain ops
    with torch.no_grad():
        assert layers._use_bands(module, (x,))
        module.train()
        assert not layers._use_bands(module, (x,))  # batch statistics need the whole map
