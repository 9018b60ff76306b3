"""Is a trained grade healthy? Dead units of its last hidden layer and its PSNR gain over the
mean predictor, recorded per grade. A collapse (almost every unit dead) and a grade no better
than predicting the mean are logged as warnings.

A grade that failed outright counts as diverged (``CollapseError``, checked before the grade is
frozen, so ``on_diverge="retry"`` can train it again): every unit of its last hidden layer dead
on the training inputs, or a train PSNR more than ``COLLAPSE_MARGIN_DB`` below both the mean
predictor's (a constant would have done better) and its own initial parameters' (training made
it worse). A short grade that has not yet caught up with the mean predictor (a few epochs from
a random start) is not a collapse: it improved on where it started.
"""

from __future__ import annotations

import logging

import torch

from ..errors import DivergenceError

_log = logging.getLogger("mgdl_fast")
# Collapsed: at most 1 in 16 units ever active on the training inputs. No gain: a PSNR gain
# over the mean predictor below 0.01 dB (the grade adds nothing a constant would not).
ALIVE_FRACTION = 1 / 16
MIN_GAIN_DB = 0.01
# Below the mean predictor by more than rounding can explain.
COLLAPSE_MARGIN_DB = 0.01


class CollapseError(DivergenceError):
    """A grade trained to something worse than a constant, or whose units all died."""

    def __init__(self, grade: int, epoch: int, loss: float, why: str):
        super().__init__(grade, epoch, loss)
        self.args = (f"grade {grade} collapsed: {why}",)


@torch.no_grad()
def largest_activations(engine, params, inputs) -> torch.Tensor:
    """``[W]`` fp32: each last-hidden unit's largest activation on the train split (one
    chunked forward of the bound ``engine``; 0 for a unit that never activates)."""
    shape, device = params.shape, params.flat.device
    out = torch.empty(engine.rows, shape.out_dim, device=device)
    feats = torch.empty(engine.rows, shape.width, device=device)
    largest = torch.zeros(shape.width, device=device)
    for _, x in inputs.chunks("train", engine.rows):
        n = x.shape[0]
        engine.forward(x, params.flat, out[:n], feats[:n])
        torch.maximum(largest, feats[:n].amax(dim=0), out=largest)
    return largest


def collapse_reason(
    largest: torch.Tensor,
    psnr: float | None,
    baseline_psnr: float | None,
    initial_psnr: float | None = None,
) -> str | None:
    """Why a grade counts as diverged (see the module docstring), or None. ``psnr``: its
    train PSNR; ``initial_psnr``: that of its initial parameters (None: not compared)."""
    if int((largest > 0).sum().item()) == 0:
        return f"all {largest.shape[0]} units of its last hidden layer never activate"
    if psnr is None or baseline_psnr is None:
        return None
    floor = baseline_psnr if initial_psnr is None else min(baseline_psnr, initial_psnr)
    if psnr < floor - COLLAPSE_MARGIN_DB:
        return (
            f"its train PSNR {psnr:.2f} dB is below the mean predictor's {baseline_psnr:.2f} dB "
            "and below where it started"
        )
    return None


def grade_health(
    grade: int, largest: torch.Tensor, baseline_psnr: float | None, final: dict[str, float]
) -> dict:
    """``largest [W]``: each last-hidden unit's largest activation on the train split (0 for
    a unit that never activates); ``baseline_psnr`` the train PSNR of the best constant
    prediction before this grade (None: not defined for the objective); ``final`` the
    objective's metrics after it."""
    alive = int((largest > 0).sum().item())
    units = largest.shape[0]
    psnr = final.get("train_psnr", final.get("psnr"))
    gain = None if baseline_psnr is None or psnr is None else psnr - baseline_psnr
    collapsed = alive <= units * ALIVE_FRACTION
    no_gain = gain is not None and gain < MIN_GAIN_DB
    if collapsed:
        _log.warning("grade %d collapsed: %d of %d units never activate", grade, units - alive,
                     units)  # fmt: skip
    if no_gain:
        _log.warning("grade %d is no better than the mean predictor (PSNR gain %.3f dB)", grade,
                     gain)  # fmt: skip
    return {
        "alive_units": alive,
        "units": units,
        "mean_predictor_psnr": baseline_psnr,
        "psnr_gain_db": gain,
        "collapsed": collapsed,
        "no_gain": no_gain,
    }
