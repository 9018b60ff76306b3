"""Records written the moment they exist: one JSON line per case, flushed and fsynced, so a
stage of bench/gpu_suite.sh that times out or crashes keeps every case it finished.

The file is ``$MGDL_FAST_RECORDS`` (the suite sets one per stage; unset: records are only
printed). ``$MGDL_FAST_TEST_KILL_AFTER_RECORDS=K`` kills the process with SIGKILL right after
its K-th record: the suite's rehearsal uses it to show that a killed stage keeps its records.
"""

from __future__ import annotations

import json
import math
import os
import signal

RECORDS_ENV = "MGDL_FAST_RECORDS"
KILL_ENV = "MGDL_FAST_TEST_KILL_AFTER_RECORDS"
_written = 0


def _clean(value):
    """Strict JSON: NaN and inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def append(record: dict, path: str | None = None, *, echo: bool = True) -> None:
    """Append ``record`` to ``path`` (default ``$MGDL_FAST_RECORDS``) as one durable line, and
    print it when ``echo``."""
    global _written
    path = path or os.environ.get(RECORDS_ENV)
    line = json.dumps(_clean(record), default=str)
    if echo:
        print(line, flush=True)
    if not path:
        return
    with open(path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    _written += 1
    if os.environ.get(KILL_ENV) == str(_written):
        os.kill(os.getpid(), signal.SIGKILL)


def read(path: str) -> list[dict]:
    """Every complete record of a file (a line cut by a kill is skipped)."""
    out = []
    try:
        with open(path) as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out
