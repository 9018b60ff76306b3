"""The run service: a fit from its description to its run directory, for every front door
alike (the command line, the Python API, a future server). Four steps:

- prepare: the run directory opened (new, resumed or replaced: ``io.rundir``), the device
  resolved once, the configuration resolved (``resolve``) or resumed (``resume``), the image
  opened and identified (``image``);
- plan: the memory plan (``plan``; binds and launches nothing) and the task it settles on;
- train: ``train.fit`` grade by grade, each grade's files written as it ends;
- finish: metrics, curves and the manifest; the exit status.

Under ``torchrun`` every rank runs this: the grades train data-parallel
(``mgdl_fast.distributed``), rank 0 alone opens and writes the run directory
(``io.rankrun.RankRun``) and reports; the others follow its decisions and exit codes. What a
run says goes to a ``Reporter`` (the CLI prints; the Python API's default says nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import distributed
from ..errors import InputError
from ..io.environment import environment
from ..io.manifest import MANIFEST, check_config
from ..io.rankrun import RankRun
from ..io.rundir import MODES, RunDirectory, metrics_record
from ..train import FitResult, ModelConfig, TrainConfig, fit
from ..train.progress import Progress
from ..train.state import Checkpointer, TrainingState
from ..train.trainer import objective_state
from .config import RunConfig
from .image import describe_image, load_new_image, load_run_image
from .plan import describe, make_task, plan
from .resolve import budget_spent, described, device_of, resolve
from .resume import resumed_config


def _silent(*message: object) -> None:
    """Drops what it is given (the Python API's default reporter)."""


@dataclass
class Reporter:
    """Where a run's words go: ``note(text)`` (remarks), ``line(text)`` (results of a step:
    the observation), ``grade(record, grades done, grades planned)`` when a grade ends;
    ``quiet``: no progress bar or lines."""

    note: Callable[[str], None] = _silent
    line: Callable[[str], None] = _silent
    grade: Callable[..., None] = _silent
    quiet: bool = True


@dataclass
class Outcome:
    """A finished (or stopped) run: its exit status (0 complete, 1 diverged, 128 + signal
    when interrupted), its result, its directory, and the error line of a diverged run."""

    status: int
    result: FitResult
    out: Path
    error: str | None = None
    config: dict = field(default_factory=dict)
    # Whether this process is the one that reports (rank 0 under torchrun).
    main: bool = True


def default_out(run: RunConfig) -> Path:
    stem = Path(run.input.image).stem if run.input.image else "camera"
    task = run.task.name
    return Path(f"runs/{stem if task == 'regression' else f'{stem}_{task}'}_{run.model.kind}")


def run_fit(
    run: RunConfig,
    *,
    mode: str = "new",
    given: dict | None = None,
    reporter: Reporter | None = None,
) -> Outcome:
    """Fit ``run`` into its run directory (``mode``: new, resume or overwrite). ``given``: the
    settings given for this invocation, ``{section: {field: value}}`` (default: every field
    that differs from its default), which a resume checks against the run's."""
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    given = run.given() if given is None else given
    reporter = reporter or Reporter()
    device = device_of(run)
    world = distributed.launch(cuda=device.type == "cuda")
    if not world.is_main:
        reporter = Reporter()
        logging.getLogger("mgdl_fast").setLevel(logging.ERROR)
    try:
        out = _checked_out(run)
        if mode == "new":
            resolve(run, device)  # bad settings are refused before the directory is touched
        opened = world.on_main(lambda: RunDirectory(out, mode=mode))
        try:
            run_dir = RankRun(opened, out, world)
            return _run(run, given, mode, run_dir, device, reporter)
        finally:
            if opened is not None:
                opened.close()
    finally:
        distributed.finish(world)


def _checked_out(run: RunConfig) -> Path:
    out, every = run.outputs.out, run.outputs.checkpoint_every
    if out is not None and not out:
        raise InputError("--out is empty; name the run's directory")
    if every is not None and every < 1:
        raise InputError(f"--checkpoint-every must be >= 1, got {every}")
    return Path(out) if out else default_out(run)


def prepare(run: RunConfig, given: dict, loaded, out: Path, device, reporter: Reporter):
    """The configuration, the state to resume from (or None) and the image; ``loaded``: the
    run's saved state and config when resuming (the state None: the run saved none yet, and
    the config None: it stopped before its first manifest)."""
    state, saved = loaded if loaded is not None else (None, None)
    if loaded is not None and saved is None:
        raise InputError(
            f"--resume: {out} stopped before it recorded its configuration (no {MANIFEST}); "
            "start it again with --overwrite"
        )
    if saved is not None:
        if state is None:  # a state file's config is checked as the state is read
            check_config(out / MANIFEST, saved)
        finished = len(state.model) if state else 0
        config, notes = resumed_config(run, given, saved, finished, device)
        image = load_run_image(saved["image"], run.input.image, out)
        for note in notes:
            reporter.note(note)
    else:
        config = resolve(run, device)
        image = load_new_image(config["image"]["source"])
        config["image"] |= describe_image(image, config["image"]["source"], out)
    if config["image"].get("crop"):
        image = image.centre_crop(config["image"]["crop"])
    if config["preset"] == "colour" and image.channels != 3:
        raise InputError(f"--preset colour is for colour images; {image.source} has 1 channel")
    for note in image.notes:
        reporter.note(note)
    config["image"].update(height=image.height, width=image.width, channels=image.channels)
    return config, state, image


def _observation(task, run_dir: RankRun, reporter: Reporter) -> dict | None:
    """Restoration runs: save the observation, report it; returns its description."""
    if not hasattr(task, "describe"):
        return None
    run_dir.write_observation(task.observed.permute(1, 2, 0).cpu().numpy())
    info = task.describe()
    blur = ""
    if info["blur_sigma"] is not None:
        size = info["kernel_size"]
        blur = f"blur sigma {info['blur_sigma']:g} ({size}x{size}), "
    reporter.line(
        f"observation: {blur}noise {info['noise_255']:g}/255 (seed {info['noise_seed']}): "
        f"PSNR {info['observed_psnr']:.4f} dB"
    )
    return info


def _start_note(run: RunConfig, mode: str, state, config: dict, out: Path) -> str | None:
    if state is not None:
        current = state.current
        where = (
            f"in grade {current.grade} after epoch {current.epoch}"
            if current
            else f"after grade {len(state.model)}"
        )
        return f"resuming {out} {where}"
    if mode == "resume":
        return f"{out} holds no saved state yet; starting from grade 1"
    model, train = config["model"], config["train"]
    if config["preset"] == "quick" and run.training.epochs is None:
        inputs = "" if model["encoding"] == "none" else f" on {model['encoding']} features"
        budget = train.get("time_budget_s")
        within = f", as many as {budget:g} s of training allow" if budget else ""
        return (
            f"quick preset: up to {train['epochs']} epochs per grade{inputs}{within} "
            "(--preset paper: the papers' protocol)"
        )
    return None


def _run(run, given, mode, run_dir: RankRun, device, reporter: Reporter) -> Outcome:
    world = run_dir.world
    loaded = run_dir.load_state("cpu") if mode == "resume" else None
    out = run_dir.path
    config, state, image = world.everywhere(
        lambda: prepare(run, given, loaded, out, device, reporter)
    )
    found = plan(config, image, run.resources, device)
    if not reporter.quiet:
        reporter.note(describe(found, config))
    rank_device = torch.device(distributed.rank_device(str(device), world))
    model_cfg = ModelConfig(**config["model"])
    train_cfg = TrainConfig(**{**config["train"], "device": str(rank_device)})
    if state is not None:
        state = state.to(rank_device)
    task, objective = make_task(config, image, train_cfg, rank_device)
    run_dir.begin(config)
    run_dir.write_description(described(run, config).to_toml(DESCRIPTION_HEAD))
    info = _observation(task, run_dir, reporter)
    if info is not None:
        config["task"]["observation"] = info
    note = _start_note(run, mode, state, config, out)
    if note:
        reporter.note(note)
    return train(run, config, model_cfg, train_cfg, task, objective, image, state, run_dir,
                 reporter)  # fmt: skip


DESCRIPTION_HEAD = (
    "The resolved description of this run: `mgdl-fast fit --config run.toml --out DIR`\n"
    "reruns it (command-line options override it)."
)


def train(run, config, model_cfg, train_cfg, task, objective, image, state, run_dir: RankRun,
          reporter: Reporter) -> Outcome:  # fmt: skip
    """Every grade, each one's files written as it ends; then ``finish``."""
    world, device = run_dir.world, train_cfg.torch_device()
    env = environment(device)
    if world.sharded:
        env["distributed"] = world.describe()
    checkpointer = Checkpointer(
        lambda s: run_dir.save_state(s, config), every_epochs=run.outputs.checkpoint_every
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
        reporter.grade(result.records[-1], len(result.model), total)

    progress = Progress(quiet=reporter.quiet, log_path=run_dir.progress_log)
    with checkpointer.catching_signals():
        result = fit(
            task, objective, model_cfg, train_cfg, progress=progress, on_grade_end=grade_done,
            resume=state, checkpointer=checkpointer, on_diverge=run.training.on_diverge,
            work_dir=run_dir.work_dir(),
        )  # fmt: skip
    title = f"{model_cfg.kind.upper()} {config['task']['name']}: {Path(image.source).name}"
    return finish(result, run_dir, config, env, title, described(run, config))


def finish(result: FitResult, run_dir: RankRun, config: dict, env: dict, title: str,
           description: RunConfig) -> Outcome:  # fmt: skip
    """The run's last files; its outcome (the same status on every rank). A run a time
    budget shaped gets the epochs it chose in its ``run.toml``, so that it reruns exactly."""
    out, main = run_dir.path, run_dir.world.is_main
    if result.interrupted is not None:
        run_dir.write_metrics(metrics_record(result, config, env, "interrupted"))
        run_dir.commit()
        signum = result.interrupted.signum
        return Outcome(128 + signum, result, out, str(result.interrupted), config, main)
    spent = budget_spent(description, result.records)
    if spent is not description:
        budget = description.training.time_budget
        head = f"{DESCRIPTION_HEAD}\nThe epochs are those the {budget:g} s time budget chose."
        run_dir.write_description(spent.to_toml(head))
    status = "diverged" if result.diverged else "complete"
    run_dir.write_metrics(metrics_record(result, config, env, status))
    run_dir.write_curves(result, title)
    run_dir.commit()
    if result.diverged is not None:
        kept = f"kept grades 1-{len(result.model)}" if len(result.model) else "no grade was kept"
        return Outcome(1, result, out, f"{result.diverged}; {kept} in {out}", config, main)
    return Outcome(0, result, out, None, config, main)


__all__ = ["MODES", "Outcome", "Reporter", "default_out", "prepare", "run_fit"]
