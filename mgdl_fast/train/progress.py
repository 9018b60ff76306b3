"""How a run shows progress: a bar on a terminal; one line every few seconds when stderr is not
a terminal (a log file) or is too narrow for a bar; nothing with ``quiet``; and, when a log
path is given, every recorded value as JSON lines that a front end can follow (``tail -f``):
strict JSON (a NaN or infinity is null, and listed in the line's ``non_finite``), appended
never through a symbolic link, a failed write one ``WriteError``.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

from ..io import atomic
from ..io.schema import strict_dumps

MIN_BAR_COLUMNS = 40
LINE_EVERY_S = 5.0


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Progress of one grade at a time (``start`` ... ``finish``) and the JSON-lines log."""

    def __init__(
        self,
        *,
        quiet: bool = False,
        log_path: str | Path | None = None,
        stream: TextIO | None = None,
        every_s: float = LINE_EVERY_S,
    ):
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty()
        wide = shutil.get_terminal_size((0, 0)).columns >= MIN_BAR_COLUMNS
        self.bar_mode = terminal and wide and not quiet
        self.line_mode = not self.bar_mode and not quiet
        self.every_s, self.log_path = every_s, Path(log_path) if log_path else None
        self._bar: tqdm | None = None
        self._label, self._total, self._done, self._start_done = "", 0, 0, 0
        self._unit = "epoch"
        self._started = self._last_line = time.monotonic()
        self._shown: dict[str, str] = {}

    def start(self, label: str, total: int, done: int = 0, unit: str = "epoch") -> None:
        """A grade (``label``, e.g. 'grade 2/4') of ``total`` epochs (or another ``unit``, e.g.
        rows of a render), ``done`` already run."""
        self._label, self._total, self._done, self._start_done = label, total, done, done
        self._unit = unit
        self._started = self._last_line = time.monotonic()
        self._shown = {}
        if self.bar_mode:
            self._bar = tqdm(
                total=total, initial=done, desc=label, unit={"epoch": "ep"}.get(unit, unit),
                file=self.stream, dynamic_ncols=True,
            )  # fmt: skip
        self.event("start", label=label, epochs=total, done=done)

    def limit(self, total: int, note: str, **fields) -> None:
        """The grade now runs ``total`` epochs at most (a time budget chose them): ``note``
        printed once (above the bar) and logged with ``fields``."""
        self._total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()
            self._bar.write(f"{self._label}: {note}", file=self.stream)
        elif self.line_mode:
            print(f"{self._label}: {note}", file=self.stream, flush=True)
        self.event("limit", label=self._label, epochs=total, note=note, **fields)

    def advance(self, epochs: int) -> None:
        self._done += epochs
        if self._bar is not None:
            self._bar.update(epochs)

    def due(self) -> bool:
        """A periodic line is due (the caller then reads the values back and calls ``show``)."""
        return self.line_mode and time.monotonic() - self._last_line >= self.every_s

    def show(self, shown: dict[str, str]) -> None:
        """What the bar's postfix (or the next line) shows: the objective's postfix."""
        self._shown = dict(shown)
        if self._bar is not None:
            self._bar.set_postfix(shown)
        if self.line_mode and time.monotonic() - self._last_line >= self.every_s:
            self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self._started
        rate = (self._done - self._start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self._total - self._done) / rate if rate > 0 else math.inf
        values = " ".join(f"{k} {v}" for k, v in self._shown.items())
        print(
            f"{self._label}: {self._unit} {self._done}/{self._total} {values} ETA {_eta(eta)}",
            file=self.stream,
            flush=True,
        )
        self._last_line = time.monotonic()

    def records(self, grade: int, entries: list[tuple[str, int, float]]) -> None:
        """Values just read back from the device, as (name, epoch, value), into the log."""
        by_epoch: dict[int, dict[str, float | None]] = {}
        for name, epoch, value in entries:
            by_epoch.setdefault(epoch, {})[name] = value if math.isfinite(value) else None
        for epoch, values in sorted(by_epoch.items()):
            self.event("record", grade=grade, epoch=epoch, **values)

    def event(self, kind: str, **fields) -> None:
        """One JSON line in the progress log (nothing without a log path)."""
        if self.log_path is None:
            return
        entry = {"time": round(time.time(), 3), "event": kind, **fields}
        atomic.append_text(self.log_path, strict_dumps(entry) + "\n")

    def finish(self) -> None:
        if self.line_mode and self._done > self._start_done:
            self._line()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
