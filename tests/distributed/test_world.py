"""The rank bookkeeping that needs no process group: shards, devices, the single process."""

from __future__ import annotations

import pytest

from mgdl_fast import distributed
from mgdl_fast.distributed import SINGLE, World
from mgdl_fast.errors import InputError, MGDLError
from mgdl_fast.io import rundir


@pytest.mark.parametrize("total, size", [(7, 2), (8, 3), (1000, 8), (5, 5)])
def test_shards_are_contiguous_and_cover_every_row_once(total, size):
    ranges = [World(r, size).rows(total) for r in range(size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    lengths = [stop - start for start, stop in ranges]
    assert max(lengths) - min(lengths) <= 1


def test_a_split_smaller_than_the_ranks_is_refused():
    with pytest.raises(InputError, match="split val has 3 rows, fewer than the 4 ranks"):
        World(1, 4).check_rows("val", 3)


def test_one_process_runs_everything_itself():
    assert distributed.current() == SINGLE and SINGLE.is_main and not SINGLE.sharded
    assert SINGLE.agree([0, 3, 1]) == [0, 3, 1] and SINGLE.any(True)
    assert SINGLE.broadcast({"a": 1}) == {"a": 1}
    assert SINGLE.on_main(lambda: 5) == 5
    with pytest.raises(ValueError, match="raised here"):
        SINGLE.everywhere(lambda: (_ for _ in ()).throw(ValueError("raised here")))


def test_cuda_ranks_train_on_their_local_device():
    world = World(rank=5, size=8, local_rank=1)
    assert distributed.rank_device("cuda", world) == "cuda:1"
    assert distributed.rank_device("cuda:0", world) == "cuda:1"
    assert distributed.rank_device("cpu", world) == "cpu"
    assert distributed.rank_device("cuda:3", SINGLE) == "cuda:3"


def test_launch_without_torchrun_initialises_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.launch(cuda=False) is SINGLE


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_bad_timeout_is_refused(monkeypatch, value):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, value)
    with pytest.raises(InputError, match=distributed.TIMEOUT_ENV):
        distributed.timeout_s()


def test_only_rank_0_opens_a_run_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(rundir, "current", lambda: World(1, 2))
    with pytest.raises(MGDLError, match="only rank 0"):
        rundir.RunDirectory(tmp_path / "run")
    assert not (tmp_path / "run").exists()
