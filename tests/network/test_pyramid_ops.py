"""Image-pyramid operations and transition masks against direct, brute-force versions of the spec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspyrenet_lite.modeling.pyramid import expand, reconstruct, reduce, transition

G1 = np.array([0.00443305, 0.05400558, 0.24203623, 0.39905028, 0.24203623, 0.05400558, 0.00443305])
G = np.outer(G1, G1)

# The neighbourhoods exactly as INSPYRENET.md draws them (OpenCV MORPH_ELLIPSE).
ELLIPSES = {
    5: ["00100", "11111", "11111", "11111", "00100"],
    9: ["000010000", "011111110", "011111110", "111111111", "111111111", "111111111",
        "011111110", "011111110", "000010000"],
    17: ["00000000100000000", "00001111111110000", "00011111111111000", "00111111111111100",
         "01111111111111110", "01111111111111110", "11111111111111111", "11111111111111111",
         "11111111111111111", "11111111111111111", "11111111111111111", "01111111111111110",
         "01111111111111110", "00111111111111100", "00011111111111000", "00001111111110000",
         "00000000100000000"],
}


def _conv_reflect(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    padded = np.pad(img, 3, mode="reflect")
    h, w = img.shape
    out = np.zeros_like(img)
    for dy in range(7):
        for dx in range(7):
            out += kernel[dy, dx] * padded[dy : dy + h, dx : dx + w]
    return out


def _expand_np(img: np.ndarray) -> np.ndarray:
    up = np.zeros((2 * img.shape[0], 2 * img.shape[1]))
    up[::2, ::2] = img
    return _conv_reflect(up, 4 * G)


def _reduce_np(img: np.ndarray) -> np.ndarray:
    return _conv_reflect(img, G)[::2, ::2]


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(2, 1, 24, 36, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_expand_and_reduce_match_the_spec(image):
    for b in range(image.shape[0]):
        img = image[b, 0].numpy()
        np.testing.assert_allclose(expand(image)[b, 0].numpy(), _expand_np(img), atol=1e-12)
        np.testing.assert_allclose(reduce(image)[b, 0].numpy(), _reduce_np(img), atol=1e-12)


def test_reconstruct_from_reduce_and_laplacian_gives_the_input_back(image):
    coarse = reduce(image)
    laplacian = image - expand(coarse)
    torch.testing.assert_close(reconstruct(coarse, laplacian), image, atol=1e-12, rtol=0)


def test_three_level_pyramid_round_trip(image):
    levels, laplacians = [image], []
    for _ in range(2):
        levels.append(reduce(levels[-1]))
        laplacians.append(levels[-2] - expand(levels[-1]))
    x = levels[-1]
    for lap in reversed(laplacians):
        x = reconstruct(x, lap)
    torch.testing.assert_close(x, image, atol=1e-12, rtol=0)


def test_reconstruct_resizes_a_smaller_laplacian():
    x = torch.zeros(1, 1, 4, 4)
    lap = torch.ones(1, 1, 3, 3)
    torch.testing.assert_close(reconstruct(x, lap), torch.ones(1, 1, 8, 8))


def _transition_brute_force(logits: np.ndarray, k: int) -> np.ndarray:
    s = 1 / (1 + np.exp(-logits))
    footprint = np.array([[c == "1" for c in row] for row in ELLIPSES[k]])
    r = k // 2
    h, w = s.shape
    dil = np.full_like(s, -np.inf)
    ero = np.full_like(s, np.inf)
    for y in range(h):
        for x in range(w):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    yy, xx = y + dy, x + dx
                    if footprint[dy + r, dx + r] and 0 <= yy < h and 0 <= xx < w:
                        dil[y, x] = max(dil[y, x], s[yy, xx])
                        ero[y, x] = min(ero[y, x], s[yy, xx])
    return (dil - ero > 0.5).astype(np.float64)


@pytest.mark.parametrize("k", [5, 9, 17])
def test_transition_matches_brute_force_neighbourhood_max_min(k):
    gen = torch.Generator().manual_seed(k)
    # A blob with soft edges plus noise: bands inside, at the borders, and in corners.
    yy, xx = torch.meshgrid(torch.arange(29.0), torch.arange(37.0), indexing="ij")
    blob = 6 - ((yy - 5) ** 2 + (xx - 30) ** 2).sqrt() * 0.8
    logits = (blob + torch.randn(29, 37, generator=gen) * 2).double()
    ours = transition(logits[None, None], k)[0, 0].numpy()
    expected = _transition_brute_force(logits.numpy(), k)
    assert expected.any() and not expected.all()  # the case exercises both outcomes
    np.testing.assert_array_equal(ours, expected)


def test_transition_handles_images_smaller_than_the_kernel():
    logits = torch.tensor([[[[-5.0, 5.0, -5.0], [5.0, -5.0, 5.0]]]], dtype=torch.float64)
    ours = transition(logits, 17)[0, 0].numpy()
    np.testing.assert_array_equal(ours, _transition_brute_force(logits[0, 0].numpy(), 17))


def test_pyramid_ops_train_after_a_first_call_under_inference_mode():
    """The blur kernel is cached on first use; inference (Remover) often comes first,
    and a cached inference tensor would make every later training step fail."""
    from inspyrenet_lite.modeling import pyramid

    pyramid._gaussian_2d.cache_clear()
    with torch.inference_mode():
        pyramid.reduce(torch.rand(1, 1, 16, 16))
    x = torch.rand(1, 1, 16, 16, requires_grad=True)
    pyramid.expand(pyramid.reduce(x)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
