"""One process against two data-parallel ranks (torch.distributed, gloo) on this CPU's cores.

Three configurations, each started as fresh processes ``--repeats`` times, interleaved:
``1p-2t`` one process with 2 threads, ``2r-1t`` two ranks with one thread each (the grade's
rows sharded, dW summed by one all_reduce per epoch), ``1p-1t`` one process with one thread.
Each trains ``--grades`` regression grades of ``--epochs`` epochs on the ``--side``^2 cameraman
(PROTOCOL 2 shapes: [2,128,128,1] then [128,128,128,1]; Adam, fp32, no early stopping; train
and validation losses recorded every 10 epochs). The figure per grade is the steady-state time
per epoch: from the end of the grade's first block of epochs to the end of its last, records
included; binding, the first epoch and the freeze are not. Two ranks also time the all_reduce
of the grade's [P + 1] gradient-and-loss buffer alone (P = 33,153: 133 KB). Each run waits
until the cores are idle (other work shares them) and records how idle they were. Medians (and
every run) go to ``--out`` as JSON. A CPU measurement: it says nothing about GPUs.

    python bench/distributed.py --side 512 --epochs 40 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {"1p-2t": (1, 2), "2r-1t": (2, 1), "1p-1t": (1, 1)}
ALLREDUCE_REPEATS = 200
# The cores are shared with other work: a run starts once they are this idle (or after the wait).
IDLE_FRACTION, IDLE_WAIT_S = 0.9, 900.0


def _idle_fraction(window_s: float = 2.0) -> float:
    """The fraction of CPU time the machine spent idle over ``window_s`` (/proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle0, total0 = sample()
    time.sleep(window_s)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle() -> float:
    """Wait (up to IDLE_WAIT_S) until the cores are idle; returns the idle fraction seen."""
    deadline = time.monotonic() + IDLE_WAIT_S
    while (idle := _idle_fraction()) < IDLE_FRACTION and time.monotonic() < deadline:
        time.sleep(5.0)
    return idle


def _timed_progress():
    """A quiet Progress that notes (epochs done, time) at the end of every block."""
    from mgdl_fast.train.progress import Progress

    class Timed(Progress):
        def __init__(self):
            super().__init__(quiet=True)
            self.marks: list[list[tuple[int, float]]] = []

        def start(self, label, total, done=0, **kwargs):
            super().start(label, total, done, **kwargs)
            self.marks.append([])

        def advance(self, epochs):
            super().advance(epochs)
            self.marks[-1].append((self._done, time.perf_counter()))

    return Timed()


def _allreduce_s(world, numel: int) -> float:
    """Median seconds of one all_reduce of a ``[numel + 1]`` fp32 buffer over the ranks."""
    import torch

    from mgdl_fast.distributed import PackedSum

    packed = PackedSum(world, numel, torch.device("cpu"))
    times = []
    for _ in range(ALLREDUCE_REPEATS):
        start = time.perf_counter()
        packed.reduce()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(args) -> None:
    """One process (or one rank) of a configuration; its figures into ``args.result``."""
    import torch

    import mgdl_fast as mf
    from mgdl_fast import distributed
    from mgdl_fast.tasks.regression import RegressionObjective, RegressionTask
    from mgdl_fast.train.trainer import grade_shapes

    torch.set_num_threads(args.threads)
    world = distributed.launch(cuda=False)
    image = mf.default_image()
    pixels = image.pixels[: args.side, : args.side]
    model_cfg = mf.ModelConfig(grades=args.grades)
    cfg = mf.TrainConfig(epochs=args.epochs, early_stopping=False, device="cpu", precision="fp32")
    begun = time.perf_counter()
    task = RegressionTask(pixels, world=world)
    progress = _timed_progress()
    mf.fit(task, RegressionObjective(task), model_cfg, cfg, progress=progress)
    wall = time.perf_counter() - begun
    per_epoch = [(m[-1][1] - m[0][1]) / (m[-1][0] - m[0][0]) for m in progress.marks]
    result = {"epoch_s": per_epoch, "fit_wall_s": wall, "threads": torch.get_num_threads()}
    if world.sharded:
        numel = grade_shapes(model_cfg, 2, 1)[1].num_params
        result["allreduce_s"] = _allreduce_s(world, numel)
        result["allreduce_bytes"] = (numel + 1) * 4
    Path(args.result).write_text(json.dumps(result))
    distributed.finish(world)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(name: str, args, scratch: Path) -> dict:
    """Start configuration ``name`` as fresh processes once the cores are idle; rank 0's
    figures, with the idle fraction before and the load average after."""
    ranks, threads = CONFIGS[name]
    idle = wait_for_idle()
    port, procs, results = _free_port(), [], []
    for rank in range(ranks):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if ranks > 1:
            env |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(ranks),
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
        result = scratch / f"{name}-rank{rank}.json"
        cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--result",
               str(result), "--side", str(args.side), "--epochs", str(args.epochs),
               "--grades", str(args.grades)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=env))
        results.append(result)
    codes = [p.wait(timeout=1800) for p in procs]
    if any(codes):
        raise SystemExit(f"{name}: a process failed with exit codes {codes}")
    # The load average says whether another job shared the cores during this run.
    figures = json.loads(results[0].read_text())
    return {**figures, "idle_before": idle, "load_1m_after": os.getloadavg()[0]}


def _median(runs: list[dict], key: str, index: int | None = None) -> float:
    values = [r[key] if index is None else r[key][index] for r in runs]
    return statistics.median(values)


def summarise(runs: dict[str, list[dict]], grades: int) -> dict:
    """Medians per configuration and the speed-ups of two ranks."""
    medians = {
        name: {
            "epoch_s": [_median(rs, "epoch_s", g) for g in range(grades)],
            "fit_wall_s": _median(rs, "fit_wall_s"),
        }
        for name, rs in runs.items()
    }
    medians["2r-1t"]["allreduce_s"] = _median(runs["2r-1t"], "allreduce_s")
    two = medians["2r-1t"]["epoch_s"]
    speedup = {
        f"2r-1t vs {base}": [b / t for b, t in zip(medians[base]["epoch_s"], two)]
        for base in ("1p-1t", "1p-2t")
    }
    return {"medians": medians, "speedup_per_grade": speedup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512, help="image side (cameraman crop)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--grades", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results/cpu_distributed_512.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    from mgdl_fast.io.environment import environment

    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for name in CONFIGS:
                runs[name].append(run_config(name, args, Path(scratch)))
                print(f"repeat {repeat + 1}/{args.repeats} {name}: {runs[name][-1]}", flush=True)
    settings = {name: getattr(args, name) for name in ("side", "epochs", "grades", "repeats")}
    settings |= {"optimizer": "adam", "precision": "fp32"}
    report = {
        "what": "steady-state s/epoch per grade (records included), 1 process vs 2 gloo ranks",
        "command": " ".join(sys.argv),
        "settings": settings,
        "environment": environment(torch.device("cpu")),
        **summarise(runs, args.grades),
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["medians"], indent=1))
    print(json.dumps(report["speedup_per_grade"], indent=1))


if __name__ == "__main__":
    main()
