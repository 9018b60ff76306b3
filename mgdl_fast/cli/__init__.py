"""The ``mgdl-fast`` command line: one module per subcommand, errors as one line."""

from __future__ import annotations

import argparse
import sys

from .._startup import interrupt_ends_command
from .._version import __version__
from ..errors import MGDLError

with interrupt_ends_command():
    from . import analyze, approx, fit, info, predict, sweep_lr

COMMANDS = (fit, predict, approx, analyze, sweep_lr, info)


class _Parser(argparse.ArgumentParser):
    """argparse with single-line errors (argparse's own add a usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mgdl-fast", description="Multi-grade deep learning, fast.")
    parser.add_argument("--version", action="version", version=f"mgdl-fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except MGDLError as exc:
        print(f"mgdl-fast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mgdl-fast: interrupted", file=sys.stderr)
        return 130
