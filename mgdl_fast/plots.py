"""Training curves like the papers' figures: loss and PSNR against epochs, grade boundaries."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .history import GradeRecord  # noqa: E402

_STYLE = {
    "train_loss": ("tab:blue", "-", "train"),
    "val_loss": ("tab:orange", "--", "validation"),
    "test_loss": ("tab:green", ":", "test"),
}


def _psnr(loss: float) -> float:
    return -10.0 * math.log10(2.0 * loss) if loss > 0 else math.nan


def plot_curves(records: list[GradeRecord], path: str | Path, title: str) -> None:
    """Loss (log scale) and PSNR of every recorded series against the cumulative epoch, with a
    dotted line at each grade boundary."""
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    offset, boundaries, labelled = 0, [0], set()
    for record in records:
        for name, (color, style, label) in _STYLE.items():
            curve = record.curves.get(name)
            if not curve or not curve["epoch"]:
                continue
            epochs = [offset + e for e in curve["epoch"]]
            kwargs = {"color": color, "linestyle": style}
            if name not in labelled:
                kwargs["label"] = label
                labelled.add(name)
            ax_loss.plot(epochs, curve["value"], **kwargs)
            ax_psnr.plot(epochs, [_psnr(v) for v in curve["value"]], **kwargs)
        offset += record.epochs_run
        boundaries.append(offset)
    for ax in (ax_loss, ax_psnr):
        for x in boundaries:
            ax.axvline(x, color="k", linestyle=":", linewidth=0.8)
        ax.set_xlabel("epoch (cumulative over grades)")
        ax.legend()
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss  0.5 * MSE")
    ax_psnr.set_ylabel("PSNR (dB)")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
