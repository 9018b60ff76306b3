"""MGDL without freezing (ablation a): after grade k is added, all k grades train jointly.

The trainer (``mgdl_fast.fit``) freezes every finished grade and has no joint mode, so this
trains the same architecture as its MGDL (``mgdl_fast.nn.MultiGrade``: grade k+1 reads grade
k's last hidden features, the prediction sums the grades' outputs) through the engine's
autograd op (``block_forward``), full batch, with torch's Adam over every grade's parameters,
on the objective the trainer uses (``0.5 mean((prediction - y)^2)``). Each new grade starts
from ``BlockParams.init`` with the run's seed, as in the trainer.
"""

from __future__ import annotations

import time

import torch

from ...block import BlockParams, BlockShape
from ...nn import Grade, MultiGrade
from ...train.config import ModelConfig, TrainConfig, per_grade
from ...train.trainer import grade_shapes


def fit_joint(task, model_cfg: ModelConfig, train_cfg: TrainConfig) -> dict:
    """Stages k = 1..K, each ``train_cfg.epochs`` full-batch Adam steps on all k grades.

    Returns ``{"curve": {"epoch", "train_loss"}, "onsets": [first epoch of each stage],
    "predictions": [{split: [N, C]} after each stage], "time_s"}``.
    """
    train = task.splits["train"]
    shapes: list[BlockShape] = grade_shapes(model_cfg, task.in_dim, task.out_dim)
    model = MultiGrade()
    epochs, every = per_grade(train_cfg.epochs, 0), train_cfg.record_every
    curve: dict[str, list] = {"epoch": [], "train_loss": []}
    onsets, predictions = [], []
    start, done = time.perf_counter(), 0
    for shape in shapes:
        init = BlockParams.init(shape, seed=train_cfg.seed, scheme=train_cfg.init)
        model.append(Grade(shape, init.flat, backend=train_cfg.backend))
        optimizer = torch.optim.Adam(model.parameters(), lr=per_grade(train_cfg.lr, 0))
        onsets.append(done)
        for epoch in range(epochs):
            optimizer.zero_grad()
            loss = 0.5 * torch.mean((model(train.x) - train.y) ** 2)
            loss.backward()
            optimizer.step()
            # As the trainer records: the loss at epoch e is the one before step e + 1.
            if epoch % every == 0:
                curve["epoch"].append(done + epoch)
                curve["train_loss"].append(loss.item())
        done += epochs
        with torch.no_grad():
            predictions.append({name: model(s.x) for name, s in task.splits.items()})
    return {
        "curve": curve,
        "onsets": onsets,
        "predictions": predictions,
        "time_s": time.perf_counter() - start,
    }
