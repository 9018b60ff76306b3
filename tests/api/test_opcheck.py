"""``torch.library.opcheck`` of every mgdl_fast custom op on every backend that runs here:
schema, fake kernel, autograd registration and AOT dispatch with dynamic shapes."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast.ops import library

from ..ops.cases import backend_params
from .cases import DIMS, config, data


def _op_cases(name: str):
    params, x, y = data()
    flat = params.flat.clone().requires_grad_()
    xg = x.clone().requires_grad_()
    grad_out = torch.randn_like(y)
    p = flat.numel()
    kw = config(name)
    backend, precision = kw["backend"], kw["precision"]
    adam_state = (torch.randn(p), torch.zeros(p), torch.zeros(p),
                  torch.zeros((), dtype=torch.float64))  # fmt: skip
    return {
        "block_fwd": (library.block_fwd, (xg, flat, DIMS, backend, precision, None)),
        "block_fwd_features": (
            library.block_fwd_features,
            (xg, flat, DIMS, torch.bfloat16, backend, precision, None),
        ),
        "block_bwd": (
            library.block_bwd,
            (xg, flat, grad_out.requires_grad_(), DIMS, True, backend, precision, None),
        ),
        "block_bwd_params_only": (
            library.block_bwd,
            (x, flat, grad_out, DIMS, False, backend, precision, None),
        ),
        "grade_step": (library.grade_step, (xg, y, flat, DIMS, backend, precision, None)),
        "adam_step": (
            library.adam_step,
            (params.flat.clone(), *adam_state, DIMS, 1e-3, 0.9, 0.999, 1e-8, backend),
        ),
        "gd_step": (library.gd_step, (params.flat.clone(), torch.randn(p), DIMS, 0.1, backend)),
    }


OPS = list(_op_cases("torch"))


@pytest.mark.parametrize("op_name", OPS)
@pytest.mark.parametrize("name", backend_params())
def test_opcheck_passes(name, op_name):
    op, args = _op_cases(name)[op_name]
    result = torch.library.opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result


def test_every_op_is_registered_in_the_mgdl_fast_namespace():
    names = {"block_fwd", "block_fwd_features", "block_bwd", "grade_step", "adam_step", "gd_step"}
    assert all(hasattr(torch.ops.mgdl_fast, n) for n in names)
    assert torch.Tag.pt2_compliant_tag in torch.ops.mgdl_fast.block_fwd.default.tags
