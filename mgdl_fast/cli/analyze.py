"""``mgdl-fast analyze eig TASK``: the eigenvalues of I - eta*H during plain gradient descent
(PROTOCOL 4) for MGDL and SGDL; writes ``eig_<model>.json`` and ``eigenvalues.png``. With
``--optimizer adam``: the eigenvalues of Adam's preconditioned Hessian P H against its stability
threshold (``analysis.adam``); writes ``eig_adam_<model>.json`` and ``adam_eigenvalues.png``.
``mgdl-fast analyze plot RUN.json ...`` redraws either figure from those files."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ..backends.base import PRECISIONS
from ..block import INIT_SCHEMES
from ..errors import InputError
from ..experiments.analysis.adam import AdamEigenTracker
from ..experiments.analysis.data import load_data, parse_synthetic
from ..experiments.analysis.defaults import ADAM_EIG_LR, EIG_DEFAULTS
from ..experiments.analysis.figures import plot_adam_eigenvalues, plot_eigenvalues
from ..experiments.analysis.spectrum import HVP_DTYPES, METHODS
from ..experiments.analysis.tracking import EigenTracker, track_eigenvalues
from ..io.atomic import atomic_write
from ..io.environment import environment
from ..train.config import ModelConfig, TrainConfig
from .outputs import check_outputs, make_out, write_json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze", help="analyses of training: eigenvalues of I - eta*H (GD) or of P H (Adam)"
    )
    analyses = sub_parsers(p)
    e = analyses.add_parser(
        "eig",
        help="track the extreme eigenvalues of I - eta*H during plain GD (PROTOCOL 4), or "
        "of Adam's preconditioned Hessian (--optimizer adam)",
        description="TASK is synthetic:1, synthetic:2 or an image file. Defaults are PROTOCOL "
        "4's: synthetic width 32, image width 48 (subsampled by 2), one hidden layer per "
        "grade, SGDL = grades*layers hidden layers, He-normal init, the authors' step sizes "
        f"(Adam: lr {ADAM_EIG_LR:g}).",
    )
    e.add_argument("task", help="synthetic:1, synthetic:2 or an image file")
    e.add_argument("--model", choices=("mgdl", "sgdl", "both"), default="both")
    e.add_argument("--grades", type=int, default=4, help="grades (SGDL: grades*layers layers)")
    e.add_argument("--width", type=int, help="hidden width (default 32 synthetic, 48 image)")
    e.add_argument("--layers", type=int, help="hidden layers per grade (default 1)")
    e.add_argument(
        "--eta",
        type=float,
        help=f"GD step size (default: PROTOCOL 4's per model) or Adam lr ({ADAM_EIG_LR:g})",
    )
    e.add_argument("--iterations", type=int, default=2000, help="GD iterations per MGDL grade")
    e.add_argument("--sgdl-iterations", type=int, help="SGDL iterations (default --iterations)")
    e.add_argument("--interval", type=int, help="iterations between spectra (default its/20)")
    e.add_argument("--k", type=int, default=10, help="smallest and largest eigenvalues kept")
    e.add_argument("--method", choices=METHODS, default="auto", help="auto: exact up to 2000")
    e.add_argument("--hvp-dtype", choices=sorted(HVP_DTYPES), default="float64")
    _add_training_options(e)
    e.add_argument("--lanczos-steps", type=int, default=300, help="Lanczos step limit")
    e.add_argument("--tol", type=float, default=1e-4, help="Lanczos tolerance (x max|eig|)")
    e.add_argument(
        "--eig-stop",
        default="auto",
        help="end an MGDL grade when min eig(J) < VALUE: auto (PROTOCOL 4: -0.95 for images, "
        "off for synthetic), off, or a number",
    )
    e.add_argument("--init", choices=INIT_SCHEMES, default="he", help="parameter init")
    e.add_argument("--rel-tol", type=float, help="early-stop tolerance (default PROTOCOL 4)")
    e.add_argument("--no-early-stop", action="store_true", help="always run every iteration")
    e.add_argument("--downsample", type=int, help="image subsampling img[::s, ::s] (default 2)")
    e.add_argument("--invert", action="store_true", help="use 1 - image (the resolution chart)")
    e.add_argument("--seed", type=int, default=0, help="init seed (same for every grade)")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    e.add_argument("--out", help="output directory (default runs/eig_<task>)")
    e.add_argument(
        "--overwrite", action="store_true", help="replace this analysis's files in --out"
    )
    e.add_argument("--quiet", action="store_true", help="no line per spectrum")
    e.set_defaults(run=run_eig)
    plot = analyses.add_parser("plot", help="redraw the eigenvalue figure from eig_*.json files")
    plot.add_argument("runs", nargs="+", help="eig_<model>.json files, one panel each")
    plot.add_argument("--out", required=True, help="PNG to write")
    plot.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    plot.add_argument("--title", help="figure title (default: the runs' task)")
    plot.set_defaults(run=run_plot)


def _add_training_options(e) -> None:
    """How the tracked network trains: the optimizer and its arithmetic."""
    e.add_argument("--optimizer", choices=("gd", "adam"), default="gd", help="gd (default)")
    e.add_argument(
        "--no-hessian",
        action="store_true",
        help="Adam: skip the spectrum of H itself (only that of P H)",
    )
    e.add_argument(
        "--precision",
        choices=[p for p in PRECISIONS if p != "auto"],
        default="fp32",
        help="training arithmetic (fp32; the spectra are float64 whatever it is)",
    )


def sub_parsers(parser):
    """Sub-commands of ``parser`` with the CLI's single-line errors."""
    return parser.add_subparsers(dest="analysis", required=True, parser_class=type(parser))


