"""``guided summarize``: what pruning kept, per layer and per stage, over one or more pruned folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided.commands.common import Command
from guided.commands.plots import check_figure_path
from guided.errors import UserError
from guided.reporting.plots import draw_sparsity
from guided.shapes.patterns import summarize
from guided.storage.io import atomic_write_text, check_output


def _summarize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pruned", nargs="+", metavar="PRUNED_DIR", help="folders written by `guided prune`")
    p.add_argument("--out", metavar="FILE.json", help="write the summary as JSON")
    p.add_argument("--csv", metavar="FILE.csv", help="write the per-layer rows as CSV")
    p.add_argument("--plot", metavar="FILE.png", help="masked runs: draw per-stage density and kernel heatmaps")
    p.add_argument("--layers", action="store_true", help="print every layer, not only stages")


def _summarize(args: argparse.Namespace) -> int:
    import pandas as pd

    for option in ("out", "csv"):
        if getattr(args, option):
            check_output(getattr(args, option), folder=False, option=f"--{option}", inputs=tuple(args.pruned))
    if args.plot:
        check_figure_path(args.plot, "--plot", inputs=tuple(args.pruned))
    seen = {}
    for d in args.pruned:
        if Path(d).resolve() in seen:
            raise UserError(f"{d} is given twice (as {seen[Path(d).resolve()]}); each pruned run counts once")
        seen[Path(d).resolve()] = d
    pattern = summarize(args.pruned)
    if args.plot and pattern.kind != "sparsity":
        raise UserError("--plot draws sparsity patterns of masked runs; channel plots come with `guided plot`")
    print("\n".join(_lines(pattern, args.layers)))
    if args.out:
        pattern.write(args.out)
    if args.csv:
        atomic_write_text(args.csv, pd.DataFrame(list(pattern.layers)).to_csv(index=False))
    if args.plot:
        draw_sparsity(pattern, args.plot, title=f"{pattern.runs} run(s)")
    return 0


def _lines(pattern, layers: bool) -> list[str]:
    """What a pattern says, per stage (and per layer with ``layers``), and how its channels were ranked."""
    if pattern.kind == "sparsity":
        lines = [f"weight density over {pattern.runs} run(s): {pattern.density:.1%} kept"]
        for row in pattern.stages:
            grid = pattern.kernel.get(row["stage"])
            kernel = "  kernel " + " / ".join(" ".join(f"{v:.2f}" for v in r) for r in grid) if grid else ""
            lines.append(f"  stage {row['stage'] + 1}: {row['density_mean']:.1%} ± {row['density_std']:.1%}{kernel}")
        key = "density"
    else:
        lines = [f"channels kept over {pattern.runs} run(s):"]
        for row in pattern.stages:
            lines.append(
                f"  stage {row['stage'] + 1}: {row['keep_ratio_mean']:.1%} ± {row['keep_ratio_std']:.1%} "
                f"({row['kept_mean']:.1f} of {row['original']})"
            )
        key = "keep_ratio"
    if layers:
        for row in pattern.layers:
            lines.append(
                f"    {row['layer']:<32} stage {row['stage'] + 1}  {row[key + '_mean']:.1%} ± {row[key + '_std']:.1%}"
            )
    return [*lines, f"discovered ranking channels by {_cost_words(pattern.cost)}"]


COMMANDS = {
    "summarize": Command(
        "summarise what pruning kept per layer and stage (channels, or weight sparsity and kernel positions)",
        "guided summarize pruned/slim60-seed0 pruned/slim60-seed1 --out pattern.json\n"
        "  guided summarize pruned/mag80-seed0 pruned/mag80-seed1 --layers --plot sparsity.png",
        _summarize_args,
        _summarize,
    ),
}


def _cost_words(cost: str | None) -> str:
    return f"importance per unit of {cost}" if cost else "importance alone (cost-agnostic)"
