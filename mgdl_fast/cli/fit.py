"""``mgdl-fast fit [IMAGE]``: train MGDL (or the SGDL baseline) on an image; write its outputs.

Argument parsing only: every default comes from ``mgdl_fast.tasks`` (the papers' settings per
task and preset), the run itself from ``mgdl_fast.train`` and ``mgdl_fast.io``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..backends.base import PRECISIONS
from ..errors import InputError
from ..io.checkpoint import load_checkpoint
from ..io.environment import environment
from ..io.images import centre_crop, default_image, load_image, save_png
from ..io.rundir import CHECKPOINT_STEM, RunWriter, read_records
from ..tasks import PRESETS, TASKS, fit_defaults, restoration
from ..train import ModelConfig, TrainConfig, fit
from ..train.config import CACHE_DTYPES, MODEL_KINDS, OPTIMIZERS
from ..train.history import GradeRecord
from .summary import grade_line, print_summary

DEFAULT_IMAGE = "skimage.data.camera()"


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="fit an image grade by grade (default: skimage's cameraman)")
    p.add_argument("image", nargs="?", help=f"image file (default: {DEFAULT_IMAGE})")
    p.add_argument("--task", choices=sorted(TASKS), default="regression")
    p.add_argument("--model", choices=MODEL_KINDS, default="mgdl", help="mgdl or the sgdl baseline")
    p.add_argument(
        "--grades", type=int, default=4, help="grades (SGDL: grades*layers hidden layers)"
    )
    p.add_argument("--width", type=int, default=128, help="hidden width")
    p.add_argument("--layers", type=int, help="hidden layers per grade (2; denoise/deblur: 3)")
    p.add_argument(
        "--preset",
        choices=("auto", *PRESETS),
        default="auto",
        help="quick: 300 epochs per grade (denoise/deblur: 1000); paper: 10000 with early "
        "stopping (denoise/deblur: 20000, no early stopping); auto: paper on CUDA, quick on CPU",
    )
    p.add_argument("--epochs", type=int, help="epochs per grade (SGDL: in total)")
    p.add_argument(
        "--lr", type=float, help="learning rate (1e-3; denoise/deblur: the authors' 5e-3)"
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--no-early-stop", action="store_true", help="always run every epoch")
    p.add_argument(
        "--record-every", type=int, help="epochs between records (10; denoise/deblur: 100)"
    )
    p.add_argument("--test-every", type=int, help="epochs between test records (50)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--backend", default=None, help="torch (or reference), triton, cuda or auto")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="products: fp32, tf32 or bf16 (fp32 accumulation); auto: each backend's default",
    )
    p.add_argument(
        "--nondeterministic",
        action="store_true",
        help="let kernels sum gradients with atomics (faster; reruns differ in the last bits)",
    )
    p.add_argument(
        "--no-cuda-graph",
        action="store_true",
        help="launch every epoch from Python instead of replaying CUDA graphs between records",
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (same for each grade)")
    p.add_argument(
        "--cache-dtype",
        choices=("auto", *CACHE_DTYPES),
        default="auto",
        help="dtype of cached features (auto: bf16 on CUDA, fp32 on CPU; denoise/deblur fp32)",
    )
    p.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="recompute earlier grades every epoch (to measure what the cache saves)",
    )
    p.add_argument("--out", help="output directory (default: runs/<image>[_<task>]_<model>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out after its last finished grade",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_restore_options(p)
    p.set_defaults(run=run)


def _add_restore_options(p) -> None:
    g = p.add_argument_group("denoise / deblur (PROTOCOL 3)")
    g.add_argument("--noise", type=float, help="noise std in /255 units (10 denoise, 3 deblur)")
    g.add_argument("--blur", type=float, help="Gaussian blur sigma in pixels (deblur; default 3)")
    g.add_argument("--beta", type=float, help="TV coupling beta (default: the authors' choice)")
    g.add_argument(
        "--lambda", dest="lam", type=float, help="TV weight lambda (default: the authors' choice)"
    )
    g.add_argument("--noise-seed", type=int, default=0, help="seed of the observation's noise")
    g.add_argument(
        "--crop",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="train on the centre H x W crop of the image (any task)",
    )


def task_config(args) -> dict:
    """``config['task']``: the restoration settings (authors' defaults filled in), refused for
    other tasks."""
    given = [
        f"--{name}"
        for name, value in (("noise", args.noise), ("blur", args.blur), ("beta", args.beta))
        if value is not None
    ] + (["--lambda"] if args.lam is not None else [])
    if args.task not in restoration.RESTORE_TASKS:
        if given:
            raise InputError(f"{', '.join(given)} apply to --task denoise or deblur only")
        return {"name": args.task}
    return restoration.task_config(
        args.task,
        args.model,
        noise_255=args.noise,
        blur=args.blur,
        beta=args.beta,
        lam=args.lam,
        noise_seed=args.noise_seed,
    )


def _given(value, default):
    return default if value is None else value


def config_from_args(args) -> dict:
    """The run's full configuration (validated) from the command line and the task defaults."""
    device = TrainConfig(device=args.device).torch_device()
    preset = (
        args.preset if args.preset != "auto" else ("paper" if device.type == "cuda" else "quick")
    )
    task = task_config(args)
    defaults = fit_defaults(args.task, args.model, preset)
    record_every = _given(args.record_every, defaults["record_every"])
    model = ModelConfig(
        kind=args.model,
        grades=args.grades,
        width=args.width,
        layers=_given(args.layers, defaults["layers"]),
    )
    cache_dtype = args.cache_dtype
    if cache_dtype == "auto" and defaults["cache_dtype"] != "auto":
        cache_dtype = defaults["cache_dtype"]
    train = TrainConfig(
        epochs=_given(args.epochs, defaults["epochs"]),
        lr=_given(args.lr, defaults["lr"]),
        optimizer=args.optimizer,
        early_stopping=defaults["early_stopping"] and not args.no_early_stop,
        record_every=record_every,
        test_every=_given(args.test_every, defaults["test_every"] or record_every),
        seed=args.seed,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        deterministic=False if args.nondeterministic else None,
        cuda_graph=False if args.no_cuda_graph else None,
        cache_dtype=cache_dtype,
        feature_cache=not args.no_feature_cache,
    )
    return {
        "task": task,
        "preset": preset,
        "model": model.to_dict(),
        "train": train.to_dict(),
        "image": {"source": args.image or DEFAULT_IMAGE, "crop": args.crop},
    }


def _note(message: str) -> None:
    print(f"mgdl-fast: note: {message}", file=sys.stderr)


def _load_config(args, out: Path):
    """The run's config, earlier grade records (resume) and its (cropped) image."""
    records: list[GradeRecord] = []
    if args.resume:
        if not (out / "metrics.json").is_file():
            raise InputError(f"--resume: no earlier run in {out} (metrics.json not found)")
        config, records = read_records(out)
        config["train"].update(device=args.device, backend=args.backend)
    else:
        config = config_from_args(args)
    source = config["image"]["source"]
    image = default_image() if source == DEFAULT_IMAGE else load_image(source)
    if config["image"].get("crop"):
        image = centre_crop(image, config["image"]["crop"])
    for note in image.notes:
        _note(note)
    config["image"].update(
        height=image.height, width=image.width, channels=image.channels, notes=image.notes
    )
    return config, records, image


def _observation(task, objective, out: Path, resume_model) -> None:
    """Restoration runs: report the observation, save it, and restore ``u`` on resume."""
    if not hasattr(objective, "save_state"):
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
    out.mkdir(parents=True, exist_ok=True)
    save_png(out / "observed.png", task.observed.permute(1, 2, 0).cpu().numpy())
    if resume_model is not None:
        objective.load_state(out / restoration.STATE_FILE, len(resume_model))


def run(args) -> int:
    stem = Path(args.image).stem if args.image else "camera"
    name = stem if args.task == "regression" else f"{stem}_{args.task}"
    out = Path(args.out or f"runs/{name}_{args.model}")
    config, records, image = _load_config(args, out)
    model_cfg, train_cfg = ModelConfig(**config["model"]), TrainConfig(**config["train"])
    device = train_cfg.torch_device()
    resume_model = None
    if args.resume:
        resume_model, _ = load_checkpoint(out / CHECKPOINT_STEM, device=device)
        records = records[: len(resume_model)]
    spec = TASKS[config["task"]["name"]]
    task, objective = spec.make(image, config["task"], train_cfg, device)
    _observation(task, objective, out, resume_model)
    if resume_model is not None:
        _note(f"resuming {out} after grade {len(resume_model)}")
    elif config["preset"] == "quick" and args.epochs is None:
        _note(
            f"quick preset: {train_cfg.epochs} epochs per grade "
            "(use --preset paper for the papers' protocol)"
        )
    if hasattr(task, "describe"):
        config["task"]["observation"] = task.describe()
    writer = RunWriter(
        out,
        config,
        environment(device),
        title=f"{model_cfg.kind.upper()} {config['task']['name']}: {Path(image.source).name}",
    )

    def grade_done(result):
        writer.grade_done(result, objective.reconstruction())
        if hasattr(objective, "save_state"):
            objective.save_state(out / restoration.STATE_FILE)
        if not args.quiet:
            print(grade_line(result.records[-1], len(result.model), model_cfg), file=sys.stderr)

    result = fit(
        task,
        objective,
        model_cfg,
        train_cfg,
        progress=not args.quiet,
        on_grade_end=grade_done,
        resume=resume_model,
        resume_records=records,
    )
    writer.finish(result)
    print_summary(result, out)
    if result.diverged is not None:
        kept = f"kept grades 1-{len(result.model)}" if len(result.model) else "no grade was kept"
        print(f"mgdl-fast: error: {result.diverged}; {kept} in {out}", file=sys.stderr)
        return 1
    return 0
