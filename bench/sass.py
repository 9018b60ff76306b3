"""Reading the machine code of the CUDA core without a GPU: finding nvcc, cuobjdump and
nvdisasm, parsing nvdisasm's SASS (with source lines) into functions, and the counts the kernel
report makes of it: loops, tensor-core instructions, global reductions, serial flush chains,
weight loads inside the tile loop and float min/max that drop NaN (bench/kernel_report_cuda.py)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class ToolMissing(RuntimeError):
    """A compiler or binary tool the report needs is not installed."""


def find_tool(name: str) -> str:
    """``name`` on the PATH, in the Triton wheel, in a PyPI nvidia-* package or CUDA_HOME."""
    found = shutil.which(name)
    if found:
        return found
    candidates = [Path("/usr/local/cuda/bin") / name]
    triton = importlib.util.find_spec("triton")
    if triton is not None and triton.origin:
        candidates.append(Path(triton.origin).parent / "backends" / "nvidia" / "bin" / name)
    for entry in map(Path, sys.path):
        candidates.extend(entry.glob(f"nvidia/*/bin/{name}"))
    for path in candidates:
        if path.is_file():
            return str(path)
    raise ToolMissing(
        f"{name} not found (PATH, /usr/local/cuda/bin, triton's bundled bin, nvidia-* wheels): "
        f"install the CUDA toolkit or `pip install nvidia-cuda-{name}`"
    )


@dataclass
class Instr:
    addr: int
    pred: str
    op: str
    args: str
    file: str
    line: int


@dataclass
class Function:
    name: str
    instrs: list[Instr] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Za-z0-9_.]*)\s*(.*?)\s*;")
SASS_FILE = re.compile(r'//## File "([^"]+)", line (\d+)')
SASS_FUNC = re.compile(r"^\.text\.(\w+):")
SASS_LABEL = re.compile(r"^(\.L_x_\d+):")


def sass_functions(so_path: str) -> dict[str, Function]:
    """Every sm_90a kernel of the shared object, with the source line of each instruction."""
    cuobjdump = find_tool("cuobjdump")
    functions: dict[str, Function] = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([cuobjdump, "-xelf", "all", so_path], cwd=tmp, check=True,
                       capture_output=True)  # fmt: skip
        cubins = sorted(Path(tmp).glob("*.sm_90*.cubin"))
        if not cubins:
            raise RuntimeError(f"{so_path} holds no sm_90a machine code")
        for cubin in cubins:
            functions |= cubin_functions(cubin)
    return functions


def cubin_functions(cubin: Path) -> dict[str, Function]:
    """The kernels of one cubin as nvdisasm prints them (with -g: source file and line)."""
    text = subprocess.run([find_tool("nvdisasm"), "-g", "-c", str(cubin)], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip
    functions: dict[str, Function] = {}
    fn, file, line, pending = None, "", 0, []
    for raw in text.splitlines():
        if m := SASS_FUNC.match(raw):
            fn = functions.setdefault(m[1], Function(m[1]))
        elif fn is None:
            continue
        elif m := SASS_FILE.search(raw):
            file, line = Path(m[1]).name, int(m[2])
        elif m := SASS_LABEL.match(raw):
            pending.append(m[1])
        elif m := SASS_LINE.search(raw):
            addr = int(m[1], 16)
            for label in pending:
                fn.labels[label] = addr
            pending = []
            fn.instrs.append(Instr(addr, (m[2] or "").strip(), m[3], m[4], file, line))
    return functions


def loops(fn: Function) -> list[tuple[int, int]]:
    """[start, end] address ranges of the backward branches (loops)."""
    out = []
    for ins in fn.instrs:
        if ins.op == "BRA" and (m := re.search(r"\((\.L_x_\d+)\)", ins.args)):
            target = fn.labels.get(m[1])
            if target is not None and target <= ins.addr:
                out.append((target, ins.addr))
    return out


def mma_shapes(fn: Function) -> dict[str, int]:
    shapes: dict[str, int] = {}
    for ins in fn.instrs:
        if ins.op.startswith(("HGMMA", "HMMA")):
            shapes[ins.op] = shapes.get(ins.op, 0) + 1
    return shapes


def global_reductions(fn: Function) -> dict[str, int]:
    ops: dict[str, int] = {}
    for ins in fn.instrs:
        if ins.op.startswith(("RED.", "REDG", "ATOMG", "ATOM.")):
            ops[ins.op] = ops.get(ins.op, 0) + 1
    return ops


# Float min/max in SASS: FMNMX (fp32), HMNMX2 (f16x2/bf16x2), DMNMX (fp64); the ".NAN"
# modifier makes them return NaN when either operand is NaN (PTX max.NaN / min.NaN).
FLOAT_MINMAX = ("FMNMX", "HMNMX2", "DMNMX")


def nan_suppressing_minmax(fn: Function) -> int:
    """Float min/max instructions of ``fn`` without NaN propagation: fmaxf(NaN, 0) is 0, so
    one of them on an activation would turn a diverged weight into finite output."""
    return sum(ins.op.split(".")[0] in FLOAT_MINMAX and ".NAN" not in ins.op for ins in fn.instrs)


def registers_of(args: str) -> list[str]:
    return re.findall(r"\bR\d+\b", args)


def widen(reg: str, op: str) -> set[str]:
    """The registers a vector access covers (R24 of a .64 access is R24, R25)."""
    n = 4 if ".128" in op else 2 if ".64" in op else 1
    base = int(reg[1:])
    return {f"R{base + k}" for k in range(n)}


def serial_flush_chains(fn: Function) -> int:
    """Read-modify-write pairs (a load, arithmetic on its value, a store to the same address)
    whose load is issued only after the store of an earlier pair on the same base register: the
    compiler could not batch the loads of one array walk, so each pair waits a full memory round
    trip."""
    chains = 0
    last_store: dict[str, int] = {}
    pending: dict[str, tuple[int, set[str]]] = {}
    for i, ins in enumerate(fn.instrs):
        base_op = ins.op.split(".")[0]
        addr = re.findall(r"\[[^\]]*\]", ins.args)
        if base_op in ("LD", "LDG") and addr:
            dest = registers_of(ins.args.split(",")[0])
            if dest:
                pending[addr[-1]] = (i, widen(dest[0], ins.op))
        elif base_op in ("ST", "STG") and addr and addr[-1] in pending:
            li, derived = pending.pop(addr[-1])
            for mid in fn.instrs[li + 1 : i]:
                regs = registers_of(mid.args)
                if len(regs) > 1 and derived & set(regs[1:]):
                    derived |= widen(regs[0], mid.op)
            data = registers_of(ins.args.split("]")[-1])
            if data and widen(data[0], ins.op) & derived:
                base = (registers_of(addr[-1]) or [""])[0]
                chains += li > last_store.get(base, i)
                last_store[base] = i
    return chains


def weight_loads_in_loop(fn: Function) -> int:
    """Global loads from load_params (smem.cuh) inside a loop that also issues tensor-core MMAs
    (the tile loop): weights re-read per tile."""
    count = 0
    mma_loops = [
        (a, b) for a, b in loops(fn)
        if any(a <= i.addr <= b and i.op.startswith(("HGMMA", "HMMA")) for i in fn.instrs)
    ]  # fmt: skip
    for ins in fn.instrs:
        if ins.op.startswith("LDG") and ins.file == "smem.cuh" and ins.line in load_params_lines():
            count += any(a <= ins.addr <= b for a, b in mma_loops)
    return count


def load_params_lines() -> range:
    text = (ROOT / "csrc" / "include" / "smem.cuh").read_text().splitlines()
    start = next(i for i, s in enumerate(text, 1) if "void load_params" in s)
    end = next(i for i, s in enumerate(text[start:], start + 1) if s.startswith("}"))
    return range(start, end + 1)
