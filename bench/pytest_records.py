"""A pytest plugin (``-p bench.pytest_records``): one record per test the moment its outcome is
known (bench/records.py), so a GPU test stage that is killed keeps what it finished."""

from __future__ import annotations

from .records import append


def pytest_runtest_logreport(report) -> None:
    if report.when == "call" or report.outcome != "passed":
        record = {"test": report.nodeid, "phase": report.when, "outcome": report.outcome,
                  "seconds": round(report.duration, 3)}  # fmt: skip
        if report.outcome != "passed" and report.longrepr is not None:
            record["reason"] = str(report.longrepr).strip().splitlines()[-1][:500]
        append(record, echo=False)
