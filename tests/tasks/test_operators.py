"""Blur, TV and proximal operators against scipy / scikit-image / numpy and their closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import filters

from mgdl_fast.errors import InputError
from mgdl_fast.tasks.restoration.operators import (
    blur,
    forward_diff,
    gaussian_kernel_1d,
    gaussian_kernel_2d,
    kernel_size,
    prox_l1,
    symmetric_index,
    tv_loss,
)


def _random_image(shape, seed=0):
    return np.random.default_rng(seed).random(shape)


@pytest.mark.parametrize("sigma, size", [(3, 19), (5, 31), (7, 43), (1, 7), (0.5, 5)])
def test_kernel_matches_the_authors_formula(sigma, size):
    assert kernel_size(sigma) == size
    ax = np.arange(-size // 2 + 1, size // 2 + 1)
    xx, yy = np.meshgrid(ax, ax)
    expected = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    expected /= expected.sum()
    np.testing.assert_allclose(gaussian_kernel_2d(sigma).numpy(), expected, rtol=1e-12)
    assert abs(gaussian_kernel_1d(sigma).sum().item() - 1.0) < 1e-12


@pytest.mark.parametrize("sigma", [0, -1, float("nan"), float("inf")])
def test_bad_sigma_is_refused(sigma):
    with pytest.raises(InputError, match="sigma"):
        kernel_size(sigma)


@pytest.mark.parametrize("n, pad", [(5, 2), (5, 5), (4, 9), (1, 3)])
def test_symmetric_index_is_numpy_symmetric_padding(n, pad):
    expected = np.pad(np.arange(n), pad, mode="symmetric")
    np.testing.assert_array_equal(symmetric_index(n, pad).numpy(), expected)


@pytest.mark.parametrize("shape, sigma", [((23, 17), 1), ((40, 33), 3), ((16, 12), 3), ((9, 9), 2)])
def test_blur_matches_scipy_and_skimage(shape, sigma):
    image = _random_image(shape)
    ours = blur(torch.from_numpy(image), gaussian_kernel_1d(sigma)).numpy()
    # scipy's 'reflect' is numpy's 'symmetric' (the edge sample is repeated).
    expected = ndimage.correlate(image, gaussian_kernel_2d(sigma).numpy(), mode="reflect")
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    # skimage's Gaussian truncated at 3 sigma is the same kernel for integer sigma.
    sk = filters.gaussian(image, sigma=sigma, mode="reflect", truncate=3.0, preserve_range=True)
    np.testing.assert_allclose(ours, sk, rtol=1e-10, atol=1e-12)


def test_blur_matches_padding_then_valid_2d_convolution():
    image = _random_image((3, 21, 18))
    kernel = gaussian_kernel_2d(3).numpy()
    padded = np.pad(image, ((0, 0), (9, 9), (9, 9)), mode="symmetric")
    expected = np.stack([ndimage.correlate(p, kernel, mode="constant")[9:-9, 9:-9] for p in padded])
    ours = blur(torch.from_numpy(image), gaussian_kernel_1d(3)).numpy()
    assert ours.shape == image.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


def test_forward_diff_matches_numpy():
    image = _random_image((2, 7, 5))
    ours = forward_diff(torch.from_numpy(image)).numpy()
    assert ours.shape == (2, 14, 5)
    for c in range(2):
        p = image[c]
        expected = np.vstack(
            [np.diff(p, axis=0, append=p[-1:, :]), np.diff(p, axis=1, append=p[:, -1:])]
        )
        np.testing.assert_array_equal(ours[c], expected)
    assert not ours[:, 6, :].any() and not ours[:, 7:, -1].any()


def test_prox_is_soft_thresholding_and_minimises_the_prox_objective():
    gen = torch.Generator().manual_seed(0)
    u, d = torch.randn(50, generator=gen, dtype=torch.float64), torch.randn(50, generator=gen)
    d = d.double()
    alpha, lam, beta = 0.99, 0.3, 0.7
    threshold = alpha * lam / beta
    z = prox_l1(u, d, alpha, threshold)
    t = alpha * d + (1 - alpha) * u
    expected = torch.where(t.abs() <= threshold, torch.zeros_like(t), t - threshold * t.sign())
    torch.testing.assert_close(z, expected, rtol=0, atol=1e-15)
    # z = argmin_v 0.5 (v - t)^2 + threshold |v| elementwise: check against a dense grid.
    grid = torch.linspace(-4, 4, 160_001, dtype=torch.float64)
    values = 0.5 * (grid[None, :] - t[:, None]) ** 2 + threshold * grid.abs()[None, :]
    torch.testing.assert_close(z, grid[values.argmin(dim=1)], rtol=0, atol=1e-4)


def test_gradients_by_gradcheck():
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(2, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    kernel = gaussian_kernel_1d(1)
    assert torch.autograd.gradcheck(lambda x: blur(x, kernel), (image,))
    assert torch.autograd.gradcheck(forward_diff, (image,))
    observed = torch.rand(2, 6, 5, generator=gen, dtype=torch.float64)
    u = torch.randn(2, 12, 5, generator=gen, dtype=torch.float64)
    for k in (None, kernel):
        assert torch.autograd.gradcheck(
            lambda x, k=k: tv_loss(x, observed, u, 0.5, 0.1, k), (image,)
        )


def test_tv_loss_gradient_has_the_closed_form():
    gen = torch.Generator().manual_seed(2)
    pred = torch.rand(8, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    observed = torch.rand(8, 7, generator=gen, dtype=torch.float64)
    u = torch.randn(16, 7, generator=gen, dtype=torch.float64)
    beta = 0.3
    (grad,) = torch.autograd.grad(tv_loss(pred, observed, u, beta, 0.2), pred)
    # d/dp [0.5 |p - y|^2 + 0.5 beta |Dp - u|^2] = (p - y) + beta D^T (Dp - u), D as a matrix.
    n = pred.numel()
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 8, 7)
    matrix = forward_diff(basis).reshape(n, -1).T
    p = pred.detach().reshape(-1)
    expected = (p - observed.reshape(-1)) + beta * matrix.T @ (matrix @ p - u.reshape(-1))
    torch.testing.assert_close(grad.reshape(-1), expected, rtol=1e-12, atol=1e-12)
