"""Atomic writes (issue 20): files get the mode the umask gives, and finding it out never
changes the process umask (another thread creating a file meanwhile would get 0666)."""

from __future__ import annotations

import os

import pytest

from mgdl_fast.io import atomic


@pytest.mark.skipif(atomic._umask_of_proc() is None, reason="no umask in /proc/self/status")
def test_the_mode_follows_the_umask_without_changing_it(monkeypatch, tmp_path):
    previous = os.umask(0o027)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(os, "umask", lambda *_: pytest.fail("the umask was changed"))
            assert (atomic.file_mode(), atomic.dir_mode()) == (0o640, 0o750)
            atomic.write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)