def _positive(name: str, value, *, integer: bool = True) -> None:
    ok = (isinstance(value, int) if integer else isinstance(value, (int, float))) and value > 0
    if not ok or (not integer and not math.isfinite(value)):
        kind = "an integer >= 1" if integer else "a finite number > 0"
        raise InputError(f"{name} must be {kind}, got {value!r}")


def eig_stops(args, models: tuple[str, ...], defaults: dict) -> dict:
    """Model -> threshold of the eigenvalue stopping rule (None: not applied; MGDL under GD
    only)."""
    text = args.eig_stop
    if args.optimizer == "adam":
        if text not in ("auto", "off"):
            raise InputError("--eig-stop is PROTOCOL 4's GD rule; it does not apply to Adam")
        return dict.fromkeys(models)
    if text == "auto":
        return {m: defaults["eig_stop"][m] for m in models}
    if text == "off":
        return dict.fromkeys(models)
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"--eig-stop must be auto, off or a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InputError(f"--eig-stop must be finite, got {text!r}")
    if models == ("sgdl",):
        raise InputError("the eigenvalue stopping rule applies to MGDL only (PROTOCOL 4)")
    return {m: value if m == "mgdl" else None for m in models}


def _check(args) -> None:
    _positive("--iterations", args.iterations)
    for name in ("sgdl_iterations", "interval", "width", "layers", "downsample"):
        if getattr(args, name) is not None:
            _positive("--" + name.replace("_", "-"), getattr(args, name))
    _positive("--k", args.k)
    _positive("--tol", args.tol, integer=False)
    if args.eta is not None:
        _positive("--eta", args.eta, integer=False)
    if args.lanczos_steps < 2 * args.k:
        raise InputError(f"--lanczos-steps must be >= 2 * k = {2 * args.k}")
    if args.no_hessian and args.optimizer != "adam":
        raise InputError("--no-hessian applies to --optimizer adam")


def _configs(args, model: str, defaults: dict) -> tuple[ModelConfig, TrainConfig, float]:
    eta = args.eta
    if eta is None:
        eta = ADAM_EIG_LR if args.optimizer == "adam" else defaults["eta"][model]
    iterations = args.iterations
    if model == "sgdl" and args.sgdl_iterations is not None:
        iterations = args.sgdl_iterations
    model_cfg = ModelConfig(
        kind=model,
        grades=args.grades,
        width=args.width or defaults["width"],
        layers=args.layers or defaults["layers"],
    )
    train_cfg = TrainConfig(
        epochs=iterations,
        lr=eta,
        optimizer=args.optimizer,
        early_stopping=not args.no_early_stop,
        record_every=defaults["record_every"],
        rel_tol=args.rel_tol if args.rel_tol is not None else defaults["rel_tol"][model],
        seed=args.seed,
        init=args.init,
        device=args.device,
        precision=args.precision,
    )
    return model_cfg, train_cfg, eta


