"""``mgdl-fast fit [IMAGE]``: train MGDL (or the SGDL baseline) on an image; write its outputs.

Argument parsing and the run's course only: defaults come from ``mgdl_fast.tasks``
(cli/fit_config.py merges them), training from ``mgdl_fast.train``, files from
``mgdl_fast.io``. Options default to None so that ``--resume`` knows which ones were given.

Under ``torchrun --nproc-per-node K -m mgdl_fast fit ...`` every rank runs this command: the
grades train data-parallel (``train.distributed``), rank 0 alone opens and writes the run
directory (``io.rankrun.RankRun``) and prints; the others follow its decisions and exit codes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

from ..backends.base import PRECISIONS
from ..encoding import ENCODINGS
from ..errors import InputError
from ..io.environment import environment
from ..io.manifest import MANIFEST
from ..io.rankrun import RankRun
from ..io.rundir import RunDirectory, metrics_record
from ..tasks import PRESETS, TASKS
from ..train import ModelConfig, TrainConfig, distributed, fit
from ..train.config import CACHE_DTYPES, MODEL_KINDS, OPTIMIZERS, resolve_device
from ..train.progress import Progress
from ..train.state import Checkpointer, TrainingState
from ..train.trainer import ON_DIVERGE, objective_state
from .fit_config import (
    DEFAULT_IMAGE,
    config_from_args,
    describe_image,
    grades_value,
    load_new_image,
    load_run_image,
    number_list,
    resumed_config,
)
from .fit_memory import add_memory_options, make_task, plan, report
from .summary import grade_line, print_summary


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="fit an image grade by grade (default: skimage's cameraman)")
    p.add_argument("image", nargs="?", help=f"image file (default: {DEFAULT_IMAGE})")
    p.add_argument("--task", choices=sorted(TASKS), help="regression (default), denoise, deblur")
    p.add_argument("--model", choices=MODEL_KINDS, help="mgdl (default) or the sgdl baseline")
    p.add_argument(
        "--grades",
        type=grades_value,
        help="grades, 4 (SGDL: grades*layers hidden layers); auto: add grades while the "
        "validation PSNR gains at least --min-gain dB, up to --max-grades",
    )
    p.add_argument("--max-grades", type=int, help="most grades for --grades auto (8)")
    p.add_argument("--min-gain", type=float, help="dB a grade must add for another (0.1)")
    p.add_argument("--width", type=number_list(int), help="hidden width, or one per grade (128)")
    p.add_argument(
        "--encoding",
        choices=ENCODINGS,
        help="encode the coordinates for grade 1: none (the papers'), fourier (Gaussian random "
        "features) or positional (log-spaced frequencies); default: fourier for the quick "
        "preset's regression, none otherwise",
    )
    p.add_argument("--frequencies", type=int, help="encoding frequencies m (64: 2m inputs)")
    p.add_argument("--sigma", type=float, help="fourier: std of the frequencies (5)")
    p.add_argument(
        "--layers", type=number_list(int), help="hidden layers per grade, or a list (2; restore 3)"
    )
    p.add_argument(
        "--preset",
        choices=("auto", *PRESETS),
        help="quick: 300 epochs per grade on Fourier features (denoise/deblur: 1000 on the "
        "coordinates); paper: 10000 with early "
        "stopping (denoise/deblur: 20000, no early stopping); colour: Fang & Xu's NeurIPS 2024 "
        "colour protocol (4 x 3 x 256, lr 1e-3,1e-3,5e-4,5e-4, 10000 epochs); auto "
        "(default): paper on CUDA, quick on CPU",
    )
    p.add_argument(
        "--epochs", type=number_list(int), help="epochs per grade, or one per grade (SGDL: total)"
    )
    p.add_argument(
        "--lr",
        type=number_list(float),
        help="learning rate, or one per grade like 1e-3,1e-3,5e-4,5e-4 (1e-3; restore 5e-3)",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="adam (default) or gd")
    p.add_argument("--no-early-stop", action="store_true", help="always run every epoch")
    p.add_argument("--record-every", type=int, help="epochs between records (10; restore: 100)")
    p.add_argument("--test-every", type=int, help="epochs between test records (50)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--backend", help="torch (or reference), triton, cuda or auto")
    p.add_argument("--precision", choices=PRECISIONS, help="products: fp32, tf32 or bf16")
    p.add_argument(
        "--nondeterministic", action="store_true", help="kernels may sum gradients with atomics"
    )
    p.add_argument("--no-cuda-graph", action="store_true", help="no CUDA-graph replay of epochs")
    p.add_argument("--seed", type=int, help="initialisation seed, the same for each grade (0)")
    p.add_argument(
        "--cache-dtype",
        choices=("auto", *CACHE_DTYPES),
        help="dtype of cached features (auto: bf16 on CUDA, fp32 on CPU; denoise/deblur fp32)",
    )
    p.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="recompute earlier grades every epoch (to measure what the cache saves)",
    )
    p.add_argument("--out", help="output directory (default: runs/<image>[_<task>]_<model>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        help="save the grade in progress every N epochs (default: after each minute of work)",
    )
    p.add_argument(
        "--on-diverge",
        choices=ON_DIVERGE,
        default="stop",
        help="stop (default), or retry a diverged grade at half the lr (up to 3 times)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar or lines, a line per grade"
    )
    _add_restore_options(p)
    add_memory_options(p)
    p.set_defaults(run=run)


def _add_restore_options(p) -> None:
    g = p.add_argument_group("denoise / deblur (PROTOCOL 3)")
    g.add_argument("--noise", type=float, help="noise std in /255 units (10 denoise, 3 deblur)")
    g.add_argument("--blur", type=float, help="Gaussian blur sigma in pixels (deblur; default 3)")
    g.add_argument("--beta", type=float, help="TV coupling beta (default: the authors' choice)")
    g.add_argument(
        "--lambda", dest="lam", type=float, help="TV weight lambda (default: the authors' choice)"
    )
    g.add_argument("--noise-seed", type=int, help="seed of the observation's noise (0)")
    g.add_argument(
        "--crop",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="train on the centre H x W crop of the image (any task)",
    )


def _note(message: str) -> None:
    if distributed.current().is_main:
        print(f"mgdl-fast: note: {message}", file=sys.stderr)


def _default_out(args) -> Path:
    stem = Path(args.image).stem if args.image else "camera"
    task = args.task or "regression"
    return Path(f"runs/{stem if task == 'regression' else f'{stem}_{task}'}_{args.model or 'mgdl'}")


def _prepare(args, loaded, out: Path):
    """The config, the state to resume from (or None) and the image; ``loaded``: the run's
    saved state and config when resuming (the state None: the run saved none yet, and the
    config None: it stopped before its first manifest)."""
    state, saved = loaded if loaded is not None else (None, None)
    if args.resume and saved is None:
        raise InputError(
            f"--resume: {out} stopped before it recorded its configuration (no {MANIFEST}); "
            "start it again with --overwrite"
        )
    if saved is not None:
        config, notes = resumed_config(args, saved, len(state.model) if state else 0)
        image = load_run_image(saved["image"], args.image, out)
        for note in notes:
            _note(note)
    else:
        config = config_from_args(args)
        image = load_new_image(config["image"]["source"])
        config["image"] |= describe_image(image, config["image"]["source"], out)
    if config["image"].get("crop"):
        image = image.centre_crop(config["image"]["crop"])
    if config["preset"] == "colour" and image.channels != 3:
        raise InputError(f"--preset colour is for colour images; {image.source} has 1 channel")
    for note in image.notes:
        _note(note)
    config["image"].update(height=image.height, width=image.width, channels=image.channels)
    return config, state, image


def _observation(task, objective, run_dir: RankRun) -> None:
    """Restoration runs: report the observation and save it."""
    if not hasattr(task, "describe"):
        return
    pixels = task.observed.permute(1, 2, 0).cpu().numpy()
    run_dir.write_observation(pixels)
    if not run_dir.world.is_main:
        return
    info = task.describe()
    blur = ""
    if info["blur_sigma"] is not None:
        size = info["kernel_size"]
        blur = f"blur sigma {info['blur_sigma']:g} ({size}x{size}), "
    print(
        f"observation: {blur}noise {info['noise_255']:g}/255 (seed {info['noise_seed']}): "
        f"PSNR {info['observed_psnr']:.4f} dB"
    )


def run(args) -> int:
    """The fit command; under torchrun, one rank of it (see the module docstring)."""
    world = distributed.launch(cuda=resolve_device(args.device or "auto").type == "cuda")
    if not world.is_main:
        # Rank 0 shows the run (and warns); the others print only their errors.
        args.quiet = True
        logging.getLogger("mgdl_fast").setLevel(logging.ERROR)
    try:
        if args.out is not None and not args.out:
            raise InputError("--out is empty; name the run's directory")
        if args.checkpoint_every is not None and args.checkpoint_every < 1:
            raise InputError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
        out = Path(args.out) if args.out else _default_out(args)
        mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
        if mode == "new":
            config_from_args(args)  # bad options are refused before the directory is touched
        opened = world.on_main(lambda: RunDirectory(out, mode=mode))
        try:
            return _run(args, RankRun(opened, out, world), out)
        finally:
            if opened is not None:
                opened.close()
    finally:
        distributed.finish(world)


def _resume_note(state: TrainingState, out: Path) -> None:
    current = state.current
    where = (
        f"in grade {current.grade} after epoch {current.epoch}"
        if current
        else (f"after grade {len(state.model)}")
    )
    _note(f"resuming {out} {where}")


def _run(args, run_dir: RankRun, out: Path) -> int:
    world = run_dir.world
    loaded = run_dir.load_state("cpu") if args.resume else None
    config, state, image = world.everywhere(lambda: _prepare(args, loaded, out))
    report(plan(config, image, args), config, args.quiet)
    model_cfg = ModelConfig(**config["model"])
    train_cfg = TrainConfig(
        **{**config["train"], "device": distributed.rank_device(config["train"]["device"], world)}
    )
    device = train_cfg.torch_device()
    if state is not None:
        state = state.to(device)
    task, objective = make_task(config, image, train_cfg, device)
    run_dir.begin(config)
    _observation(task, objective, run_dir)
    if hasattr(task, "describe"):
        config["task"]["observation"] = task.describe()
    if state is not None:
        _resume_note(state, out)
    elif args.resume:
        _note(f"{out} holds no saved state yet; starting from grade 1")
    elif config["preset"] == "quick" and args.epochs is None:
        inputs = "" if model_cfg.encoding == "none" else f" on {model_cfg.encoding} features"
        _note(
            f"quick preset: {train_cfg.epochs} epochs per grade{inputs} "
            "(--preset paper: the papers' protocol)"
        )
    env = environment(device)
    if world.sharded:
        env["distributed"] = world.describe()
    title = f"{model_cfg.kind.upper()} {config['task']['name']}: {Path(image.source).name}"
    checkpointer = Checkpointer(
        lambda s: run_dir.save_state(s, config), every_epochs=args.checkpoint_every
    )
    total = model_cfg.planned_grades if model_cfg.kind == "mgdl" else 1

    def grade_done(result):
        metrics = metrics_record(result, config, env, "running")
        run_dir.grade_done(result, objective.reconstruction(), metrics)
        run_dir.save_state(
            TrainingState(result.model, result.records, None, objective_state(objective),
                          torch.get_rng_state()),
            config,
        )  # fmt: skip
        if world.is_main:
            print(grade_line(result.records[-1], len(result.model), total), file=sys.stderr)

    progress = Progress(quiet=args.quiet, log_path=run_dir.progress_log)
    with checkpointer.catching_signals():
        result = fit(
            task, objective, model_cfg, train_cfg, progress=progress, on_grade_end=grade_done,
            resume=state, checkpointer=checkpointer, on_diverge=args.on_diverge,
            work_dir=run_dir.work_dir(),
        )  # fmt: skip
    return _finish(result, run_dir, config, env, title, out)


def _finish(result, run_dir: RankRun, config: dict, env: dict, title: str, out: Path) -> int:
    """The run's last files and words; the exit status (the same on every rank)."""
    world = run_dir.world
    if result.interrupted is not None:
        run_dir.write_metrics(metrics_record(result, config, env, "interrupted"))
        run_dir.commit()
        if world.is_main:
            print(f"mgdl-fast: {result.interrupted}", file=sys.stderr)
        return 128 + result.interrupted.signum
    status = "diverged" if result.diverged else "complete"
    run_dir.write_metrics(metrics_record(result, config, env, status))
    run_dir.write_curves(result, title)
    run_dir.commit()
    if not world.is_main:
        return 1 if result.diverged is not None else 0
    print_summary(result, out)
    if result.diverged is not None:
        kept = f"kept grades 1-{len(result.model)}" if len(result.model) else "no grade was kept"
        print(f"mgdl-fast: error: {result.diverged}; {kept} in {out}", file=sys.stderr)
        return 1
    return 0


__all__ = ["add_parser", "config_from_args", "run"]
