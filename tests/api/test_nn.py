"""``mgdl_fast.nn``: a grade as a module over one flat parameter with weight and bias views;
the multi-grade module's prediction, features, freezing and state dicts; conversion from and
to ``MultiGradeModel``; and the export to a plain ``nn.Sequential`` that runs without
mgdl_fast."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import mgdl_fast as mf
from mgdl_fast.spec import block_apply

SHAPES = [mf.BlockShape(2, 16, 2, 3), mf.BlockShape(16, 16, 1, 3), mf.BlockShape(16, 8, 3, 3)]
SCALES = [1.0, 0.5, 0.25]


def _model() -> mf.MultiGrade:
    return mf.MultiGrade([mf.Grade(s, seed=k) for k, s in enumerate(SHAPES)], SCALES)


def _spec(model: mf.MultiGrade, x: torch.Tensor) -> torch.Tensor:
    prediction, h = 0, x.double()
    for grade, scale in zip(model.all(), SCALES):
        out, h = block_apply(grade.flat.detach().double(), h, grade.shape, return_features=True)
        prediction = prediction + scale * out
    return prediction


def test_a_grade_is_one_flat_parameter_with_views():
    grade = mf.Grade(SHAPES[0], seed=3)
    assert [name for name, _ in grade.named_parameters()] == ["flat"]
    assert torch.equal(grade.flat, mf.BlockParams.init(SHAPES[0], seed=3).flat)
    w, b = grade.weights[1], grade.biases[1]
    assert w.shape == (16, 16) and b.shape == (16,)
    assert w.untyped_storage().data_ptr() == grade.flat.untyped_storage().data_ptr()
    with torch.no_grad():
        grade.flat.zero_()
    assert not grade.weights[0].any()


def test_a_grade_computes_the_block_and_its_gradient():
    grade = mf.Grade(SHAPES[0], seed=0)
    x = torch.rand(30, 2)
    out, features = grade(x, return_features=True)
    want, want_features = block_apply(grade.flat.detach().double(), x.double(), grade.shape,
                                      return_features=True)  # fmt: skip
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grade.features(x).double(), want_features, rtol=1e-5, atol=1e-6)
    out.square().sum().backward()
    flat64 = grade.flat.detach().double().requires_grad_()
    block_apply(flat64, x.double(), grade.shape).square().sum().backward()
    torch.testing.assert_close(grade.flat.grad.double(), flat64.grad, rtol=1e-4, atol=1e-6)


def test_the_multi_grade_module_sums_the_grades_and_chains_their_features():
    model, x = _model(), torch.rand(40, 2)
    torch.testing.assert_close(model(x).double(), _spec(model, x), rtol=1e-5, atol=1e-6)
    trained = model.to_model()
    torch.testing.assert_close(model(x), trained.predict(x), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(model.features(x), trained.features(x), rtol=1e-6, atol=1e-7)
    back = trained.to_module()
    assert torch.equal(back(x), model(x))
    assert not any(p.requires_grad for p in back.parameters())


def test_freezing_leaves_only_the_newest_grades_trainable():
    model = _model().freeze(2)
    assert [g.flat.requires_grad for g in model.all()] == [False, False, True]
    model(torch.rand(20, 2)).sum().backward()
    assert [g.flat.grad is None for g in model.all()] == [True, True, False]


def test_state_dict_round_trip_and_shape_check():
    model, x = _model(), torch.rand(10, 2)
    state = model.state_dict()
    other = mf.MultiGrade([mf.Grade(s, seed=9) for s in SHAPES], [1.0, 1.0, 1.0])
    other.load_state_dict(state)
    assert torch.equal(other(x), model(x))
    state["grades.1._extra_state"] = {"shape": mf.BlockShape(16, 16, 1, 4).to_dict()}
    with pytest.raises(mf.InputError, match="this module is"):
        other.load_state_dict(state)
    with pytest.raises(mf.InputError, match="reads 2 features but grade 1 has width 16"):
        mf.MultiGrade([mf.Grade(SHAPES[0]), mf.Grade(SHAPES[0])])


def test_a_module_converted_to_fp64_gets_a_one_line_error():
    grade = mf.Grade(SHAPES[0]).double()
    with pytest.raises(mf.InputError, match="parameters dtype float64 is not float32"):
        grade(torch.rand(4, 2))


def test_sequential_export_matches_and_is_plain_pytorch():
    model, x = _model(), torch.rand(64, 2)
    for module, reference in [(model[0], model[0]), (model, model)]:
        stack = module.to_sequential()
        assert isinstance(stack, nn.Sequential)
        assert {type(m) for m in stack} <= {nn.Linear, nn.ReLU}
        torch.testing.assert_close(stack(x), reference(x), rtol=1e-5, atol=1e-6)


def test_the_exported_stack_runs_where_mgdl_fast_cannot_be_imported(tmp_path):
    model, x = _model(), torch.rand(16, 2)
    path = tmp_path / "stack.pt"
    torch.save({"stack": model.to_sequential(), "x": x}, path)
    code = (
        "import sys; sys.modules['mgdl_fast'] = None; import torch; "
        f"d = torch.load({str(path)!r}, weights_only=False); "
        f"torch.save(d['stack'](d['x']), {str(tmp_path / 'out.pt')!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), model(x), rtol=1e-5, atol=1e-6)
