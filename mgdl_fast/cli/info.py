"""``mgdl-fast info``: versions, devices, which backend can run what, and the kernels'
self-checks (``--recheck`` forgets the verdicts kept on disk and checks again)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="versions, devices and backend availability")
    p.add_argument(
        "--recheck",
        action="store_true",
        help="forget the kernels' kept self-check verdicts and check them again",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    from ..info import report

    print(report(recheck=args.recheck))
    return 0
