"""Rehearsals of bench/gpu_suite.sh on CPU (``--dry-run``), for the conditions of a first GPU
contact: the stage limits within the budget; a stage killed mid-way keeps the records it
finished; the suite runs from a bare copy of the tree (no .git, nothing installed, no ``_C``)
and from the checkout beside a non-editable install. scripts/test.sh also runs the whole dry
run once from the checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "gpu_suite.sh"

pytestmark = pytest.mark.slow


def bare_python(folder: Path) -> Path:
    """A Python that sees this environment's dependencies but not its mgdl_fast: a venv whose
    one .pth names our site-packages (the editable install's own .pth is not processed there)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", folder], check=True)
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([folder / "bin" / "python", "-c", query], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin" / "python"


def run_suite(tree: Path, out: Path, python: Path | str, stages: str, **env: str):
    full = {**os.environ, "PYTHON": str(python), "SUITE_DIR": str(out),
            "MGDL_FAST_SUITE_STAGES": stages, **env}  # fmt: skip
    full.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", tree / "bench" / "gpu_suite.sh", "--dry-run"], cwd=tree,
                          env=full, capture_output=True, text=True, timeout=900)  # fmt: skip
    summary = (out / "summary.txt").read_text() if (out / "summary.txt").exists() else ""
    return proc, summary


def stage_line(summary: str, name: str) -> str:
    return next(line for line in summary.splitlines() if line.startswith(f"{name} "))


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_limits_with_margins_and_steps_fit_the_budget_and_a_larger_sum_is_refused(tmp_path):
    out = subprocess.run(["bash", SUITE, "--limits"], capture_output=True, text=True)
    assert out.returncode == 0
    stages_part, rest = out.stdout.split("=")
    limits = [int(v) for v in re.findall(r"\b[a-z]+ (\d+)", stages_part)]
    stages, margins, *steps, total = (int(v) for v in re.findall(r"(\d+)", rest)[:-1])
    assert len(limits) == 7 and stages == sum(limits) and len(steps) == 3
    assert margins > 0 and total == stages + margins + sum(steps) <= 330
    assert out.stdout.strip().endswith(f"{total} of 330")
    greedy = tmp_path / "bench" / "gpu_suite.sh"
    greedy.parent.mkdir()
    build = re.search(r"build:(\d+) ", SUITE.read_text())
    more = SUITE.read_text().replace(
        build.group(0), f"build:{int(build.group(1)) + 331 - total} ", 1
    )
    greedy.write_text(more)
    refused = subprocess.run(["bash", greedy, "--limits"], capture_output=True, text=True)
    assert refused.returncode == 2 and "above the 330 s budget" in refused.stderr


def test_an_unknown_stage_name_is_refused_before_anything_runs(tmp_path):
    env = {**os.environ, "MGDL_FAST_SUITE_STAGES": "smoke,bnech", "SUITE_DIR": str(tmp_path / "s")}
    out = subprocess.run(["bash", SUITE, "--dry-run"], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "unknown stage 'bnech'" in out.stderr
    assert not (tmp_path / "s").exists()


def test_a_stage_killed_mid_way_keeps_its_finished_records(tmp_path):
    out = tmp_path / "suite"
    proc, summary = run_suite(ROOT, out, sys.executable, "smoke",
                              MGDL_FAST_TEST_KILL_AFTER_RECORDS="3")  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = stage_line(summary, "smoke")
    assert "failed (exit 137)" in line and line.endswith(" 3 records")
    kept = records(out / "smoke.jsonl")
    assert len(kept) == 3 and kept[0]["op"] == "environment" and kept[2]["backend"] == "cuda"
    assert (out / "results.tar.gz").is_file()


def test_the_suite_runs_from_a_bare_copy_of_the_tree(tmp_path):
    tree = tmp_path / "tree"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout  # fmt: skip
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    out = tmp_path / "suite"
    proc, summary = run_suite(tree, out, bare_python(tmp_path / "py"), "build,smoke,bench")
    assert "No module named 'mgdl_fast._C'" in (out / "build.log").read_text()
    assert stage_line(summary, "build").split()[1] == "failed"
    assert stage_line(summary, "smoke").split()[1] == "ok", (out / "smoke.log").read_text()
    assert stage_line(summary, "bench").split()[1] == "ok", (out / "bench.log").read_text()
    smoke = records(out / "smoke.jsonl")
    assert {r.get("backend") for r in smoke if r.get("status") == "ok"} >= {"triton", "torch"}
    assert len(records(out / "bench.jsonl")) >= 4 and proc.returncode == 1


def test_the_suite_runs_from_the_checkout_beside_a_non_editable_install(tmp_path):
    python = bare_python(tmp_path / "py")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", ROOT],
        env={**os.environ, "MGDL_FAST_CUDA": "OFF", "SKBUILD_BUILD_DIR": str(tmp_path / "build")},
        capture_output=True, text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    out = tmp_path / "suite"
    proc, summary = run_suite(ROOT, out, python, "smoke,tests")
    assert proc.returncode == 0, summary + (out / "smoke.log").read_text()
    smoke = records(out / "smoke.jsonl")
    assert any(r.get("backend") == "triton" and r.get("status") == "ok" for r in smoke)
    assert (out / "tests.xml").is_file() and records(out / "tests.jsonl")
