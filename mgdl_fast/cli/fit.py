"""``mgdl-fast fit [IMAGE]``: train MGDL (or the SGDL baseline) on an image; write its outputs."""

from __future__ import annotations

import sys
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..config import CACHE_DTYPES, MODEL_KINDS, OPTIMIZERS, ModelConfig, TrainConfig
from ..errors import InputError
from ..images import default_image, load_image, save_png
from ..objectives import RegressionObjective
from ..outputs import CHECKPOINT_STEM, RunWriter, environment, read_records
from ..tasks import RegressionTask
from ..trainer import fit
from . import restore
from .summary import grade_line, print_summary

# Values a preset fills in when the option is not given. 'auto' is paper on CUDA, quick on CPU.
# A task's own entry overrides the regression values (the papers: 20k iterations per grade for
# denoising and deblurring; quick: a CPU-scale count, see docs/REPRODUCTION.md).
PRESETS = {
    "quick": {"epochs": 300, "denoise": {"epochs": 1000}, "deblur": {"epochs": 1000}},
    "paper": {"epochs": 10_000, "denoise": {"epochs": 20_000}, "deblur": {"epochs": 20_000}},
}
DEFAULT_IMAGE = "skimage.data.camera()"


def _regression(image, task_cfg, train_cfg, device):
    task = RegressionTask(image.pixels, device=device)
    return task, RegressionObjective(
        task, backend=train_cfg.backend, chunk_size=train_cfg.chunk_size
    )


TASKS = {"regression": _regression, "denoise": restore.make_restore, "deblur": restore.make_restore}


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
    p.add_argument("--backend", default=None, help="reference, triton, cuda or auto")
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
    restore.add_options(p)
    p.set_defaults(run=run)


def config_from_args(args) -> dict:
    """The run's full configuration (validated) from the command line and the preset."""
    device = TrainConfig(device=args.device).torch_device()
    preset = (
        args.preset if args.preset != "auto" else ("paper" if device.type == "cuda" else "quick")
    )
    task = restore.task_config(args)
    is_restore = args.task in restore.RESTORE_TASKS
    defaults = restore.FIT_DEFAULTS if is_restore else {"layers": 2, "record_every": 10}
    preset_epochs = PRESETS[preset].get(args.task, PRESETS[preset])["epochs"]
    record_every = args.record_every
    if record_every is None:
        record_every = defaults["record_every"]
    model = ModelConfig(
        kind=args.model,
        grades=args.grades,
        width=args.width,
        layers=args.layers if args.layers is not None else defaults["layers"],
    )
    train = TrainConfig(
        epochs=args.epochs if args.epochs is not None else preset_epochs,
        lr=args.lr if args.lr is not None else task.pop("default_lr", 1e-3),
        optimizer=args.optimizer,
        early_stopping=not (args.no_early_stop or is_restore),
        record_every=record_every,
        test_every=args.test_every
        if args.test_every is not None
        else (record_every if is_restore else 50),
        seed=args.seed,
        device=args.device,
        backend=args.backend,
        cache_dtype="fp32" if is_restore and args.cache_dtype == "auto" else args.cache_dtype,
        feature_cache=not args.no_feature_cache,
    )
    task.pop("default_lr", None)
    return {
        "task": task,
        "preset": preset,
        "model": model.to_dict(),
        "train": train.to_dict(),
        "image": {"source": args.image or DEFAULT_IMAGE, "crop": args.crop},
    }


def _load(source: str):
    return default_image() if source == DEFAULT_IMAGE else load_image(source)


def _note(message: str) -> None:
    print(f"mgdl-fast: note: {message}", file=sys.stderr)


def _load_config(args, out: Path):
    """The run's config, earlier grade records (resume) and its (cropped) image."""
    records = []
    if args.resume:
        if not (out / "metrics.json").is_file():
            raise InputError(f"--resume: no earlier run in {out} (metrics.json not found)")
        config, records = read_records(out)
        config["train"].update(device=args.device, backend=args.backend)
    else:
        config = config_from_args(args)
    image = _load(config["image"]["source"])
    if config["image"].get("crop"):
        image = restore.centre_crop(image, config["image"]["crop"])
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
        objective.load_state(out / restore.STATE_FILE, len(resume_model))


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
    task, objective = TASKS[config["task"]["name"]](image, config["task"], train_cfg, device)
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
            objective.save_state(out / restore.STATE_FILE)
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
