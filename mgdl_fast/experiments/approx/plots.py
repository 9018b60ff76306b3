"""Figures of the function-approximation experiments: the approximation and its error after
every MGDL grade, and the SGDL and MSDL results, on the test points."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

_NAMES = {"mgdl": "MGDL", "sgdl": "SGDL", "msdl": "MSDL"}


def _panels(predictions: dict[str, list[torch.Tensor]]) -> list[tuple[str, np.ndarray]]:
    """(label, test prediction ``[N, 1]`` as numpy) for every MGDL grade, then SGDL and MSDL."""
    panels = []
    for model, preds in predictions.items():
        for k, pred in enumerate(preds):
            label = f"MGDL after grade {k + 1}" if model == "mgdl" else _NAMES[model]
            panels.append((label, pred.detach().cpu().numpy()))
    return panels


def plot_approximations(task, predictions, path: str | Path, title: str) -> None:
    """The approximation (with the target) and the error ``f - approximation`` of every panel:
    1D targets as curves, one row per panel; 2D targets as images on the test grid."""
    panels = _panels(predictions)
    test = task.splits["test"]
    x, y = test.x.cpu().numpy(), test.y.cpu().numpy()
    if task.in_dim == 1:
        _plot_1d(x[:, 0], y[:, 0], panels, path, title)
    else:
        _plot_2d(y[:, 0].reshape(test.grid), panels, test.grid, path, title)


def _plot_1d(x, y, panels, path, title) -> None:
    fig, axes = plt.subplots(
        len(panels), 2, figsize=(12, 2.2 * len(panels)), squeeze=False, constrained_layout=True
    )
    for (label, pred), (ax_f, ax_e) in zip(panels, axes):
        ax_f.plot(x, y, color="k", linewidth=0.8, label="target")
        ax_f.plot(x, pred[:, 0], color="tab:red", linewidth=0.8, label="approximation")
        ax_f.set_title(label, fontsize=9)
        ax_e.plot(x, y - pred[:, 0], color="tab:blue", linewidth=0.8)
        ax_e.set_title(f"{label}: error f - approximation", fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_2d(target, panels, grid, path, title) -> None:
    """Top row: the target then every approximation; bottom row: their errors."""
    columns = len(panels) + 1
    fig, axes = plt.subplots(
        2, columns, figsize=(3.2 * columns, 6), squeeze=False, constrained_layout=True
    )
    limit = float(abs(target).max())
    style = {"origin": "lower", "extent": (0, 1, 0, 1), "cmap": "RdBu_r"}
    image = axes[0][0].imshow(target, vmin=-limit, vmax=limit, **style)
    axes[0][0].set_title("target", fontsize=9)
    fig.colorbar(image, ax=axes[0][0], shrink=0.8)
    axes[1][0].axis("off")
    for column, (label, pred) in enumerate(panels, start=1):
        approx = pred[:, 0].reshape(grid)
        image = axes[0][column].imshow(approx, vmin=-limit, vmax=limit, **style)
        axes[0][column].set_title(label, fontsize=9)
        fig.colorbar(image, ax=axes[0][column], shrink=0.8)
        error = target - approx
        bound = float(abs(error).max())
        image = axes[1][column].imshow(error, vmin=-bound, vmax=bound, **style)
        axes[1][column].set_title(f"error (max {bound:.3f})", fontsize=9)
        fig.colorbar(image, ax=axes[1][column], shrink=0.8)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
