"""Run directories own only what they recorded writing (issue 20): user files beside and inside
a run survive every refusal and ``--overwrite``; no path is used through a symbolic link; a run
that never began leaves nothing; damaged records and manifests are one line naming the field."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mgdl_fast.errors import InputError
from mgdl_fast.io import ownership
from mgdl_fast.io.manifest import validate
from mgdl_fast.io.rundir import RunDirectory

CONFIG = {"train": {"feature_store": "memory"}}


def _run(path, mode="new"):
    """A run that began and wrote one file (no training)."""
    run = RunDirectory(path, mode=mode)
    run.begin(CONFIG)
    run.write_observation(np.zeros((4, 4, 1)))
    run.commit()
    run.close()
    return path


def _user_files(root):
    """Files a user keeps in a folder, among them names the tool used to delete by pattern."""
    files = {
        ".notes.tmp.txt": "notes",
        ".env.tmpl": "env",
        "state-of-the-art.safetensors": "paper",
        "grade_9.png": "mine",
        "progress.jsonl.bak": "log",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    return files


def _intact(root, files):
    return all((root / name).read_text() == text for name, text in files.items())


def test_a_folder_with_user_files_is_refused_and_untouched(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    files = _user_files(folder)
    for mode in ("new", "overwrite"):
        with pytest.raises(InputError, match="holds files mgdl-fast did not write") as info:
            RunDirectory(folder, mode=mode)
        assert "\n" not in str(info.value) and ".env.tmpl" in str(info.value)
    assert _intact(folder, files) and sorted(os.listdir(folder)) == sorted(files)


def test_user_files_inside_a_run_survive_refusal_and_overwrite(tmp_path):
    run = _run(tmp_path / "run")
    files = _user_files(run)
    with pytest.raises(InputError, match="already holds a run"):
        RunDirectory(run, mode="new")
    assert _intact(run, files) and (run / "observed.png").is_file()
    _run(run, mode="overwrite")
    assert _intact(run, files) and (run / "observed.png").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["files"]) == {"observed.png"}


def test_overwrite_removes_only_recorded_files(tmp_path):
    run = _run(tmp_path / "run")
    directory = RunDirectory(run, mode="overwrite")
    directory.begin(CONFIG)
    assert not (run / "observed.png").exists()  # recorded: removed
    directory.close()
    assert (run / ".mgdl_fast_run").is_file() and (run / "manifest.json").is_file()


def test_a_user_file_with_a_run_file_name_inside_a_run_is_kept(tmp_path):
    run = tmp_path / "run"
    directory = RunDirectory(run, mode="new")
    directory.begin(CONFIG)
    directory.close()
    (run / "observed.png").write_text("the user's own")  # a name the run has not written
    directory = RunDirectory(run, mode="resume")
    try:
        directory.begin(CONFIG)
        with pytest.raises(InputError, match="was not written by mgdl-fast and is kept"):
            directory.write_observation(np.zeros((4, 4, 1)))
    finally:
        directory.close()
    assert (run / "observed.png").read_text() == "the user's own"


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    run = _run(tmp_path / "run")
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(target)
    with pytest.raises(InputError, match="is a symbolic link") as info:
        RunDirectory(run, mode="resume")
    assert "\n" not in str(info.value)
    assert target.read_text() == "precious"


def test_a_symlinked_progress_log_is_not_appended_to(tmp_path):
    from mgdl_fast.train.progress import Progress

    run = _run(tmp_path / "run")
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("precious\n")
    (run / "progress.jsonl").symlink_to(target)
    directory = RunDirectory(run, mode="resume")
    try:
        with pytest.raises(InputError, match="symbolic link"):
            Progress(quiet=True, log_path=directory.progress_log).event("start")
        with pytest.raises(InputError, match="cannot write .*symbolic link"):
            Progress(quiet=True, log_path=run / "progress.jsonl").event("start")
    finally:
        directory.close()
    assert target.read_text() == "precious\n"


@pytest.mark.parametrize("state", ["/etc/passwd", "../../x.safetensors", "a/../../b", 7])
def test_manifest_entries_are_run_relative_names(tmp_path, state):
    manifest = {"files": {}, "state": state}
    with pytest.raises(InputError) as info:
        validate(tmp_path / "manifest.json", manifest)
    assert "state" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "files, field",
    [
        ({"m.json": {"bytes": 3}}, "files.m.json.sha256"),
        ({"m.json": {"sha256": "0" * 64, "bytes": -1}}, "files.m.json.bytes"),
        ({"m.json": "x"}, "files.m.json.sha256"),
        ([], "files"),
    ],
)
def test_damaged_manifest_fields_are_named(tmp_path, files, field):
    with pytest.raises(InputError, match=f"field {field}"):
        validate(tmp_path / "manifest.json", {"files": files, "state": None})


def test_a_run_that_never_began_leaves_nothing(tmp_path):
    new = tmp_path / "a" / "b"
    RunDirectory(new, mode="new").close()
    assert not (tmp_path / "a").exists()
    with pytest.raises(InputError, match="no run to resume"):
        RunDirectory(tmp_path / "c", mode="resume")
    assert not (tmp_path / "c").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDirectory(empty, mode="new").close()
    assert os.listdir(empty) == []


def test_the_record_tolerates_a_torn_last_line_and_refuses_damage(tmp_path):
    run = _run(tmp_path / "run")
    record = run / ownership.RECORD
    record.write_bytes(record.read_bytes() + b'{"name": "half')
    directory = RunDirectory(run, mode="resume")  # the torn line is dropped
    directory.begin(CONFIG)
    directory.close()
    assert all(json.loads(line) for line in record.read_text().splitlines())
    record.write_text('{"format": "mgdl_fast.run/1"}\n{"name": "x", "kind": "virus"}\n')
    with pytest.raises(InputError, match="line 2 has no valid field kind"):
        RunDirectory(run, mode="resume")
    record.write_text('{"format": "mgdl_fast.run/1"}\n{"name": "../x", "kind": "file"}\n')
    with pytest.raises(InputError, match="is not a name inside the run directory"):
        RunDirectory(run, mode="resume")


def test_a_legacy_run_is_adopted_with_its_manifest_files(tmp_path):
    run = _run(tmp_path / "run")
    (run / ownership.RECORD).unlink()
    files = _user_files(run)
    _run(run, mode="overwrite")
    assert _intact(run, files) and (run / ownership.RECORD).is_file()


def test_a_users_manifest_json_is_not_taken_for_a_run(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "manifest.json").write_text("my shipping manifest")
    for mode in ("new", "overwrite", "resume"):
        with pytest.raises(InputError, match=r"did not write \(e.g. manifest.json\)|no run"):
            RunDirectory(folder, mode=mode)
    assert (folder / "manifest.json").read_text() == "my shipping manifest"
    assert os.listdir(folder) == ["manifest.json"]


@pytest.mark.parametrize("content", [b"", b'{"form'])
def test_a_record_cut_before_its_header_gets_one_on_the_next_append(tmp_path, content):
    run = tmp_path / "run"
    run.mkdir()
    (run / ownership.RECORD).write_bytes(content)  # its creator stopped in its first line
    with pytest.raises(InputError, match="already holds a run"):
        RunDirectory(run, mode="new")  # records .lock on the way: the header comes first
    assert json.loads((run / ownership.RECORD).read_text().splitlines()[0]) == {
        "format": ownership.FORMAT
    }
    _run(run, mode="overwrite")
    RunDirectory(run, mode="resume").close()


def test_a_symlinked_folder_of_the_run_is_not_followed_by_a_removal(tmp_path):
    run = tmp_path / "run"
    directory = RunDirectory(run, mode="new")
    directory.begin({"train": {"feature_store": "disk"}})
    (run / "features").mkdir()
    scratch = directory.claim(run / "features" / "train.features", "scratch")
    scratch.write_text("scratch")
    directory.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "train.features").write_text("precious")
    (run / "features" / "train.features").unlink()
    (run / "features").rmdir()
    (run / "features").symlink_to(elsewhere)  # the run's folder replaced by a link out
    directory = RunDirectory(run, mode="overwrite")
    try:
        with pytest.raises(InputError, match="features is a symbolic link") as info:
            directory.begin(CONFIG)
    finally:
        directory.close()
    assert "\n" not in str(info.value)
    assert (elsewhere / "train.features").read_text() == "precious"
