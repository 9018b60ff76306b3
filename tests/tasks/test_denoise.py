"""Denoising (PROTOCOL 3): observation, scale factors, u across grades, gradients, the loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mgdl_fast import BlockParams, BlockShape, ModelConfig, TrainConfig, fit, load_image
from mgdl_fast.backends import bind
from mgdl_fast.errors import InputError
from mgdl_fast.spec import block_apply
from mgdl_fast.tasks.restoration import TVObjective
from mgdl_fast.tasks.restoration.observation import InverseTask
from mgdl_fast.tasks.restoration.operators import forward_diff, prox_l1, psnr, tv_loss
from mgdl_fast.train.features import FeatureCache, MemoryStore, freeze_grade

from ..helpers import small_camera


@pytest.fixture(scope="module")
def pixels():
    return small_camera(16).pixels


def _train(**overrides):
    settings = {
        "epochs": 60,
        "lr": 5e-3,
        "record_every": 10,
        "test_every": 10,
        "early_stopping": False,
        "device": "cpu",
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def _fit(pixels, grades=3, epochs=60, blur_sigma=None, **kwargs):
    task = InverseTask(pixels, noise=10 / 255, blur_sigma=blur_sigma, seed=0)
    objective = TVObjective(task, beta=1.0, lam=1e-2)
    model = ModelConfig(grades=grades, width=16, layers=2)
    result = fit(task, objective, model, _train(epochs=epochs), progress=False, **kwargs)
    return task, objective, result


def test_observation_is_reproducible_and_has_the_requested_noise(pixels):
    a = InverseTask(pixels, noise=10 / 255, seed=3)
    b = InverseTask(pixels, noise=10 / 255, seed=3)
    c = InverseTask(pixels, noise=10 / 255, seed=4)
    assert torch.equal(a.observed, b.observed) and not torch.equal(a.observed, c.observed)
    expected = -10 * math.log10(torch.mean((a.observed.double() - a.clean.double()) ** 2).item())
    assert math.isclose(a.observed_psnr, expected, rel_tol=1e-6)
    assert a.splits["train"].x.shape == (256, 2) and a.splits["train"].y.shape == (256, 1)
    # The pixel order of the split is the image's row-major order.
    torch.testing.assert_close(a.splits["train"].y[:, 0].reshape(16, 16), a.observed[0])


def test_butterfly_observation_psnr_is_close_to_the_authors(shared_image):
    image = load_image(shared_image("butterfly.gif"))
    # PROTOCOL 1.4 (JAX's noise): 28.1214 dB; torch's noise differs, its variance by ~0.3%.
    task = InverseTask(image.pixels, noise=10 / 255, seed=0)
    assert abs(task.observed_psnr - 28.1214) < 0.05, task.observed_psnr


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"noise": -1.0}, "noise level"),
        ({"noise": float("nan")}, "noise level"),
        ({"noise": 0.0}, "needs a noise level"),
    ],
)
def test_bad_observations_are_refused(pixels, kwargs, message):
    with pytest.raises(InputError, match=message):
        InverseTask(pixels, **kwargs)


@pytest.mark.parametrize("beta, lam", [(0.0, 1e-2), (-1.0, 1e-2), (1.0, -1e-3), (1.0, math.nan)])
def test_bad_tv_weights_are_refused(pixels, beta, lam):
    with pytest.raises(InputError, match="out of range"):
        TVObjective(InverseTask(pixels, noise=0.1), beta=beta, lam=lam)


def _fit_tracking(pixels, grades, epochs, hook=None):
    """Fit and keep copies of the accumulated image and u after every grade."""
    task = InverseTask(pixels, noise=10 / 255, seed=0)
    objective = TVObjective(task, beta=1.0, lam=1e-2)
    ends = []
    result = fit(
        task,
        objective,
        ModelConfig(grades=grades, width=16, layers=2),
        _train(epochs=epochs),
        progress=False,
        hook=hook,
        on_grade_end=lambda r: ends.append((objective.acc.clone(), objective.u.clone())),
    )
    return task, objective, result, ends


def test_scale_factors_are_the_rmse_of_the_previous_prediction(pixels):
    task, objective, result, ends = _fit_tracking(pixels, grades=3, epochs=40)
    scales = result.model.scales
    assert scales[0] == 1.0
    for k in (1, 2):
        acc = ends[k - 1][0].double()
        rmse = torch.sqrt(torch.mean((acc - task.observed.double()) ** 2))
        assert math.isclose(scales[k], rmse.item(), rel_tol=1e-9), (k, scales)
        assert math.isclose(result.records[k].final["scale"], scales[k], rel_tol=1e-12)
    # The model renders the accumulated image: sum_k s_k N_k.
    rendered = result.model.predict(task.splits["train"].x)[:, 0].reshape(16, 16)
    torch.testing.assert_close(rendered, objective.acc[0], rtol=1e-5, atol=1e-6)


def test_u_starts_at_zero_and_is_carried_across_grades(pixels):
    seen = {}

    def hook(grade, epoch, params, inputs, objective):
        if epoch == 0:
            seen[grade] = objective.u.clone()

    _, _, _, ends = _fit_tracking(pixels, grades=2, epochs=30, hook=hook)
    assert not seen[1].any()
    assert seen[2].abs().sum() > 0
    torch.testing.assert_close(seen[2], ends[0][1], rtol=0, atol=0)


def test_step_updates_u_first_and_gives_the_gradient_of_the_loss(pixels):
    task, objective, result = _fit(pixels, grades=1, epochs=30)
    # Grade 2 by hand: one step of the objective against autograd through the functional block.
    first = result.model.grades[0]
    n = task.splits["train"].x.shape[0]
    inputs, _, _ = freeze_grade(
        bind(first.shape, device="cpu", rows=n),
        first,
        FeatureCache({"train": task.splits["train"].x}),
        ("train",),
        MemoryStore({"train": n}, first.shape.width, torch.float32, "cpu"),
    )
    params = BlockParams.init(BlockShape(16, 16, 2, 1), seed=5)
    rows = task.splits["train"].x.shape[0]
    objective.start_grade(bind(params.shape, device="cpu", rows=rows), inputs, params)
    u_before, acc = objective.u.clone(), objective.acc.clone()
    grad = params.zeros_like()
    loss = objective.step(inputs, params, grad)

    flat = params.flat.double().requires_grad_(True)
    out = block_apply(flat, inputs.get("train").double(), params.shape)
    pred = acc.double() + objective.scale * out.T.reshape(acc.shape)
    u = prox_l1(u_before.double(), forward_diff(pred.detach()), 0.99, 0.99 * 1e-2 / 1.0)
    torch.testing.assert_close(objective.u.double(), u, rtol=1e-5, atol=1e-6)
    expected = tv_loss(pred, task.observed.double(), u, 1.0, 1e-2)
    (expected_grad,) = torch.autograd.grad(expected, flat)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    torch.testing.assert_close(grad.flat.double(), expected_grad, rtol=1e-4, atol=1e-6)
    assert objective.scale != 1.0


def test_grade_loss_decreases_and_psnr_is_logged(pixels):
    task, objective, result = _fit(pixels, grades=2, epochs=80)
    for record in result.records:
        losses = record.curves["train_loss"]["value"]
        assert losses[-1] < losses[0], losses
        assert record.curves["psnr"]["epoch"] == list(range(0, 80, 10))
    finals = [r.final["train_loss"] for r in result.records]
    assert finals[1] < finals[0], finals
    assert math.isclose(
        result.records[-1].final["psnr"], psnr(objective.acc, task.clean).item(), rel_tol=1e-9
    )
    assert np.isfinite(objective.reconstruction()).all()
