"""``mgdl-fast approx --study construct|trained|ablations``: paper 2's studies
(``mgdl_fast.experiments.construct.study``), written as ``<study>.json`` and PNG figures."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ..errors import InputError
from ..experiments.construct import plots, report, study
from ..io.environment import environment

STUDIES = ("construct", "trained", "ablations")


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0:
        raise InputError(f"--seeds takes comma-separated integers >= 0, got {text!r}")
    return seeds


def _figures(name: str, results: dict, out: Path) -> None:
    if name == "construct":
        plots.construct_figure(results, out / "construct_norms.png")
    elif name == "trained":
        panels = {t: {k: r[k]["runs"] for k in ("mgdl", "sgdl")} for t, r in results.items()}
        plots.curves_figure(panels, out / "trained_curves.png", "train loss, seeds 0-2")
    else:
        panels = {t: {k: r[k]["runs"] for k in r} for t, r in results["no_freezing"].items()}
        plots.curves_figure(panels, out / "no_freezing_curves.png", "MGDL vs no freezing")
        plots.sweep_figure(results["width"], out / "width.png", "trained MGDL by width", "W")
        plots.sweep_figure(results["layers"], out / "layers.png", "layers per grade", "L")


def run_study(args) -> int:
    seeds = _seeds(args.seeds)
    out = Path(args.out or f"runs/approx2_{args.study}")
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        if args.study == "construct":
            results = study.construct_study()
        elif args.study == "trained":
            results = study.trained_study(seeds)
        else:
            results = study.ablations(seeds)
    finally:
        torch.set_num_threads(threads)
    wall = time.perf_counter() - start
    record = {"command": sys.argv, "seeds": list(seeds), "wall_s": wall,
              "environment": environment(torch.device("cpu")), "results": results}  # fmt: skip
    (out / f"{args.study}.json").write_text(json.dumps(record, indent=1))
    _figures(args.study, results, out)
    print(report.study_tables(args.study, results))
    print(f"{args.study}: {wall:.0f} s; outputs in {out}")
    return 0
