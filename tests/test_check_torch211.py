"""scripts/check_torch211.sh removes only an environment its own install marked unfinished."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "check_torch211.sh"


def _run(venv: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VENV_TORCH211": str(venv)}
    return subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env, timeout=60)


def test_a_folder_that_is_no_environment_is_refused_and_kept(tmp_path):
    mine = tmp_path / "venv"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    done = _run(mine)
    assert done.returncode == 2 and "is no Python environment" in done.stderr
    assert (mine / "notes.txt").read_text() == "mine"


def test_an_unfinished_install_behind_a_link_is_refused_and_kept(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / ".mgdl_fast_incomplete").touch()
    (tmp_path / "venv").symlink_to(real)
    done = _run(tmp_path / "venv")
    assert done.returncode == 2 and "behind a link" in done.stderr
    assert (real / ".mgdl_fast_incomplete").exists() and (tmp_path / "venv").is_symlink()
