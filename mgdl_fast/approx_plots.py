"""Figures of the function-approximation experiments: the approximation and its error after
every MGDL grade, and the SGDL and MSDL results, on the test points."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

_NAMES = {"mgdl": "MGDL", "sgdl": "SGDL", "msdl": "MSDL"}


def _panels(predictions: dict[str, list[torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """(label, test prediction ``[N, 1]`` as numpy) for every MGDL grade, then SGDL and MSDL."""
    panels = []
    for model, preds in predictions.items():
        for k, pred in enumerate(preds):
            label = f"MGDL after grade {k + 1}" if model == "mgdl" else _NAMES[model]
            panels.append((label, pred.detach().cpu().numpy()))
    return panels


def plot_approximations(task, predictions, path: str | Path, title: str) -> None:
    """One row per panel: approximation with the target, and the error ``f - approximation``.
    1D targets as curves; 2D targets as images on the test grid (a first row shows the target)."""
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
    fig, axes = plt.subplots(
        len(panels) + 1,
        2,
        figsize=(8, 3.4 * (len(panels) + 1)),
        squeeze=False,
        constrained_layout=True,
    )
    limit = float(abs(target).max())
    extent = (0, 1, 0, 1)
    image = axes[0][0].imshow(
        target, origin="lower", extent=extent, cmap="RdBu_r", vmin=-limit, vmax=limit
    )
    axes[0][0].set_title("target", fontsize=9)
    fig.colorbar(image, ax=axes[0][0])
    axes[0][1].axis("off")
    for (label, pred), (ax_f, ax_e) in zip(panels, axes[1:]):
        approx = pred[:, 0].reshape(grid)
        image = ax_f.imshow(
            approx, origin="lower", extent=extent, cmap="RdBu_r", vmin=-limit, vmax=limit
        )
        ax_f.set_title(label, fontsize=9)
        fig.colorbar(image, ax=ax_f)
        error = target - approx
        bound = float(abs(error).max())
        image = ax_e.imshow(
            error, origin="lower", extent=extent, cmap="RdBu_r", vmin=-bound, vmax=bound
        )
        ax_e.set_title(f"error (max {bound:.3f})", fontsize=9)
        fig.colorbar(image, ax=ax_e)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
