"""Markdown tables of paper 2's studies, from their JSON (``approx --study`` prints them;
docs/APPROXIMATION.md quotes them)."""

from __future__ import annotations


def _ms(entry: dict) -> str:
    return f"{entry['mean']:.3g} ± {entry['std']:.2g}"


def construct_tables(results: dict) -> str:
    """Per target: grids, network sizes and residual norms per grade."""
    lines = [
        "| target | D | grade | cells/axis | active nodes | depth x width | certified factor "
        "| L1 | L2 | L4 | Linf |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "norms" not in r:
            continue
        norms = r["norms"]
        n0 = norms[0]
        lines.append(f"| {name} | {r['dim']} | 0 (f) | | | | | {n0['L1']:.3g} | {n0['L2']:.3g} "
                     f"| {n0['L4']:.3g} | {n0['Linf']:.3g} |")  # fmt: skip
        for k, (g, n) in enumerate(zip(r["grades"], norms[1:]), start=1):
            lines.append(
                f"| | | {k} | {g['cells']} | {g['active_nodes']} | {g['depth']} x {g['width']} "
                f"| {g['certified_factor']:.3f} | {n['L1']:.3g} | {n['L2']:.3g} "
                f"| {n['L4']:.3g} | {n['Linf']:.3g} |"
            )
    return "\n".join(lines)


def width_table(rows: dict) -> str:
    lines = ["| target | width | depth | params | max network - operator |", "|---" * 5 + "|"]
    for name, entries in rows.items():
        for e in entries:
            if not e["constructible"]:
                lines.append(f"| {name} | {e['width']} | below the least width | | |")
                continue
            lines.append(f"| {name} | {e['width']} | {e['depth']} | {e['params']} "
                         f"| {e['max_diff_to_operator']:.1e} |")  # fmt: skip
    return "\n".join(lines)


def run_table(blocks: dict[str, dict], label: str = "model") -> str:
    """Grade-wise train/test L2 and Linf (mean ± std over seeds) of ``{label value: result}``."""
    lines = [
        f"| {label} | grade | train L2 | train Linf | test L2 | test Linf | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for value, result in blocks.items():
        seconds = sum(r["time_s"] for r in result["runs"]) / len(result["runs"])
        for k, row in enumerate(result["summary"]):
            grade = row["grade"] if len(result["summary"]) > 1 else "all"
            lines.append(
                f"| {value if k == 0 else ''} | {grade} | {_ms(row['train_L2'])} "
                f"| {_ms(row['train_Linf'])} | {_ms(row['test_L2'])} | {_ms(row['test_Linf'])} "
                f"| {f'{seconds:.1f}' if k == 0 else ''} |"
            )
    return "\n".join(lines)


def study_tables(study: str, results: dict) -> str:
    """All of a study's tables, titled."""
    if study == "construct":
        return "\n\n".join([construct_tables(results), width_table(results["widths"])])
    if study == "trained":
        return "\n\n".join(
            f"### {name}\n\n" + run_table({k: r[k] for k in ("mgdl", "sgdl")})
            for name, r in results.items()
        )
    parts = []
    for part, label in (("no_freezing", "model"), ("width", "width"), ("layers", "layers")):
        for name, blocks in results[part].items():
            parts.append(f"### {part}: {name}\n\n" + run_table(blocks, label))
    return "\n\n".join(parts)
