"""``mgdl_fast.block_forward`` under torch.func (grad, vjp, jacrev, jacfwd, jvp, vmap,
per-sample gradients, Hessians) and double backward, against the same transform of the
specification, on every backend that runs here."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import BlockParams, block_forward, ops
from mgdl_fast.ops import library
from mgdl_fast.spec import block_apply

from ..ops.cases import backend_params
from .cases import DIMS, SHAPE, config, data

# Forward-mode AD loads torch's jvp decompositions, which still call torch.jit.script.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning")

# Small enough for the Triton interpreter: jacrev and per-sample gradients run one engine
# backward per output element.
N = 5
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _pair(name: str):
    """``(f, spec)``: the block at ``flat`` on backend ``name`` and the specification."""
    params, x, _ = data(N)
    kw = config(name)

    def f(flat, x=x):
        return block_forward(x, BlockParams(SHAPE, flat), **kw)

    def spec(flat, x=x):
        return block_apply(flat, x, SHAPE)

    return params.flat, x, f, spec


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, **TOL)


@pytest.mark.parametrize("name", backend_params())
def test_grad_jacrev_jacfwd_and_jvp_match_the_specification(name):
    flat, _, f, spec = _pair(name)
    loss = lambda g: lambda flat: (g(flat) ** 2).sum()  # noqa: E731
    _close(torch.func.grad(loss(f))(flat), torch.func.grad(loss(spec))(flat))
    _close(torch.func.jacrev(f)(flat), torch.func.jacrev(spec)(flat))
    _close(torch.func.jacfwd(f)(flat), torch.func.jacfwd(spec)(flat))
    tangent = torch.randn_like(flat)
    out, out_t = torch.func.jvp(f, (flat,), (tangent,))
    want, want_t = torch.func.jvp(spec, (flat,), (tangent,))
    _close(out, want)
    _close(out_t, want_t)


@pytest.mark.parametrize("name", backend_params())
def test_vmap_over_inputs_parameters_and_per_sample_gradients(name):
    flat, x, f, spec = _pair(name)
    xs = torch.rand(4, N, 3, device=flat.device)
    _close(torch.func.vmap(lambda x: f(flat, x))(xs), torch.func.vmap(lambda x: spec(flat, x))(xs))
    flats = torch.stack([flat, 0.5 * flat])
    _close(torch.func.vmap(f)(flats), torch.func.vmap(spec)(flats))

    def per_sample(g):
        one = lambda flat, xi: g(flat, xi[None]).sum()  # noqa: E731
        return torch.func.vmap(torch.func.grad(one), in_dims=(None, 0))(flat, x)

    _close(per_sample(f), per_sample(spec))


def test_hessian_matches_the_specification():
    flat, _, f, spec = _pair("torch")
    loss = lambda g: lambda flat: (g(flat) ** 2).sum()  # noqa: E731
    _close(torch.func.hessian(loss(f))(flat), torch.func.hessian(loss(spec))(flat))


def _double_backward(forward, flat, x):
    """Gradient of ``|dL/dflat|^2`` w.r.t. ``(flat, x)`` for ``L = sum(out^2)``."""
    flat, x = flat.clone().requires_grad_(), x.clone().requires_grad_()
    out = forward(x, flat)
    (grad,) = torch.autograd.grad((out**2).sum(), flat, create_graph=True)
    return torch.autograd.grad(grad.square().sum(), (flat, x))


@pytest.mark.parametrize("name", backend_params())
def test_double_backward_through_the_function_and_the_raw_op(name):
    params, x, _ = data(N)
    kw = config(name)
    expected = _double_backward(lambda x, flat: block_apply(flat, x, SHAPE), params.flat, x)
    public = _double_backward(
        lambda x, flat: block_forward(x, BlockParams(SHAPE, flat), **kw), params.flat, x
    )
    raw = _double_backward(
        lambda x, flat: library.block_fwd(x, flat, DIMS, kw["backend"], kw["precision"], None),
        params.flat,
        x,
    )
    for got in (public, raw):
        for a, b in zip(got, expected):
            _close(a, b)


def test_gradients_through_features_and_a_training_step_use_the_torch_formulas():
    params, x, y = data(N)
    flat = params.flat.clone().requires_grad_()
    out, features = block_forward(x, BlockParams(SHAPE, flat), return_features=True)
    (got,) = torch.autograd.grad(out.sum() + features.square().sum(), flat)
    want_out, want_features = block_apply(flat, x, SHAPE, return_features=True)
    (want,) = torch.autograd.grad(want_out.sum() + want_features.square().sum(), flat)
    _close(got, want)
    loss, grad = ops.grade_step(x, y, BlockParams(SHAPE, flat))
    (hvp,) = torch.autograd.grad(grad.square().sum(), flat)
    flat64 = flat.detach().double().requires_grad_()
    spec_loss = 0.5 * torch.mean((block_apply(flat64, x.double(), SHAPE) - y.double()) ** 2)
    (spec_grad,) = torch.autograd.grad(spec_loss, flat64, create_graph=True)
    (spec_hvp,) = torch.autograd.grad(spec_grad.square().sum(), flat64)
    _close(loss.double(), spec_loss.detach())
    _close(grad.double(), spec_grad.detach())
    _close(hvp.double(), spec_hvp)


def test_forward_mode_through_a_training_step_raises_naming_it():
    params, x, y = data(N)
    with pytest.raises(RuntimeError, match="jvp"):
        torch.func.jvp(lambda f: ops.grade_step(x, y, BlockParams(SHAPE, f))[0],
                       (params.flat,), (torch.ones_like(params.flat),))  # fmt: skip
