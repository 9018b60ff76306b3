"""``mgdl-fast approx --study construct|trained|ablations``: paper 2's studies
(``mgdl_fast.experiments.construct.study``), written as ``<study>.json`` and PNG figures: an
existing one is replaced only with ``--overwrite``, never through a link, once the study has
run (``cli.outputs``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from ..errors import InputError
from ..experiments.construct import plots, report, study
from ..io.atomic import atomic_write
from ..io.environment import environment
from .outputs import check_outputs, make_out, write_json

STUDIES = ("construct", "trained", "ablations")
# The figures each study draws, beside its <study>.json.
FIGURES = {
    "construct": ("construct_norms.png",),
    "trained": ("trained_curves.png",),
    "ablations": ("no_freezing_curves.png", "width.png", "layers.png"),
}


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0:
        raise InputError(f"--seeds takes comma-separated integers >= 0, got {text!r}")
    return seeds


def _figures(name: str, results: dict, seeds: tuple[int, ...]) -> dict[str, Callable]:
    """The study's FIGURES: name -> draw(path)."""
    if name == "construct":
        return {"construct_norms.png": partial(plots.construct_figure, results)}
    if name == "trained":
        panels = {t: {k: r[k]["runs"] for k in ("mgdl", "sgdl")} for t, r in results.items()}
        words = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
        return {"trained_curves.png": partial(plots.curves_figure, panels,
                                              title=f"train loss, {words}")}  # fmt: skip
    panels = {t: {k: r[k]["runs"] for k in r} for t, r in results["no_freezing"].items()}
    return {
        "no_freezing_curves.png": partial(plots.curves_figure, panels, title="MGDL vs no freezing"),
        "width.png": partial(plots.sweep_figure, results["width"],
                             title="trained MGDL by width", xlabel="W"),
        "layers.png": partial(plots.sweep_figure, results["layers"], title="layers per grade",
                              xlabel="L"),
    }  # fmt: skip


def run_study(args) -> int:
    seeds = _seeds(args.seeds)
    out = Path(args.out or f"runs/approx2_{args.study}")
    record_path = out / f"{args.study}.json"
    check_outputs([record_path, *(out / name for name in FIGURES[args.study])], args.overwrite)
    make_out(out)
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
    write_json(record_path, record)
    for name, draw in _figures(args.study, results, seeds).items():
        atomic_write(out / name, draw)
    print(report.study_tables(args.study, results))
    print(f"{args.study}: {wall:.0f} s; outputs in {out}")
    return 0
