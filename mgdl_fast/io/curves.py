"""Training curves like the papers' figures: loss and PSNR against epochs, grade boundaries.

Plots whatever series an objective records: ``*_loss`` series on the left, ``*psnr*`` series
on the right as recorded, each extended to the grade's last epoch by the grade's final metric
of the same name. Objectives that record no PSNR (regression) get it derived from their
0.5 * MSE losses. A final metric ``observed_psnr`` (the degraded image's PSNR) is drawn as a
horizontal reference line.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..train.history import GradeRecord  # noqa: E402

_STYLE = {
    "train_loss": ("tab:blue", "-", "train"),
    "val_loss": ("tab:orange", "--", "validation"),
    "test_loss": ("tab:green", ":", "test"),
    "psnr": ("tab:red", "-", "PSNR vs clean image"),
}
_OTHER_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def _psnr(loss: float) -> float:
    return -10.0 * math.log10(2.0 * loss) if loss > 0 else math.nan


def _style(name: str, index: int) -> tuple[str, str, str]:
    return _STYLE.get(name, (_OTHER_COLORS[index % len(_OTHER_COLORS)], "-", name))


def _series_names(records: list[GradeRecord]) -> tuple[list[str], list[str]]:
    names: list[str] = []
    for record in records:
        names += [n for n in record.curves if n not in names]
    return [n for n in names if n.endswith("_loss")], [n for n in names if "psnr" in n]


def plot_curves(records: list[GradeRecord], path: str | Path, title: str) -> None:
    """Loss (log scale) and PSNR of every recorded series against the cumulative epoch, with a
    dotted line at each grade boundary."""
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    losses, psnrs = _series_names(records)
    derived = not psnrs
    offset, boundaries, labelled = 0, [0], set()
    for record in records:
        for index, name in enumerate(losses + psnrs):
            curve = record.curves.get(name)
            if not curve or not curve["epoch"]:
                continue
            color, style, label = _style(name, index)
            epochs = [offset + e for e in curve["epoch"]]
            values = list(curve["value"])
            # The grade's final metric of the same name is the value after its last epoch.
            if name in record.final and record.epochs_run - 1 > curve["epoch"][-1]:
                epochs.append(offset + record.epochs_run - 1)
                values.append(record.final[name])
            kwargs = {"color": color, "linestyle": style}
            if name not in labelled:
                kwargs["label"] = label
                labelled.add(name)
            if name in losses:
                ax_loss.plot(epochs, values, **kwargs)
                if derived:
                    ax_psnr.plot(epochs, [_psnr(v) for v in values], **kwargs)
            else:
                ax_psnr.plot(epochs, values, **kwargs)
        offset += record.epochs_run
        boundaries.append(offset)
    observed = next((r.final["observed_psnr"] for r in records if "observed_psnr" in r.final), None)
    if observed is not None:
        ax_psnr.axhline(observed, color="gray", linestyle="--", label=f"observed {observed:.2f} dB")
    for ax in (ax_loss, ax_psnr):
        for x in boundaries:
            ax.axvline(x, color="k", linestyle=":", linewidth=0.8)
        ax.set_xlabel("epoch (cumulative over grades)")
        ax.legend()
    if all(v > 0 for r in records for n in losses for v in r.curves.get(n, {}).get("value", [])):
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss  0.5 * MSE" if derived else "loss")
    ax_psnr.set_ylabel("PSNR (dB)")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
