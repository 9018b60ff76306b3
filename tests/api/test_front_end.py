"""What a front end runs into besides the ops' numbers: the raw ops under transforms they cannot
serve, non-contiguous parameters, freezing, checkpoints without a config, fields outside
[0, 1], and the coordinate grid of a custom loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import forward_ad

import mgdl_fast as mf
from mgdl_fast.ops.library import dims

SHAPE = mf.BlockShape(2, 16, 1, 1)


def _raw(flat, x):
    return torch.ops.mgdl_fast.block_fwd(x, flat, dims(SHAPE)).square().sum()


@pytest.mark.parametrize(
    ("transform", "name"),
    [
        (lambda f, p: torch.func.grad(f)(p), "torch.func.grad"),
        (lambda f, p: torch.func.hessian(f)(p), "torch.func"),
        (lambda f, p: torch.func.jvp(f, (p,), (torch.ones_like(p),)), "torch.func.jvp"),
    ],
    ids=["grad", "hessian", "jvp"],
)
def test_raw_ops_refuse_transforms_they_cannot_serve(transform, name):
    params, x = mf.BlockParams.init(SHAPE, seed=0), torch.rand(20, 2)
    with pytest.raises(mf.InputError, match=f"block_fwd \\(a raw op\\) does not support {name}"):
        transform(lambda f: _raw(f, x), params.flat)
    # The functions serve the same transform.
    transform(lambda f: mf.block_forward(x, mf.BlockParams(SHAPE, f)).square().sum(), params.flat)


def test_raw_ops_refuse_forward_mode_ad_and_keep_autograd_and_vmap():
    params, x = mf.BlockParams.init(SHAPE, seed=0), torch.rand(20, 2)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(params.flat, torch.ones_like(params.flat))
        with pytest.raises(mf.InputError, match="forward-mode AD"):
            _raw(dual, x)
        # No dual input: nothing to refuse.
        assert torch.equal(_raw(params.flat, x), _raw(params.flat, x))
    flat = params.flat.clone().requires_grad_()
    _raw(flat, x).backward()
    expected = torch.func.grad(
        lambda f: mf.block_forward(x, mf.BlockParams(SHAPE, f)).square().sum()
    )
    torch.testing.assert_close(flat.grad, expected(params.flat))
    batched = torch.func.vmap(lambda x: torch.ops.mgdl_fast.block_fwd(x, params.flat, dims(SHAPE)))
    assert batched(torch.rand(3, 5, 2)).shape == (3, 5, 1)


def test_non_contiguous_parameters_are_made_contiguous():
    columns = torch.stack([mf.BlockParams.init(SHAPE, seed=s).flat for s in range(3)], dim=1)
    columns.requires_grad_()
    params = mf.BlockParams(SHAPE, columns[:, 1])
    assert params.flat.is_contiguous()
    x = torch.rand(10, 2)
    out = mf.block_forward(x, params)
    assert torch.equal(out, mf.block_forward(x, mf.BlockParams.init(SHAPE, seed=1)))
    out.sum().backward()
    assert columns.grad[:, 1].abs().sum() > 0 and not columns.grad[:, [0, 2]].any()


def test_freeze_leaves_later_grades_as_they_were():
    shapes = [SHAPE, mf.BlockShape(16, 16, 1, 1), mf.BlockShape(16, 16, 1, 1)]
    model = mf.MultiGrade([mf.Grade(s, seed=k) for k, s in enumerate(shapes)]).freeze()
    model.freeze(1)
    assert [g.flat.requires_grad for g in model.all()] == [False, False, False]
    model[2].freeze(False)
    model.freeze(2)
    assert [g.flat.requires_grad for g in model.all()] == [False, False, True]
    with pytest.raises(mf.InputError, match="grades to freeze must be 0-3, got 4"):
        model.freeze(4)


def test_a_checkpoint_needs_no_config(tmp_path):
    model = mf.MultiGradeModel([mf.BlockParams.init(SHAPE, seed=0)])
    mf.save_checkpoint(tmp_path / "model", model)
    loaded, config = mf.load_checkpoint(tmp_path / "model")
    assert config == {} and torch.equal(loaded.grades[0].flat, model.grades[0].flat)


def _field() -> np.ndarray:
    """A smooth temperature field in kelvin, [12, 10]."""
    rows, cols = np.meshgrid(np.linspace(0, 1, 12), np.linspace(0, 1, 10), indexing="ij")
    return 290.0 + 4.0 * np.sin(3 * rows) * np.cos(2 * cols)


def test_fit_regression_takes_a_field_and_its_data_range():
    field = _field()
    cfg = mf.TrainConfig(epochs=20, lr=1e-2, device="cpu", early_stopping=False)
    model = mf.ModelConfig(grades=1, width=16, layers=1)
    result = mf.fit_regression(field, model, cfg, progress=False)
    final = result.records[-1].final
    span = field.max() - field.min()
    assert final["test_psnr"] == pytest.approx(-10 * math.log10(2 * final["test_loss"] / span**2))
    chosen = mf.fit_regression(field, model, cfg, data_range=50.0, progress=False)
    final = chosen.records[-1].final
    assert final["test_psnr"] == pytest.approx(-10 * math.log10(2 * final["test_loss"] / 2500))
    with pytest.raises(mf.InputError, match="NaN or infinite"):
        mf.fit_regression(np.full((4, 4), np.nan), model, cfg, progress=False)
    with pytest.raises(mf.InputError, match="data range"):
        mf.fit_regression(field, model, cfg, data_range=0.0, progress=False)


def test_the_coordinate_grid_is_what_the_trainer_reads():
    image = mf.from_array(np.random.default_rng(0).random((6, 8)))
    grid = mf.coordinate_grid(6, 8)
    task = mf.RegressionTask(image.pixels)
    assert torch.equal(task.splits["test"].x, grid.reshape(-1, 2))
    assert torch.equal(task.splits["train"].x, grid[::2, ::2].reshape(-1, 2))
    assert torch.equal(mf.grid_rows(6, 8, 2, 4), grid[2:4].reshape(-1, 2))
