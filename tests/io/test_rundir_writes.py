"""How a run directory writes (issue 20): every temporary name a write uses is recorded before
the file exists, so a crash leaves only files the run owns and cleans."""

from __future__ import annotations

from mgdl_fast.io import atomic, ownership
from mgdl_fast.io.rundir import RunDirectory
from mgdl_fast.train.model import MultiGradeModel
from mgdl_fast.train.state import TrainingState

CONFIG = {"train": {"feature_store": "memory"}}


def test_a_state_is_written_once_under_its_recorded_temporary_name(tmp_path, monkeypatch):
    run = tmp_path / "run"
    directory = RunDirectory(run, mode="new")
    directory.begin(CONFIG)
    renames = []
    commit = atomic.commit_temp

    def watch(tmp, path):  # at each rename: what is in the run that it did not record
        renames.append((tmp.name, path.name, ownership.foreign_entry(run, directory.record)))
        commit(tmp, path)

    monkeypatch.setattr(atomic, "commit_temp", watch)
    try:
        directory.save_state(TrainingState(MultiGradeModel(), []), CONFIG)
    finally:
        directory.close()
    assert renames[0] == (".state-000001.tmp.safetensors", "state-000001.safetensors", None)
    assert (run / "state-000001.safetensors").is_file()
