"""Paper 2's three studies, as JSON-able results: ``construct_study`` (the constructive scheme on
every target of ``targets.CONSTRUCT``, and its width ablation), ``trained_study`` (MGDL vs SGDL
on ``targets.TRAINED``, seeds 0, 1, 2) and ``ablations`` (no freezing, width, layers per grade).

Sizes (``SETUPS``) are chosen so that the trained study and the ablations together run in well
under 30 minutes on a 2-core CPU (docs/APPROXIMATION.md has the measured times).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .model import construct, grid
from .network import min_width, realize
from .targets import CONSTRUCT, TRAINED, function_task
from .trained import Setup, first_non_decreasing_grade, run, summarize

# Grades, and the largest grid, of each construction; the 2D grids grow 4x in nodes a grade.
CONSTRUCT_GRADES = {"smooth": 8, "sin32": 8, "kink": 8, "sines50": 6, "exp_xy": 6, "osc2d": 3}
CONSTRUCT_MAX_CELLS = {"sines50": 1 << 16}
FINE = {1: 1 << 14, 2: 257}
WIDTHS = {1: (2, 3, 5, 8, 16), 2: (4, 6, 10, 16, 32)}
# Training points 2^J per axis and test grid side, per target dimension.
SAMPLING = {1: (10, 4096), 2: (6, 128)}
MAIN = Setup(grades=6, width=32, layers=1, epochs=1000, lr=3e-3)
ABLATION = replace(MAIN, epochs=500)
JOINT = replace(MAIN, grades=4, epochs=500)


def construct_study() -> dict:
    """Every construction: settings, per-grade grids and networks, residual norms (closed
    form, on a fine grid) and the largest network-operator difference."""
    out = {}
    for name, target in CONSTRUCT.items():
        start = time.perf_counter()
        model = construct(
            target.f, target.dim, CONSTRUCT_GRADES[name], lipschitz=target.lipschitz,
            curvature=target.curvature, max_cells=CONSTRUCT_MAX_CELLS.get(name),
        )  # fmt: skip
        built = time.perf_counter() - start
        x = grid(FINE[target.dim], target.dim)
        e = model.residuals(x, method="operator")
        sample = x[:: max(1, x.shape[0] // 2000)]
        gap = max(
            float(np.abs(g(sample) - g(sample, method="operator")).max()) for g in model.grades
        )
        out[name] = {
            "formula": target.formula,
            **model.summary(),
            "norms": model.residual_norms(x, method="operator"),
            "pointwise_nonincreasing": bool(np.all(np.abs(e[1:]) <= np.abs(e[:-1]))),
            "network_minus_operator_max": gap,
            "fine_grid_points": int(x.shape[0]),
            "construct_s": built,
        }
        if target.dim == 1:
            xs = grid(1025, 1)
            profile = model.residuals(xs, method="operator")[::2]
            out[name]["profile"] = {"x": xs[:, 0].tolist(), "residuals": profile.tolist()}
    out["widths"] = _construct_widths()
    return out


def _construct_widths() -> dict:
    """The width ablation of the construction: grade 1 of sin32 (D = 1) and exp_xy (D = 2)
    realised at every width; below the least width the construction has no network."""
    rows: dict[str, list[dict]] = {}
    for name, dim in (("sin32", 1), ("exp_xy", 2)):
        target = CONSTRUCT[name]
        model = construct(target.f, dim, 2, lipschitz=target.lipschitz,
                          curvature=target.curvature)  # fmt: skip
        coeffs = model.grades[-1].operator.coeffs
        x = grid(FINE[dim] if dim == 2 else 4097, dim)
        reference = model.grades[-1](x, method="operator")
        rows[name] = []
        for width in WIDTHS[dim]:
            if width < min_width(dim):
                rows[name].append({"width": width, "constructible": False})
                continue
            net = realize(coeffs, width)
            gap = float(np.abs(net(x) - reference).max())
            rows[name].append({"width": width, "constructible": True, "depth": net.depth,
                               "params": net.num_params, "max_diff_to_operator": gap})  # fmt: skip
    return rows


def _runs(task, setup: Setup, kind: str, seeds) -> dict:
    runs = [run(task, setup, kind, seed) for seed in seeds]
    summary = summarize(runs)
    first_not_decreasing = first_non_decreasing_grade(summary) if kind != "sgdl" else None
    return {
        "setup": setup.to_dict(),
        "runs": runs,
        "summary": summary,
        "first_grade_not_decreasing": first_not_decreasing,
    }


def _task(name: str):
    target = TRAINED[name]
    J, side = SAMPLING[target.dim]
    return function_task(target, J, side)


def trained_study(seeds=(0, 1, 2), targets=tuple(TRAINED)) -> dict:
    """MGDL (frozen grades) and SGDL (the same depth end to end, as many epochs) per target."""
    out = {}
    for name in targets:
        task = _task(name)
        out[name] = {"task": task.description}
        for kind in ("mgdl", "sgdl"):
            out[name][kind] = _runs(task, MAIN, kind, seeds)
    return out


def ablations(seeds=(0, 1, 2), targets=("sin32", "osc2d")) -> dict:
    """(a) no freezing vs MGDL, (b) widths around 5D, (c) 1, 2 and 3 layers per grade."""
    out: dict = {"no_freezing": {}, "width": {}, "layers": {}}
    for name in targets:
        task = _task(name)
        out["no_freezing"][name] = {
            kind: _runs(task, JOINT, kind, seeds) for kind in ("mgdl", "joint")
        }
        dim = TRAINED[name].dim
        out["width"][name] = {
            str(w): _runs(task, replace(ABLATION, width=w), "mgdl", seeds) for w in WIDTHS[dim]
        }
        out["layers"][name] = {
            str(n): _runs(task, replace(ABLATION, layers=n), "mgdl", seeds) for n in (1, 2, 3)
        }
    return out
