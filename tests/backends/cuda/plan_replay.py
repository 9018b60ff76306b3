"""The dynamic shared-memory attribute of the CUDA kernels, replayed on the CPU (issue 13, C1).

``cudaFuncAttributeMaxDynamicSharedMemorySize`` belongs to a kernel on a device, not to a plan:
whenever any plan launches a kernel, the attribute must be at least that plan's need, whatever
plans of the same kernel were made before. A sequence lists the events a process issues, in
order: ``bind`` (an engine makes its plans) and ``launch``. ``replay`` runs a policy over it
and returns every launch that would ask for more than the attribute (``cudaErrorInvalidValue``
on a GPU).

Policies: ``AttributePolicy`` is the one ``_C`` runs (``_C.smem_attribute``, the pure decision
``csrc/include/plan.h`` ``smem_attribute_update``, applied at bind); ``Fdf00d3Policy`` models
the runtime at commit fdf00d3 (a cache keyed by kernel, threads and bytes that set the
attribute only on a miss), kept so the replay is shown to catch the defect.

Sequences: the GPU tests of test_ops.py in collection order (cases.py), and consecutive fits
of the default model (grade 1 [2, 128, 128, 1], grades 2-4 [128, 128, 128, 1]) in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import cases

# Dynamic shared memory a block may use on an H100/H200: the 232,448 bytes of opt-in less the
# 1 KB of static shared memory the sm_90a kernels carry.
HOPPER_DYNAMIC_SMEM = 232_448 - 1024
# A kernel's attribute before anything sets it.
DEFAULT_ATTRIBUTE = 48 * 1024


@dataclass(frozen=True)
class Event:
    kind: str  # "bind" or "launch"
    kernel: str  # the instantiation, e.g. "block_train_kernel<128, 8>"
    threads: int
    smem: int
    train: bool
    what: str


def plan(ext, d: int, w: int, layers: int, c: int, train: bool) -> dict | None:
    return ext.plan(d, w, layers, c, train, HOPPER_DYNAMIC_SMEM)


def kernel_name(p: dict, w: int, train: bool) -> str:
    return p.get("kernel") or f"{'block_train_kernel' if train else 'block_fwd_kernel'}<{w}>"


def engine(ext, dims, what: str, ops=()) -> list[Event]:
    """An engine bound for ``dims`` ((N,) D, W, L, C): both its plans, then its launches
    (``forward`` runs the forward kernel; ``step`` and ``backward`` the training kernel)."""
    d, w, layers, c = dims[-4:]
    plans = {train: plan(ext, d, w, layers, c, train) for train in (True, False)}
    if any(p is None for p in plans.values()):
        return []
    made = {
        train: (kernel_name(p, w, train), 32 * p["warps"], p["smem_bytes"])
        for train, p in plans.items()
    }
    events = [Event("bind", *made[t], t, what) for t in (True, False)]
    for op in ops:
        train = op != "forward"
        events.append(Event("launch", *made[train], train, f"{what} {op}"))
    return events


def suite(ext) -> list[Event]:
    """The engines test_ops.py binds and launches, in collection order."""
    events: list[Event] = []
    for op, test in (("forward", "test_forward_matches_oracle"),):
        for case in cases.CASES:
            events += engine(ext, case[0], f"{test}[{cases.case_id(case)}]", [op])
    events += engine(ext, cases.BF16_FEATURES, "test_forward_writes_bf16_features", ["forward"])
    for op, test in (("backward", "test_backward_matches_oracle"),
                     ("step", "test_step_matches_oracle")):  # fmt: skip
        for case in cases.CASES:
            events += engine(ext, case[0], f"{test}[{cases.case_id(case)}]", [op])
    events += engine(ext, cases.DETERMINISM, "test_step_is_deterministic", ["step"] * 2)
    events += engine(ext, cases.NO_PLANNING, "test_no_planning_per_call", ["forward", "step"])
    events += engine(ext, cases.GRAPH, "test_cuda_graph_replays_steps", ["step"] * 3)
    first, later = cases.SECOND_FIT
    events += engine(ext, first, "test_second_fit grade 1", ["step"])
    events += engine(ext, later, "test_second_fit grade 2", ["step"])
    events += engine(ext, first, "test_second_fit grade 1 again", ["step"])
    events += [e for e in engine(ext, first, "test_second_fit first engine", ["step"])
               if e.kind == "launch"]  # fmt: skip
    events += engine(ext, cases.AUTOGRAD, "test_block_forward_autograd", ["forward", "backward"])
    for k, dims in enumerate(cases.TRAINER_GRADES):
        events += engine(ext, dims, f"test_trainer grade {k + 1}", ["step", "forward"])
    return events


def fits(ext, count: int = 2, grades: int = 4) -> list[Event]:
    """``count`` fits of the default model in one process. The first binds each shape class
    for auto's self-check first (selfcheck.py runs once per process)."""
    events: list[Event] = []
    shapes = [(2, 128, 2, 1)] + [(128, 128, 2, 1)] * (grades - 1)
    checked: set = set()
    for f in range(count):
        for k, dims in enumerate(shapes):
            if dims not in checked:
                checked.add(dims)
                events += engine(ext, dims, f"fit {f + 1} self-check {dims}", ["forward", "step"])
            events += engine(ext, dims, f"fit {f + 1} grade {k + 1}", ["step", "forward"])
    return events


def sequences(ext) -> dict[str, list[Event]]:
    return {"test_suite": suite(ext), "two_fits": fits(ext)}


class AttributePolicy:
    """_C's decision, made when a plan is bound."""

    def __init__(self, ext):
        self.ext, self.attribute = ext, {}

    def bind(self, e: Event) -> None:
        current = self.attribute.get(e.kernel, DEFAULT_ATTRIBUTE)
        new = self.ext.smem_attribute(current, e.smem)
        if new:
            self.attribute[e.kernel] = new

    def launch(self, e: Event) -> None:
        pass


class Fdf00d3Policy:
    """runtime.cu persistent_grid at fdf00d3: the attribute set to the plan's bytes on a miss
    of a cache keyed by (kernel, threads, bytes), at each launch and at each train-workspace
    query (which engines made at bind)."""

    def __init__(self, ext=None):
        self.seen, self.attribute = set(), {}

    def _touch(self, e: Event) -> None:
        key = (e.kernel, e.threads, e.smem)
        if key not in self.seen:
            self.seen.add(key)
            self.attribute[e.kernel] = e.smem

    def bind(self, e: Event) -> None:
        if e.train:
            self._touch(e)

    def launch(self, e: Event) -> None:
        self._touch(e)


def replay(events: list[Event], policy) -> list[str]:
    """Every launch that would exceed its kernel's attribute under ``policy``."""
    failures = []
    for e in events:
        getattr(policy, e.kind)(e)
        if e.kind == "launch":
            have = policy.attribute.get(e.kernel, DEFAULT_ATTRIBUTE)
            if e.smem > have:
                failures.append(f"{e.what}: {e.kernel} needs {e.smem} B, attribute {have} B")
    return failures


def current_policy(ext):
    """The policy the installed _C runs."""
    return AttributePolicy(ext) if hasattr(ext, "smem_attribute") else Fdf00d3Policy()


def replay_all(ext) -> list[str]:
    """Failures of the installed _C's policy over every sequence, each prefixed by its name."""
    return [
        f"{name}: {failure}"
        for name, events in sequences(ext).items()
        for failure in replay(events, current_policy(ext))
    ]
