"""``mgdl-fast info``: versions, devices and which backend can run what."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="versions, devices and backend availability")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..info import report

    print(report())
    return 0
