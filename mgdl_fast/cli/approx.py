"""``mgdl-fast approx --setting 1|2|2d``: MGDL vs SGDL vs MSDL function approximation, with the
grade-wise error table (printed and in ``approx.json``) and the figures ``approx.png`` and
``curves_<model>.png``; ``mgdl-fast approx --study construct|trained|ablations``: paper 2's
studies (approx_study.py). Files already in ``--out`` are replaced only with ``--overwrite``,
never through a link, once the work has run (``cli.outputs``)."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import torch

from ..block import INIT_SCHEMES
from ..errors import InputError
from ..experiments.approx import MODELS, SETTINGS, run_setting
from ..experiments.approx.plots import plot_approximations
from ..io.atomic import atomic_write
from ..io.curves import plot_curves
from ..io.environment import environment
from ..train.config import OPTIMIZERS, TrainConfig
from ..train.history import GradeRecord
from .approx_study import STUDIES, run_study
from .outputs import check_outputs, make_out, write_json


def add_parser(sub) -> None:
    p = sub.add_parser("approx", help="function approximation: MGDL vs SGDL vs MSDL")
    p.add_argument("--setting", choices=sorted(SETTINGS), help="1, 2 or 2d (paper 1's study)")
    p.add_argument(
        "--study",
        choices=STUDIES,
        help="paper 2: construct (the constructive scheme), trained (MGDL vs end to end, seeds "
        "0-2) or ablations (no freezing, width, layers per grade); docs/APPROXIMATION.md",
    )
    p.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset of mgdl,sgdl,msdl"
    )
    p.add_argument(
        "--preset",
        choices=("quick", "paper"),
        default="quick",
        help="quick: 1D 30k epochs, 2D 2k on 64x64 points; paper: 1D 1M epochs with early "
        "stopping, 2D 20k on 128x128",
    )
    p.add_argument("--epochs", type=int, help="epochs per MGDL grade; SGDL/MSDL in total")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="gd (1D default) or adam (2D)")
    for model in MODELS:
        p.add_argument(f"--lr-{model}", type=float, help=f"{model.upper()} learning rate")
    p.add_argument(
        "--J",
        type=int,
        help="2**J training points (1D; default 10) or per axis (2D; quick 6, paper 7)",
    )
    p.add_argument("--record-every", type=int, default=100, help="epochs between loss records")
    p.add_argument("--no-early-stop", action="store_true", help="always run every epoch")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument(
        "--init", choices=INIT_SCHEMES, help="parameter init (default: he in 1D, glorot in 2D)"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--backend", default=None, help="torch (or reference), triton, cuda or auto")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: these tensors are small, and thread hand-offs cost more)",
    )
    p.add_argument(
        "--out", help="output directory (default: runs/approx_<setting> or runs/approx2_<study>)"
    )
    p.add_argument(
        "--seeds", default="0,1,2", help="--study trained/ablations: comma-separated seeds"
    )
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace the files of an earlier run in --out (default: refuse them)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _train_configs(args, setting) -> dict[str, TrainConfig]:
    epochs = args.epochs if args.epochs is not None else setting.epochs[args.preset]
    configs = {}
    for model in MODELS:
        lr = getattr(args, f"lr_{model}")
        configs[model] = TrainConfig(
            epochs=epochs,
            lr=lr if lr is not None else setting.lr[model],
            optimizer=args.optimizer or setting.optimizer,
            early_stopping=not args.no_early_stop,
            record_every=args.record_every,
            test_every=args.record_every,
            rel_tol=1e-6,
            seed=args.seed,
            init=args.init or setting.init,
            device=args.device,
            backend=args.backend,
        )
    return configs


def _models(text: str) -> tuple[str, ...]:
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise InputError(f"--models takes a comma-separated subset of {','.join(MODELS)}")
    return models


def format_table(rows: list[dict]) -> str:
    """The grade-wise error table as Markdown."""
    lines = [
        "| model | grade | epochs | stop | time (s) | train loss | val loss | test loss "
        "| test rel. L2 | test max err |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model'].upper()} | {r['grade'] or '-'} | {r['epochs']} | {r['stop_reason']} "
            f"| {r['time_s']:.1f} | {r['train_loss']:.4e} | {r['val_loss']:.4e} "
            f"| {r['test_loss']:.4e} | {r['test_rel_l2']:.4e} | {r['test_max_abs']:.3e} |"
        )
    return "\n".join(lines)


def run(args) -> int:
    if (args.setting is None) == (args.study is None):
        raise InputError("approx takes one of --setting (paper 1) or --study (paper 2)")
    if args.study is not None:
        return run_study(args)
    setting = SETTINGS[args.setting]
    models = _models(args.models)
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    if args.J is not None and not 2 <= args.J <= 14:
        raise InputError(f"--J must be between 2 and 14, got {args.J}")
    configs = _train_configs(args, setting)
    device = configs["mgdl"].torch_device()
    out = Path(args.out or f"runs/approx_{setting.name}")
    names = ["approx.json", "approx.png", *(f"curves_{model}.png" for model in models)]
    check_outputs([out / name for name in names], args.overwrite)
    make_out(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        results, task, predictions = run_setting(
            setting, models, configs, J=args.J, preset=args.preset, progress=not args.quiet
        )
    finally:
        torch.set_num_threads(threads)
    results.update(command=sys.argv, preset=args.preset, environment=environment(device))
    write_json(out / "approx.json", results, indent=2)
    title = task.description
    atomic_write(out / "approx.png", lambda f: plot_approximations(task, predictions, f, title))
    for model, info in results["models"].items():
        records = [GradeRecord.from_dict(r) for r in info["records"]]
        if records:
            draw = partial(plot_curves, records, title=f"{model.upper()} {title}")
            atomic_write(out / f"curves_{model}.png", draw)
    print(format_table(results["rows"]))
    print(f"outputs in {out}")
    diverged = [m for m, info in results["models"].items() if info["diverged"]]
    if diverged:
        print(
            f"mgdl-fast: error: {', '.join(diverged)} diverged (see approx.json)", file=sys.stderr
        )
        return 1
    return 0
