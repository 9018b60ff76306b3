"""Figures of paper 2's studies, drawn from the studies' JSON (study.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NORM_STYLES = {"L1": "o-", "L2": "s-", "L4": "^-", "Linf": "k--"}
COLORS = {"mgdl": "tab:red", "sgdl": "tab:blue", "joint": "tab:green"}
LABELS = {"mgdl": "MGDL (frozen grades)", "sgdl": "end to end (SGDL)", "joint": "no freezing"}


def construct_figure(results: dict, path: Path) -> None:
    """Residual norms against the grade, one panel per target (log scale); residual profiles
    of the 1D targets below."""
    names = [n for n in results if "norms" in results[n]]
    profiles = [n for n in names if "profile" in results[n]]
    fig, axes = plt.subplots(2, max(len(names), len(profiles)), figsize=(3.2 * len(names), 6),
                             squeeze=False, constrained_layout=True)  # fmt: skip
    for ax, name in zip(axes[0], names):
        norms = results[name]["norms"]
        for key, style in NORM_STYLES.items():
            ax.semilogy(range(len(norms)), [n[key] for n in norms], style, label=key, ms=3)
        ax.set_title(f"{name} (D={results[name]['dim']})", fontsize=9)
        ax.set_xlabel("grade k")
    axes[0][0].set_ylabel("norm of f - (g_1 + ... + g_k)")
    axes[0][0].legend(fontsize=7)
    for ax in axes[1]:
        ax.axis("off")
    for ax, name in zip(axes[1], profiles):
        ax.axis("on")
        profile = results[name]["profile"]
        x = np.array(profile["x"])
        for k, e in enumerate(profile["residuals"]):
            ax.plot(x, e, linewidth=0.7, label=f"k={2 * k}")
        ax.set_title(f"{name}: residual e_k", fontsize=9)
        ax.legend(fontsize=6)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _band(ax, runs: list[dict], kind: str) -> None:
    """Mean train loss over seeds with a min-max band."""
    epochs = np.array(runs[0]["curve"]["epoch"])
    losses = np.array([r["curve"]["train_loss"] for r in runs])
    ax.semilogy(epochs, losses.mean(0), color=COLORS[kind], label=LABELS[kind], linewidth=0.9)
    ax.fill_between(epochs, losses.min(0), losses.max(0), color=COLORS[kind], alpha=0.2)


def curves_figure(panels: dict[str, dict[str, list[dict]]], path: Path, title: str) -> None:
    """Train loss against epochs per panel (``{panel: {kind: runs}}``), each grade's onset a
    dotted line."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False,
                             constrained_layout=True)  # fmt: skip
    for ax, (name, kinds) in zip(axes[0], panels.items()):
        for kind, runs in kinds.items():
            _band(ax, runs, kind)
        onsets = next(r for k, r in kinds.items() if k != "sgdl")[0]["onsets"]
        for onset in onsets[1:]:
            ax.axvline(onset, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch (dotted: a grade starts)")
        ax.set_ylabel("train loss 0.5 mean (f - y)^2")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sweep_figure(sweeps: dict[str, dict[str, dict]], path: Path, title: str, xlabel: str):
    """Grade-wise train L2 (mean over seeds) for every value of a sweep, per target."""
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 3.6), squeeze=False,
                             constrained_layout=True)  # fmt: skip
    for ax, (name, values) in zip(axes[0], sweeps.items()):
        for value, result in values.items():
            rows = result["summary"]
            means = [r["train_L2"]["mean"] for r in rows]
            spread = [r["train_L2"]["std"] for r in rows]
            ax.errorbar(range(1, len(rows) + 1), means, yerr=spread, marker="o", ms=3,
                        capsize=2, label=f"{xlabel} {value}")  # fmt: skip
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("grade")
        ax.set_ylabel("train L2 error (mean, std over seeds)")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)
