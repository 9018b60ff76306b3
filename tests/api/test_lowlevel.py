"""The low-level API: the functions agree bit for bit with the bound engine they run on (the
public fast path), and bad operands get one-line InputErrors stating the dtype policy, the same
from the functions, the raw torch.ops, under torch.compile, and from a trained model."""

from __future__ import annotations

import pytest
import torch

import mgdl_fast as mf
from mgdl_fast import BlockParams, InputError, ops
from mgdl_fast.spec import block_apply

from ..ops.cases import DEVICE, backend_params
from .cases import DIMS, SHAPE, config, data


@pytest.mark.parametrize("name", backend_params())
def test_the_functions_run_the_bound_engine_exactly(name):
    kw = config(name)
    params, x, y = data(21)
    engine = mf.bind(SHAPE, device=DEVICE, rows=21, options=mf.Options(kw["precision"]),
                     backend=name)  # fmt: skip
    out = torch.empty(21, 2, device=DEVICE)
    engine.forward(x, params.flat, out)
    assert torch.equal(ops.block_forward(x, params, **kw), out)
    grad = torch.empty_like(params.flat)
    loss = engine.step(x, y, params.flat, grad).clone()
    got_loss, got_grad = ops.grade_step(x, y, params, **kw)
    assert torch.equal(got_loss, loss) and torch.equal(got_grad, grad)
    grad_x = torch.empty_like(x)
    engine.backward(x, params.flat, y, grad, grad_x)
    got_grad, got_x = ops.block_backward(x, params, y, input_grad=True, **kw)
    assert torch.equal(got_grad, grad) and torch.equal(got_x, grad_x)


@pytest.mark.parametrize("name", backend_params())
def test_optimizer_steps_match_the_engine_update(name):
    params, _, _ = data()
    ours, theirs = params.clone(), params.clone()
    engine = mf.bind(SHAPE, device=DEVICE, rows=1, backend=name)
    adam = engine.optimizer_state("adam", 1e-2, params.flat.numel())
    m, v = torch.zeros_like(params.flat), torch.zeros_like(params.flat)
    step = torch.zeros((), dtype=torch.float64, device=DEVICE)
    for k in range(1, 6):
        grad = torch.sin(k * params.flat)
        mf.adam_step(ours, grad, m, v, step, lr=1e-2, backend=name)
        engine.update(theirs.flat, grad, adam)
    assert step.item() == 5 and torch.equal(ours.flat, theirs.flat)
    assert torch.equal(m, adam.exp_avg) and torch.equal(v, adam.exp_avg_sq)
    gd = engine.optimizer_state("gd", 0.1, params.flat.numel())
    mf.gd_step(ours, grad, lr=0.1, backend=name)
    engine.update(theirs.flat, grad, gd)
    assert torch.equal(ours.flat, theirs.flat)


def test_bf16_inputs_get_fp32_outputs_and_bf16_input_gradients():
    params, x, _ = data(19, shape=mf.BlockShape(16, 16, 2, 1))
    x16 = torch.relu(x.normal_()).to(torch.bfloat16).requires_grad_()
    out, features = mf.block_forward(
        x16, params, return_features=True, features_dtype=torch.bfloat16
    )
    assert out.dtype == torch.float32 and features.dtype == torch.bfloat16
    (grad_x,) = torch.autograd.grad(out.sum(), x16)
    x64 = x16.detach().double().requires_grad_()
    spec = block_apply(params.flat.double(), x64, params.shape)
    (want,) = torch.autograd.grad(spec.sum(), x64)
    assert grad_x.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), spec.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x.double(), want, rtol=1e-2, atol=1e-2)


def _params():
    return BlockParams.init(SHAPE, seed=0)


BAD_INPUTS = [
    (torch.rand(5, 2), "x must have 3 columns, got shape [5, 2]"),
    (torch.rand(5), "x must be 2-D [N, 3], got shape [5]"),
    (torch.rand(2, 5, 3), "x must be 2-D [N, 3], got shape [2, 5, 3]"),
    (torch.rand(0, 3), "x has no rows"),
    (torch.rand(5, 3).double(), "x dtype float64 is not float32 or bfloat16 (inputs are fp32"),
    (torch.randint(0, 5, (5, 3)), "x dtype int64 is not float32 or bfloat16"),
    ([[0.0, 0.0, 0.0]], "x must be a torch.Tensor, got list"),
]


def _one_line(call, message: str) -> None:
    with pytest.raises(InputError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize("x, message", BAD_INPUTS, ids=[m[:24] for _, m in BAD_INPUTS])
def test_bad_inputs_get_one_line_errors_everywhere(x, message):
    params = _params()
    _one_line(lambda: mf.block_forward(x, params), message)
    _one_line(lambda: mf.grade_step(x, torch.rand(5, 2), params), message)
    if isinstance(x, torch.Tensor):
        _one_line(lambda: torch.ops.mgdl_fast.block_fwd(x, params.flat, DIMS), message)
        torch._dynamo.reset()
        _one_line(lambda: torch.compile(lambda x: mf.block_forward(x, params))(x), message)


def test_bad_parameters_targets_and_states_get_one_line_errors():
    params, x = _params(), torch.rand(5, 3)
    _one_line(lambda: mf.block_forward(x, params.flat), "params must be BlockParams")
    bad = BlockParams(SHAPE, params.flat.double())
    _one_line(lambda: mf.block_forward(x, bad), "parameters dtype float64 is not float32")
    _one_line(lambda: mf.grade_step(x, torch.rand(5, 1), params), "y must have 2 columns")
    _one_line(lambda: mf.grade_step(x, torch.rand(4, 2), params), "y must have 5 rows, got 4")
    _one_line(lambda: mf.grade_step(x, torch.rand(5, 2).double(), params), "y dtype float64")
    _one_line(lambda: mf.block_backward(x, params, torch.rand(5, 3)), "grad_out must have 2")
    p = params.flat.numel()
    m, v, step = torch.zeros(p), torch.zeros(p), torch.zeros(())
    _one_line(lambda: mf.adam_step(params, torch.zeros(p), m, v, step, lr=1e-3),
              "step must be [] float64, got [] float32")  # fmt: skip
    _one_line(lambda: mf.adam_step(params, torch.zeros(p), m[:3], v, step.double(), lr=1e-3),
              "exp_avg must be [370] float32, got [3] float32")  # fmt: skip
    _one_line(
        lambda: mf.gd_step(params, torch.zeros(3), lr=0.1), "grad must be [370] float32, got [3]"
    )
    _one_line(lambda: torch.ops.mgdl_fast.block_fwd(x, params.flat, [3, 16, 2]),
              "shape must be [D, W, L, C]")  # fmt: skip


def test_a_trained_model_checks_what_it_is_asked_to_predict():
    model = mf.MultiGradeModel([_params()])
    _one_line(lambda: model.render(0, 5), "height must be an integer >= 1, got 0")
    _one_line(lambda: model.render(4, 4, chunk_size=0), "chunk_size must be an integer >= 1")
    _one_line(lambda: model.predict(torch.rand(5, 2)), "x must have 3 columns")
    _one_line(lambda: model.predict(torch.rand(5, 3).double()), "x dtype float64 is not float32")
    _one_line(lambda: model.predict(torch.rand(5, 3), num_grades=2), "num_grades must be 1-1")
    _one_line(lambda: mf.MultiGradeModel().render(4, 4), "the model has no grades")
