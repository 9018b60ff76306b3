"""Deblurring (PROTOCOL 1.3, 3): the blurred observation and the blur inside the loss."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from mgdl_fast import BlockParams, BlockShape, bind, load_image
from mgdl_fast.spec import block_apply
from mgdl_fast.tasks.restoration import TVObjective
from mgdl_fast.tasks.restoration.observation import InverseTask
from mgdl_fast.tasks.restoration.operators import forward_diff, gaussian_kernel_2d, prox_l1, tv_loss
from mgdl_fast.train.features import FeatureCache

from ..helpers import small_camera


def test_observation_is_the_blurred_image_plus_noise():
    pixels = small_camera(24).pixels
    noisy = InverseTask(pixels, noise=3 / 255, blur_sigma=1, seed=0)
    clean_blur = InverseTask(pixels, noise=0.0, blur_sigma=1, seed=0)
    expected = ndimage.correlate(pixels[..., 0], gaussian_kernel_2d(1).numpy(), mode="reflect")
    np.testing.assert_allclose(clean_blur.observed[0].numpy(), expected, rtol=0, atol=1e-6)
    noise = (noisy.observed - clean_blur.observed).double()
    assert abs(noise.std().item() - 3 / 255) < 0.15 * 3 / 255
    assert noisy.kernel.shape == (7,) and noisy.name == "deblur"


def test_butterfly_blur3_observation_psnr_is_close_to_the_authors(shared_image):
    image = load_image(shared_image("butterfly.gif"))
    task = InverseTask(image.pixels, noise=3 / 255, blur_sigma=3, seed=0)
    # PROTOCOL 1.4: 24.6154 dB with JAX's noise (the blur is deterministic, the noise small).
    assert abs(task.observed_psnr - 24.6154) < 0.05, task.observed_psnr
    assert task.describe()["kernel_size"] == 19


def test_step_gradient_goes_through_the_blur():
    pixels = small_camera(12).pixels
    task = InverseTask(pixels, noise=3 / 255, blur_sigma=1, seed=0)
    objective = TVObjective(task, beta=1e-2, lam=1e-1)
    inputs = FeatureCache({"train": task.splits["train"].x})
    params = BlockParams.init(BlockShape(2, 8, 2, 1), seed=1)
    rows = inputs.get("train").shape[0]
    objective.start_grade(bind(params.shape, device="cpu", rows=rows), inputs, params)
    grad = params.zeros_like()
    loss = objective.step(inputs, params, grad)

    flat = params.flat.double().requires_grad_(True)
    pred = block_apply(flat, inputs.get("train").double(), params.shape).T.reshape(1, 12, 12)
    u = prox_l1(torch.zeros(1, 24, 12, dtype=torch.float64), forward_diff(pred.detach()), 0.99, 9.9)
    kernel = task.kernel.double()
    expected = tv_loss(pred, task.observed.double(), u, 1e-2, 1e-1, kernel)
    (expected_grad,) = torch.autograd.grad(expected, flat, retain_graph=True)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    torch.testing.assert_close(grad.flat.double(), expected_grad, rtol=1e-4, atol=1e-6)
    # Without the blur in the loss the gradient would differ.
    plain = tv_loss(pred, task.observed.double(), u, 1e-2, 1e-1)
    (plain_grad,) = torch.autograd.grad(plain, flat)
    assert (plain_grad - expected_grad).abs().max() > 1e-3
