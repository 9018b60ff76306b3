"""Figures of the analyses: J's extreme eigenvalues against iterations (the papers' Sec. 6
figures), and final loss against the learning rate (Sec. 5)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_MODEL_STYLE = {"mgdl": ("tab:blue", "o"), "sgdl": ("tab:red", "s")}


def _eig_panel(ax, run: dict) -> None:
    """One run's k smallest (blue) and k largest (green) eigenvalues of J per evaluation, one
    line per eigenvalue index and grade (lines do not join across grade boundaries)."""
    evals = run["evaluations"]
    for key, color, label in (
        ("smallest", "tab:blue", "smallest"),
        ("largest", "tab:green", "largest"),
    ):
        k = min((len(e[key]) for e in evals), default=0)
        for grade in sorted({e["grade"] for e in evals}):
            segment = [e for e in evals if e["grade"] == grade]
            xs = [e["cumulative_iteration"] for e in segment]
            for i in range(k):
                ax.plot(
                    xs,
                    [e[key][i] for e in segment],
                    color=color,
                    marker=".",
                    markersize=3,
                    linewidth=0.6,
                    label=f"{k} {label}" if i == 0 and grade == evals[0]["grade"] else None,
                )
    for level in (-1.0, 1.0):
        ax.axhline(level, color="red", linewidth=1.0)
    for boundary in run["boundaries"][:-1]:
        ax.axvline(boundary, color="k", linestyle=":", linewidth=0.8)
    cfg = run["config"]
    ax.set_title(f"{cfg['model']['kind'].upper()}, eta = {cfg['eta']:g}")
    ax.set_xlabel("iteration (cumulative over grades)")
    ax.set_ylabel("eigenvalues of I - eta H")
    ax.legend(loc="lower left", fontsize=8)


def plot_eigenvalues(runs: list[dict], path: str | Path, title: str) -> None:
    """One panel per run (MGDL, SGDL), red lines at +-1, grade boundaries dotted."""
    fig, axes = plt.subplots(
        1, len(runs), figsize=(6 * len(runs), 4.5), constrained_layout=True, squeeze=False
    )
    for ax, run in zip(axes[0], runs):
        _eig_panel(ax, run)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _segments(evals: list[dict]):
    """The evaluations of each grade in turn (lines never join across grade boundaries)."""
    for grade in sorted({e["grade"] for e in evals}):
        yield grade, [e for e in evals if e["grade"] == grade]


def _adam_panels(top, bottom, run: dict) -> None:
    """One Adam run: the k largest eigenvalues of P H (blue), the largest of H (grey) and the
    stability threshold (red; dashed: 2/lr, the threshold without momentum) above; the
    training loss at the same iterates below."""
    evals = run["evaluations"]
    first = evals[0]["grade"] if evals else None
    for grade, segment in _segments(evals):
        xs = [e["cumulative_iteration"] for e in segment]
        k = min(len(e["largest"]) for e in segment)
        for i in range(k):
            label = f"{k} largest eig(P H)" if i == 0 and grade == first else None
            ys = [e["largest"][-1 - i] for e in segment]
            top.plot(xs, ys, color="tab:blue", marker=".", markersize=3, lw=0.6, label=label)
        if all(e.get("hessian") for e in segment):
            ys = [e["hessian"]["largest"][-1] for e in segment]
            label = "largest eig(H)" if grade == first else None
            top.plot(xs, ys, color="0.5", marker=".", markersize=3, lw=0.8, label=label)
        threshold = [e["threshold"] for e in segment]
        label = "2(1+b1)/((1-b1) lr)" if grade == first else None
        top.plot(xs, threshold, color="red", lw=1.2, label=label)
        plain = [t * (1 - run["config"]["beta1"]) / (1 + run["config"]["beta1"]) for t in threshold]
        top.plot(xs, plain, color="red", lw=0.8, ls="--", label="2/lr" if label else None)
        bottom.plot(xs, [e["train_loss"] for e in segment], color="k", marker=".", markersize=3)
    cfg = run["config"]
    for ax in (top, bottom):
        ax.set_yscale("log")
        for boundary in run["boundaries"][:-1]:
            ax.axvline(boundary, color="k", linestyle=":", linewidth=0.8)
    top.set_title(f"{cfg['model']['kind'].upper()}, Adam lr = {cfg['eta']:g}")
    top.set_ylabel("eigenvalues")
    top.legend(loc="lower right", fontsize=7)
    bottom.set_xlabel("iteration (cumulative over grades)")
    bottom.set_ylabel("training loss (grade's)")


def plot_adam_eigenvalues(runs: list[dict], path: str | Path, title: str) -> None:
    """One column per run (MGDL, SGDL): spectra of the preconditioned Hessian against Adam's
    stability threshold above, the training loss below; grade boundaries dotted."""
    fig, axes = plt.subplots(
        2, len(runs), figsize=(6 * len(runs), 7), sharex="col", constrained_layout=True,
        squeeze=False, height_ratios=(2, 1),
    )  # fmt: skip
    for column, run in enumerate(runs):
        _adam_panels(axes[0][column], axes[1][column], run)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sweep(rows: list[dict], path: str | Path, title: str) -> None:
    """Final test loss against the learning rate, one panel per optimizer, one line per model;
    diverged runs (no finite loss) are drawn as crosses on the top edge."""
    optimizers = sorted({r["optimizer"] for r in rows})
    fig, axes = plt.subplots(
        1, len(optimizers), figsize=(5.5 * len(optimizers), 4.2), constrained_layout=True
    )
    axes = [axes] if len(optimizers) == 1 else list(axes)
    for ax, optimizer in zip(axes, optimizers):
        subset = [r for r in rows if r["optimizer"] == optimizer]
        finite = [r["test_loss"] for r in subset if _finite(r["test_loss"])]
        top = max(finite) * 3 if finite else 1.0
        for model in sorted({r["model"] for r in subset}):
            color, marker = _MODEL_STYLE.get(model, ("k", "^"))
            runs = sorted((r for r in subset if r["model"] == model), key=lambda r: r["lr"])
            ok = [r for r in runs if _finite(r["test_loss"])]
            ax.plot(
                [r["lr"] for r in ok],
                [r["test_loss"] for r in ok],
                color=color,
                marker=marker,
                label=model.upper(),
            )
            bad = [r["lr"] for r in runs if not _finite(r["test_loss"])]
            if bad:
                ax.plot(
                    bad,
                    [top] * len(bad),
                    color=color,
                    marker="x",
                    linestyle="none",
                    markersize=9,
                    label=f"{model.upper()} diverged",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final test loss  0.5 * MSE")
        ax.set_title(optimizer.upper() if optimizer == "gd" else optimizer.capitalize())
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)
