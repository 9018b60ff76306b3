"""``mgdl-fast fit [IMAGE]``: parse a run description (a TOML file and options on top of it)
and print what the run service (``mgdl_fast.run``) does with it. Nothing here trains, plans or
checks a run: the options are made from ``run.config``'s fields (cli/options.py), the run is
``run.run_fit``'s. Under torchrun every rank runs this command; rank 0 alone prints.
"""

from __future__ import annotations

import argparse
import sys

from ..run import Reporter, RunConfig, run_fit
from ..run.config import read_toml
from .options import add_run_options, given
from .summary import grade_line, print_summary


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit an image grade by grade (default: skimage's cameraman)",
        description="Fit an image grade by grade. Options are grouped as the run description "
        "(TOML: [input], [task], [model], [training], [resources], [outputs]); every run "
        "directory holds its resolved description as run.toml.",
    )
    p.add_argument(
        "--config",
        metavar="TOML",
        help="start from this run description (e.g. runs/x/run.toml); options given here "
        "override it",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    add_run_options(p)
    p.set_defaults(run=run)


def description(args: argparse.Namespace) -> tuple[RunConfig, dict]:
    """The run description the command gives (the --config file, then the options) and what
    it sets explicitly, ``{section: {field: value}}``."""
    layers = [read_toml(args.config)] if args.config else []
    layers.append(given(args))
    config = RunConfig()
    explicit: dict[str, dict] = {}
    for layer in layers:
        config = config.overridden(layer)
        for section, values in layer.items():
            explicit.setdefault(section, {}).update(values)
    return config, explicit


def _note(message: str) -> None:
    print(f"mgdl-fast: note: {message}", file=sys.stderr)


def _grade(record, done: int, total: int) -> None:
    print(grade_line(record, done, total), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    config, explicit = description(args)
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    reporter = Reporter(note=_note, line=print, grade=_grade, quiet=config.outputs.quiet)
    outcome = run_fit(config, mode=mode, given=explicit, reporter=reporter)
    if not outcome.main:
        return outcome.status
    if outcome.status >= 128:
        print(f"mgdl-fast: {outcome.error}", file=sys.stderr)
        return outcome.status
    print_summary(outcome.result, outcome.out)
    if outcome.error is not None:
        print(f"mgdl-fast: error: {outcome.error}", file=sys.stderr)
    return outcome.status


__all__ = ["add_parser", "description", "run"]
