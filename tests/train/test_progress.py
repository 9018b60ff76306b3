"""Progress: a bar on a terminal; lines every few seconds on a log file or a too-narrow
terminal; nothing with quiet; JSON lines for front ends."""

from __future__ import annotations

import io
import json
import os
import shutil

from mgdl_fast.train.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_when_not_a_terminal(tmp_path):
    stream = io.StringIO()
    progress = Progress(stream=stream, every_s=0.0, log_path=tmp_path / "p.jsonl")
    progress.start("grade 1/2", 100)
    progress.advance(40)
    progress.records(1, [("train_loss", 30, 0.25), ("val_loss", 30, 0.5)])
    progress.show({"loss": "2.500e-01", "val_psnr": "6.02"})
    progress.advance(60)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("grade 1/2: epoch 40/100 loss 2.500e-01 val_psnr 6.02 ETA ")
    assert lines[-1].startswith("grade 1/2: epoch 100/100")
    events = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "record"]
    assert events[1] == {**events[1], "grade": 1, "epoch": 30, "train_loss": 0.25, "val_loss": 0.5}


def test_a_bar_on_a_terminal_and_lines_on_a_zero_column_one(monkeypatch):
    monkeypatch.setattr(
        shutil, "get_terminal_size", lambda fallback=None: os.terminal_size((120, 40))
    )
    wide = Progress(stream=_Terminal())
    assert wide.bar_mode and not wide.line_mode
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=None: os.terminal_size((0, 0)))
    narrow = Progress(stream=_Terminal(), every_s=0.0)
    assert narrow.line_mode and not narrow.bar_mode
    narrow.start("grade 1/1", 10)
    narrow.advance(10)
    narrow.finish()
    assert "epoch 10/10" in narrow.stream.getvalue()


def test_quiet_shows_nothing():
    stream = io.StringIO()
    progress = Progress(stream=stream, quiet=True, every_s=0.0)
    progress.start("grade 1/1", 10)
    progress.advance(10)
    progress.show({"loss": "1"})
    progress.finish()
    assert stream.getvalue() == "" and not progress.due()
