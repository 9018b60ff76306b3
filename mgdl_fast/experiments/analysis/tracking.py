"""Eigenvalue tracking during plain gradient descent, and the papers' eigenvalue stopping rule.

``EigenTracker`` is a trainer hook (``fit(..., hook=tracker)``): the trainer calls it before every
optimizer step, so at every ``interval``-th iteration it sees the iterate *before* that
iteration's update, as PROTOCOL 4's code evaluates H. It stores the k smallest and largest
eigenvalues of ``J = I - eta * H`` with the grade, the iteration and the training loss, and (when
``stop_below`` is set) ends the grade at the first evaluation after iteration 0 whose smallest
eigenvalue is below ``stop_below`` (the MGDL rule: ``i > 0 and min(1 - eta*lambda) < -0.95``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...block import BlockParams, BlockShape
from ...train.config import ModelConfig, TrainConfig
from ...train.trainer import fit
from .hessian import grade_loss
from .spectrum import Spectrum, iteration_spectrum

if TYPE_CHECKING:
    from .adam import AdamEigenTracker

EIG_STOP_REASON = "eigenvalue_stop"


@dataclass
class Evaluation:
    """One spectrum of J: at ``iteration`` (0-based, within ``grade``), before its update."""

    grade: int
    iteration: int
    train_loss: float
    spectrum: Spectrum

    def to_dict(self, offset: int) -> dict:
        return {
            "grade": self.grade,
            "iteration": self.iteration,
            "cumulative_iteration": offset + self.iteration,
            "train_loss": self.train_loss,
            **self.spectrum.to_dict(),
        }


class EigenTracker:
    """Trainer hook computing J's extreme eigenvalues every ``interval`` iterations.

    Other keywords go to ``iteration_spectrum``. PROTOCOL 4's He-normal init is set in the
    training config (``TrainConfig(init="he")``), not here.
    """

    def __init__(
        self,
        eta: float,
        interval: int,
        k: int = 10,
        *,
        stop_below: float | None = None,
        verbose: bool = False,
        **spectrum_kwargs,
    ):
        self.eta, self.interval, self.k = eta, interval, k
        self.stop_below = stop_below
        self.verbose = verbose
        self.spectrum_kwargs = spectrum_kwargs
        self.evaluations: list[Evaluation] = []

    def __call__(self, grade: int, epoch: int, params: BlockParams, inputs, objective):
        if epoch % self.interval:
            return None
        x, y = inputs.get("train"), objective.residual["train"]
        theta = params.flat.detach().double()
        spectrum = iteration_spectrum(
            params.shape, theta, x, y, self.eta, self.k, **self.spectrum_kwargs
        )
        with torch.no_grad():
            loss = float(grade_loss(params.shape, x, y)(theta))
        self.evaluations.append(Evaluation(grade, epoch, loss, spectrum))
        if self.verbose:
            print(
                f"grade {grade} it {epoch}: loss {loss:.4e}, J in "
                f"[{spectrum.smallest[0]:.4f}, {spectrum.largest[-1]:.4f}] "
                f"({spectrum.method}, {spectrum.products} products, {spectrum.seconds:.1f} s)",
                file=sys.stderr,
            )
        if self.stop_below is not None and epoch > 0 and spectrum.smallest[0] < self.stop_below:
            return EIG_STOP_REASON
        return None


def track_eigenvalues(
    task,
    objective,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    tracker: EigenTracker | AdamEigenTracker,
) -> dict:
    """Train with ``tracker`` as the hook (GD's ``EigenTracker`` or ``adam.AdamEigenTracker``);
    return a JSON-ready summary: per-grade records and every evaluation, with its iteration
    counted cumulatively over grades."""
    start = time.perf_counter()
    result = fit(task, objective, model_cfg, train_cfg, progress=False, hook=tracker)
    offsets, total = {}, 0
    for record in result.records:
        offsets[record.grade] = total
        total += record.epochs_run
    return {
        "grades": [
            {
                "grade": r.grade,
                "params": BlockShape.from_dict(r.shape).num_params,
                "iterations": r.epochs_run,
                "stop_reason": r.stop_reason,
                "time_s": r.time_s,
                "final": r.final,
            }
            for r in result.records
        ],
        "boundaries": [offsets[r.grade] + r.epochs_run for r in result.records],
        "diverged": str(result.diverged) if result.diverged is not None else None,
        "evaluations": [e.to_dict(offsets.get(e.grade, total)) for e in tracker.evaluations],
        "seconds": time.perf_counter() - start,
    }
