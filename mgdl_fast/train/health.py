"""Is a trained grade healthy? Dead units of its last hidden layer and its PSNR gain over the
mean predictor, recorded per grade. A collapse (almost every unit dead) and a grade no better
than predicting the mean are logged as warnings."""

from __future__ import annotations

import logging

import torch

_log = logging.getLogger("mgdl_fast")
# Collapsed: at most 1 in 16 units ever active on the training inputs. No gain: a PSNR gain
# over the mean predictor below 0.01 dB (the grade adds nothing a constant would not).
ALIVE_FRACTION = 1 / 16
MIN_GAIN_DB = 0.01


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