def _tracker(args, eta: float, stop: float | None):
    """The hook taking the spectra: of I - eta*H (GD) or of Adam's P H."""
    interval = args.interval or max(1, args.iterations // 20)
    spectrum = {
        "method": args.method,
        "dtype": HVP_DTYPES[args.hvp_dtype],
        "max_steps": args.lanczos_steps,
        "tol": args.tol,
    }
    if args.optimizer == "adam":
        return AdamEigenTracker(
            interval, args.k, hessian_too=not args.no_hessian, verbose=not args.quiet, **spectrum
        )
    return EigenTracker(eta, interval, args.k, stop_below=stop, verbose=not args.quiet, **spectrum)


def _eig_run(args, model: str, defaults: dict, stop: float | None) -> dict:
    """Train one model with eigenvalue tracking; its JSON summary."""
    model_cfg, train_cfg, eta = _configs(args, model, defaults)
    data = load_data(
        args.task,
        downsample=(args.downsample or defaults["downsample"]) if data_is_image(args) else 1,
        invert=args.invert,
        device=train_cfg.torch_device(),
    )
    tracker = _tracker(args, eta, stop)
    summary = track_eigenvalues(data.task, data.objective, model_cfg, train_cfg, tracker)
    summary["config"] = {
        "task": args.task,
        "data": data.name,
        "train_points": data.task.splits["train"].x.shape[0],
        "model": model_cfg.to_dict(),
        "train": train_cfg.to_dict(),
        "optimizer": args.optimizer,
        "eta": eta,
        "interval": tracker.interval,
        "k": args.k,
        "method": args.method,
        "hvp_dtype": args.hvp_dtype,
        "lanczos_steps": args.lanczos_steps,
        "tol": args.tol,
        "eig_stop": stop,
        "command": "mgdl-fast " + " ".join(sys.argv[1:]),
    }
    if args.optimizer == "adam":
        summary["config"].update(beta1=tracker.betas[0], beta2=tracker.betas[1])
    summary["environment"] = environment(train_cfg.torch_device())
    return summary


def data_is_image(args) -> bool:
    return parse_synthetic(args.task) is None


def run_eig(args) -> int:
    _check(args)
    defaults = EIG_DEFAULTS["image" if data_is_image(args) else "synthetic"]
    if not data_is_image(args) and (args.downsample is not None or args.invert):
        raise InputError("--downsample and --invert apply to images, not synthetic data")
    models = ("mgdl", "sgdl") if args.model == "both" else (args.model,)
    stops = eig_stops(args, models, defaults)
    out = Path(args.out or f"runs/eig_{Path(args.task).stem.replace(':', '')}")
    prefix = "eig_adam" if args.optimizer == "adam" else "eig"
    figure = out / ("adam_eigenvalues.png" if args.optimizer == "adam" else "eigenvalues.png")
    outputs = {model: out / f"{prefix}_{model}.json" for model in models}
    # Named and checked before any work; written atomically once every model has run.
    check_outputs([*outputs.values(), figure], args.overwrite)
    make_out(out)
    runs = []
    for model in models:
        runs.append(_eig_run(args, model, defaults, stops[model]))
        print(_summary_line(model, runs[-1]))
    for model, summary in zip(models, runs):
        write_json(outputs[model], summary)
    atomic_write(figure, lambda tmp: _plot(runs, tmp, _title(runs, args.task)))
    print(f"wrote {figure} and {prefix}_<model>.json")
    return 0


def _adam(runs: list[dict]) -> bool:
    return runs[0]["config"].get("optimizer", "gd") == "adam"


def _title(runs: list[dict], task: str) -> str:
    if _adam(runs):
        return f"Adam: eigenvalues of P H against the stability threshold: {task}"
    return f"Eigenvalues of I - eta H: {task}"


def _plot(runs: list[dict], path: Path, title: str) -> None:
    """The figure of ``runs``, all GD or all Adam."""
    (plot_adam_eigenvalues if _adam(runs) else plot_eigenvalues)(runs, path, title)


def run_plot(args) -> int:
    check_outputs([Path(args.out)], args.overwrite)
    runs = []
    for path in args.runs:
        try:
            run = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        if not isinstance(run, dict) or not {"config", "evaluations", "boundaries"} <= set(run):
            raise InputError(f"{path} is not an eig_<model>.json written by analyze eig")
        runs.append(run)
    if len({r["config"].get("optimizer", "gd") for r in runs}) > 1:
        raise InputError("analyze plot draws GD runs or Adam runs, not both in one figure")
    title = args.title or _title(runs, runs[0]["config"]["task"])
    atomic_write(Path(args.out), lambda tmp: _plot(runs, tmp, title))
    print(f"wrote {args.out}")
    return 0


def _summary_line(model: str, summary: dict) -> str:
    evals = summary["evaluations"]
    grades = ", ".join(f"{g['iterations']} its ({g['stop_reason']})" for g in summary["grades"])
    final = summary["grades"][-1]["final"].get("test_loss") if summary["grades"] else None
    diverged = f"; {summary['diverged']}" if summary["diverged"] else ""
    if summary["config"].get("optimizer") == "adam":
        ratio = max((e["ratio"] for e in evals), default=math.nan)
        spectra = f"lambda_max(P H) up to {ratio:.3f} x the threshold"
    else:
        low = min((e["smallest"][0] for e in evals), default=math.nan)
        high = max((e["largest"][-1] for e in evals), default=math.nan)
        spectra = f"eig(J) in [{low:.4f}, {high:.4f}]"
    return (
        f"{model.upper()}: grades {grades}; final test loss {final}; {spectra} over "
        f"{len(evals)} spectra; {summary['seconds']:.1f} s{diverged}"
    )
