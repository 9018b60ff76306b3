"""Backend resolution: explicit, environment, auto; reasons for what cannot be served."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import (
    BackendUnavailableError,
    BlockParams,
    BlockShape,
    InputError,
    dispatch,
    reference,
)


@pytest.fixture
def inputs():
    params = BlockParams.init(BlockShape(2, 16, 2, 1), seed=0)
    return torch.rand(10, 2), params


def test_reference_serves_everything(inputs):
    x, params = inputs
    for op in dispatch.OPS:
        assert dispatch.reasons("reference", op, x, params) == []
        name, fn = dispatch.resolve(op, x, params, backend="reference")
        assert name == "reference" and fn is getattr(reference, op)


def test_auto_picks_reference_for_cpu_tensors(inputs, monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    name, _ = dispatch.resolve("grade_step", *inputs)
    assert name == "reference"


def test_environment_variable_selects_backend(inputs, monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "reference")
    assert dispatch.resolve("block_fwd", *inputs)[0] == "reference"
    monkeypatch.setenv(dispatch.ENV_VAR, "no-such-backend")
    with pytest.raises(InputError, match="unknown backend 'no-such-backend'"):
        dispatch.resolve("block_fwd", *inputs)


def test_explicit_backend_that_cannot_serve_raises_with_reasons(inputs, monkeypatch):
    x, params = inputs
    monkeypatch.setitem(dispatch._import_errors, "cuda", "cannot import mgdl_fast._cuda: test")
    monkeypatch.delitem(dispatch._modules, "cuda", raising=False)
    expected = "backend 'cuda' cannot run grade_step: cannot import"
    with pytest.raises(BackendUnavailableError, match=expected):
        dispatch.resolve("grade_step", x, params, backend="cuda")


def test_unknown_op_is_rejected(inputs):
    with pytest.raises(ValueError, match="unknown op"):
        dispatch.reasons("reference", "block_fly", *inputs)
