"""The constructive multigrade scheme (paper 2, our construction): the hats, the grade-wise
decay it certifies, and its ReLU networks against the operator in closed form (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mgdl_fast
from mgdl_fast.errors import InputError
from mgdl_fast.experiments.construct import construct
from mgdl_fast.experiments.construct.kuhn import hat_sum, nodes
from mgdl_fast.experiments.construct.model import grid
from mgdl_fast.experiments.construct.network import min_width, realize

PI = math.pi
# name: (dim, f, Lipschitz bound sup |grad f|_1, bound on sup sum_ab |d_a d_b f| or None).
TARGETS = {
    "smooth": (1, lambda x: np.exp(-x[:, 0]) * np.cos(3 * x[:, 0]), 4.0, 10.0),
    "sin32": (1, lambda x: np.sin(32 * PI * x[:, 0]), 32 * PI, (32 * PI) ** 2),
    "kink": (1, lambda x: np.abs(x[:, 0] - 0.3), 1.0, None),
    "exp_xy": (2, lambda x: np.exp(x[:, 0] * x[:, 1]), 2 * math.e, 6 * math.e),
}
GRADES = 6
FINE = {1: 8193, 2: 129, 3: 17}


@pytest.fixture(scope="module")
def models():
    return {
        name: construct(f, dim, GRADES, lipschitz=lip, curvature=curv)
        for name, (dim, f, lip, curv) in TARGETS.items()
    }


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_kuhn_hats_are_a_partition_of_unity_reproducing_linears(dim):
    x = np.random.default_rng(dim).random((3000, dim))
    n = 5
    assert np.abs(hat_sum(np.ones((n + 1,) * dim), x) - 1).max() < 1e-14
    slope = np.arange(1.0, dim + 1)
    linear = (nodes(n, dim) @ slope).reshape((n + 1,) * dim)
    assert np.abs(hat_sum(linear, x) - x @ slope).max() < 1e-13


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_residuals_decay_grade_by_grade(models, name):
    """|e_k| <= |e_{k-1}| at every point of a fine grid; L1, L2, L4 strictly smaller every
    grade; Linf no larger, and within the certified contraction of the sampled sup."""
    model = models[name]
    x = grid(FINE[model.dim], model.dim)
    e = np.abs(model.residuals(x, method="operator"))
    assert e.shape == (GRADES + 1, x.shape[0])
    assert np.all(e[1:] <= e[:-1])
    norms = model.residual_norms(x, method="operator")
    for before, after, grade in zip(norms, norms[1:], model.grades):
        for p in ("L1", "L2", "L4"):
            assert after[p] < before[p]
        assert after["Linf"] <= before["Linf"]
        op = grade.operator
        assert after["Linf"] <= op.bound <= 0.75 * op.sup_sampled
    assert norms[-1]["Linf"] <= 0.75**GRADES * norms[0]["Linf"] * 1.05


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_networks_equal_the_operator(models, name):
    model = models[name]
    dim = model.dim
    rng = np.random.default_rng(0)
    x = np.concatenate([grid(257 if dim == 1 else 17, dim), rng.random((200, dim))])
    for grade in model.grades:
        net = grade.network
        assert net.width <= 5 * dim and net.w.shape[1:] == (net.width, net.width)
        assert np.abs(grade(x) - grade(x, method="operator")).max() <= 1e-12
    total = model.predict(x, grades=3)
    assert np.abs(total - model.predict(x, grades=3, method="operator")).max() <= 1e-12
    assert np.array_equal(model.predict(x, grades=0), np.zeros(x.shape[0]))


def test_three_dimensions():
    f = lambda x: np.cos(x[:, 0] + 2 * x[:, 1] - x[:, 2])  # noqa: E731
    model = construct(f, 3, 2, lipschitz=4.0, curvature=16.0)
    x = grid(FINE[3], 3)
    e = np.abs(model.residuals(x, method="operator"))
    assert np.all(e[1:] <= e[:-1]) and e[2].max() <= 0.75**2 * e[0].max() * 1.05
    for grade in model.grades:
        assert grade.network.width == 15
        sample = x[::7]
        assert np.abs(grade(sample) - grade(sample, method="operator")).max() <= 1e-12


@pytest.mark.parametrize(("dim", "widths"), [(1, (3, 5, 8, 16)), (2, (5, 6, 10, 16, 32))])
def test_every_width_from_the_least_realises_the_same_function(dim, widths):
    n = 6
    coeffs = np.random.default_rng(1).standard_normal((n + 1,) * dim)
    x = np.random.default_rng(2).random((500, dim))
    expected = hat_sum(coeffs, x)
    depths = []
    for width in widths:
        net = realize(coeffs, width)
        assert net.width == width
        assert np.abs(net(x) - expected).max() <= 1e-12
        depths.append(net.depth)
    assert depths == sorted(depths, reverse=True) and depths[0] > depths[-1]
    with pytest.raises(InputError, match="below this construction's least"):
        realize(coeffs, min_width(dim) - 1)


def test_estimated_lipschitz_and_bad_input():
    model = mgdl_fast.construct(lambda x: np.abs(x[:, 0] - 0.3), 1, 2)
    assert model.settings["lipschitz_estimated"] and model.settings["lipschitz"] >= 1.0
    with pytest.raises(InputError, match="dim must be 1, 2 or 3"):
        construct(lambda x: x[:, 0], 4, 1)
    with pytest.raises(InputError, match="width must be"):
        construct(lambda x: x[:, 0], 2, 1, width=4)
    with pytest.raises(InputError, match="one value per point"):
        construct(lambda x: x, 2, 1, lipschitz=1.0)
    with pytest.raises(InputError, match="non-finite"):
        construct(lambda x: np.where(x[:, 0] > 0.5, np.nan, 0.0), 1, 1, lipschitz=1.0)
    with pytest.raises(InputError, match=r"x must lie in \[0, 1\]"):
        model.predict(np.array([[1.5]]))
    with pytest.raises(InputError, match="grades must be 0-2"):
        model.predict(np.array([[0.5]]), grades=3)
