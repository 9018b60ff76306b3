"""``mgdl-fast sweep-lr TASK``: MGDL vs SGDL over a grid of learning rates with plain GD and Adam
(PROTOCOL 5); writes ``sweep.json``, ``sweep.md`` (the table) and ``sweep.png``.

While it runs, every finished run is saved to ``sweep_partial.json``; ``--resume`` continues a
sweep from there (or extends a finished one with new learning rates) without training its runs
again, and refuses a different configuration. An output file already in ``--out`` is replaced
only with ``--overwrite`` (or by the sweep it belongs to, resumed), never through a link, and
only once the sweep has finished (``cli.outputs``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ..backends.base import PRECISIONS
from ..block import INIT_SCHEMES
from ..errors import InputError
from ..experiments.analysis.data import load_data, parse_synthetic
from ..experiments.analysis.defaults import DEFAULT_LRS, SWEEP_DEFAULTS
from ..experiments.analysis.figures import plot_sweep
from ..experiments.analysis.sweep import markdown_table, row_key, sweep
from ..io.atomic import atomic_write, write_text
from ..io.environment import clean_json, environment
from ..io.schema import field, read_json
from ..train.config import MODEL_KINDS, OPTIMIZERS, ModelConfig, TrainConfig
from .analyze import _positive
from .outputs import check_outputs, make_out, write_json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep-lr",
        help="MGDL vs SGDL over a grid of learning rates, GD and Adam (PROTOCOL 5)",
        description="TASK is synthetic:1, synthetic:2 or an image file. Each (optimizer, lr, "
        "model) is trained from the same init; the final losses go to sweep.json/.md/.png.",
    )
    p.add_argument("task", help="synthetic:1, synthetic:2 or an image file")
    p.add_argument("--models", default="mgdl,sgdl", help="comma list of mgdl, sgdl")
    p.add_argument("--optimizers", default="gd,adam", help="comma list of gd, adam")
    p.add_argument("--lrs-gd", default=DEFAULT_LRS["gd"], help="GD learning rates")
    p.add_argument("--lrs-adam", default=DEFAULT_LRS["adam"], help="Adam learning rates")
    p.add_argument("--epochs", type=int, default=1000, help="per MGDL grade; SGDL in total")
    p.add_argument("--grades", type=int, default=4, help="grades (SGDL: grades*layers layers)")
    p.add_argument("--width", type=int, help="hidden width (default 32 synthetic, 128 image)")
    p.add_argument("--layers", type=int, help="hidden layers per grade (default 1 / 2)")
    p.add_argument("--init", choices=INIT_SCHEMES, help="default he synthetic, glorot image")
    p.add_argument("--rel-tol", type=float, default=1e-6, help="early-stop tolerance")
    p.add_argument("--no-early-stop", action="store_true", help="always run every epoch")
    p.add_argument("--downsample", type=int, default=1, help="image subsampling img[::s, ::s]")
    p.add_argument("--invert", action="store_true", help="use 1 - image (the resolution chart)")
    p.add_argument("--seed", type=int, default=0, help="init seed (same for every grade)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--precision",
        choices=[p for p in PRECISIONS if p != "auto"],
        default="fp32",
        help="training arithmetic (default fp32)",
    )
    p.add_argument("--out", help="output directory (default runs/sweep_<task>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="keep the runs already in --out")
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the sweep (and any output file) in --out when the new one ends",
    )
    p.add_argument("--quiet", action="store_true", help="no line per run")
    p.set_defaults(run=run)


PARTIAL = "sweep_partial.json"
# Every file a sweep writes into --out; the first two hold its rows.
OUTPUTS = (PARTIAL, "sweep.json", "sweep.md", "sweep.png")
# What a resumed sweep must share with the runs it keeps (the grids may grow).
_SAME = ("task", "data", "train_points", "models", "train")
# The fields of a row a resumed sweep reads (``experiments.analysis.sweep``), and their kinds.
_ROW = {"model": "str", "optimizer": "str", "lr": "positive", "grades_done": "count"}
_ROW_OR_NULL = {"test_loss": "number", "test_psnr": "number"}


def _earlier_rows(out: Path, config: dict, args) -> list[dict]:
    """The rows a sweep in ``out`` already holds (``--resume``); none for a new sweep. Refuses
    to mix configurations, to write through a link, and to replace files without
    ``--overwrite`` (a resumed sweep's own excepted). Removes nothing: the outputs are
    replaced when the new sweep has finished."""
    saved = [out / name for name in OUTPUTS[:2] if (out / name).exists()]
    resuming = bool(saved) and args.resume
    if saved and not (resuming or args.overwrite):
        raise InputError(f"{out} holds a sweep; --resume to continue it, or --overwrite")
    check_outputs([out / name for name in OUTPUTS], args.overwrite or resuming)
    if not resuming:
        return []
    earlier = _read_sweep(saved[0])
    now = clean_json({key: config[key] for key in _SAME})
    differ = [key for key in _SAME if earlier["config"].get(key) != now[key]]
    if differ:
        raise InputError(
            f"--resume: {saved[0]} was made with another {', '.join(differ)}; use another --out"
        )
    return list(earlier["rows"])


def _read_sweep(path: Path) -> dict:
    """A saved sweep (``sweep.json`` or the partial one), checked field by field."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    earlier = read_json(path, text)
    if not isinstance(earlier, dict):
        raise InputError(f"{path}: not a sweep (a JSON object with config and rows)")
    field(path, earlier, "config", "dict")
    for k, row in enumerate(field(path, earlier, "rows", "list")):
        if not isinstance(row, dict):
            raise InputError(f"{path}: field rows[{k}] must be an object")
        for name, kind in _ROW.items():
            field(path, row, name, kind, where=f"rows[{k}].")
        for name, kind in _ROW_OR_NULL.items():
            field(path, row, name, kind, where=f"rows[{k}].", null=True)
    return earlier


def _merge(done: list[dict], rows: list[dict]) -> list[dict]:
    """``rows`` (this grid, in order) then the earlier rows outside this grid."""
    keys = {row_key(r) for r in rows}
    return rows + [r for r in done if row_key(r) not in keys]


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if not items or bad:
        raise InputError(f"--{what} must be a comma list of {', '.join(allowed)}, got {text!r}")
    return list(dict.fromkeys(items))


def _lrs(text: str, optimizer: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--lrs-{optimizer}: not a comma list of numbers: {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"--lrs-{optimizer}: learning rates must be finite and > 0: {text!r}")
    return sorted(set(values))


def _configs(args, defaults: dict) -> tuple[list[ModelConfig], dict, TrainConfig]:
    """The models, the learning-rate grid of each optimizer and the shared training config."""
    for name in ("epochs", "grades", "width", "layers", "downsample"):
        if getattr(args, name) is not None:
            _positive("--" + name, getattr(args, name))
    models = [
        ModelConfig(
            kind=kind,
            grades=args.grades,
            width=args.width or defaults["width"],
            layers=args.layers or defaults["layers"],
        )
        for kind in _choices(args.models, MODEL_KINDS, "models")
    ]
    optimizers = _choices(args.optimizers, OPTIMIZERS, "optimizers")
    grids = {opt: _lrs(getattr(args, f"lrs_{opt}"), opt) for opt in optimizers}
    train_cfg = TrainConfig(
        epochs=args.epochs,
        early_stopping=not args.no_early_stop,
        rel_tol=args.rel_tol,
        seed=args.seed,
        init=args.init or defaults["init"],
        device=args.device,
        precision=args.precision,
    )
    return models, grids, train_cfg


def run(args) -> int:
    synthetic = parse_synthetic(args.task) is not None
    defaults = SWEEP_DEFAULTS["synthetic" if synthetic else "image"]
    if synthetic and (args.downsample != 1 or args.invert):
        raise InputError("--downsample and --invert apply to images, not synthetic data")
    models, grids, train_cfg = _configs(args, defaults)
    device = train_cfg.torch_device()
    first = load_data(args.task, downsample=args.downsample, invert=args.invert, device=device)
    out = Path(args.out or f"runs/sweep_{first.name}")
    config = {
        "task": args.task,
        "data": first.name,
        "train_points": first.task.splits["train"].x.shape[0],
        "models": [m.to_dict() for m in models],
        "train": train_cfg.to_dict(),
    }
    done = _earlier_rows(out, config, args)
    make_out(out)
    config |= {"grids": grids, "command": "mgdl-fast " + " ".join(sys.argv[1:])}
    env = environment(device)

    def save_partial(rows: list[dict]) -> None:
        partial = {"config": config, "environment": env, "rows": _merge(done, rows)}
        write_json(out / PARTIAL, partial)

    rows = sweep(
        lambda: load_data(args.task, downsample=args.downsample, invert=args.invert, device=device),
        models,
        grids,
        train_cfg,
        verbose=not args.quiet,
        done=done,
        on_row=save_partial,
    )
    rows = _merge(done, rows)
    table = markdown_table(rows, psnr=not synthetic)
    title = f"Final test loss against the learning rate: {args.task}"
    atomic_write(out / "sweep.png", lambda tmp: plot_sweep(rows, tmp, title))
    write_text(out / "sweep.md", table + "\n")
    write_json(out / "sweep.json", {"config": config, "environment": env, "rows": rows})
    (out / PARTIAL).unlink(missing_ok=True)
    print(table)
    print(f"wrote {out}/sweep.json, sweep.md and sweep.png")
    return 0
