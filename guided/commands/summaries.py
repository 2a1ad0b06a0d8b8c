"""``guided summarize``: what pruning kept, per layer and per stage, over one or more pruned folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided.commands.common import Command
from guided.errors import UserError


def _summarize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pruned", nargs="+", metavar="PRUNED_DIR", help="folders written by `guided prune`")
    p.add_argument("--out", metavar="FILE.json", help="write the summary as JSON")
    p.add_argument("--csv", metavar="FILE.csv", help="write the per-layer rows as CSV")
    p.add_argument("--plot", metavar="FILE.png", help="masked runs: draw per-stage density and kernel heatmaps")
    p.add_argument("--layers", action="store_true", help="print every layer, not only stages")


def _summarize(args: argparse.Namespace) -> int:
    import pandas as pd

    from guided.commands.plots import check_figure_path
    from guided.io import atomic_write_text, check_output, write_json
    from guided.patterns import (
        channel_summary,
        load_channel_rows,
        load_sparsity_reports,
        pattern_cost,
        sparsity_summary,
    )

    for option in ("out", "csv"):
        if getattr(args, option):
            check_output(getattr(args, option), folder=False, option=f"--{option}")
    if args.plot:
        check_figure_path(args.plot, "--plot")
    seen = {}
    for d in args.pruned:
        if Path(d).resolve() in seen:
            raise UserError(f"{d} is given twice (as {seen[Path(d).resolve()]}); each pruned run counts once")
        seen[Path(d).resolve()] = d
    masked = [(Path(d) / "masks.npz").exists() for d in args.pruned]
    if any(masked) and not all(masked):
        raise UserError("mix of masked (unstructured) and structured pruned folders; summarise them separately")
    if all(masked):
        summary = {"kind": "sparsity", **sparsity_summary(load_sparsity_reports(args.pruned))}
        print(f"weight density over {summary['runs']} run(s): {summary['density']:.1%} kept")
        for row in summary["stages"]:
            grid = summary["kernel"].get(row["stage"])
            kernel = ""
            if grid:
                kernel = "  kernel " + " / ".join(" ".join(f"{v:.2f}" for v in r) for r in grid)
            print(f"  stage {row['stage'] + 1}: {row['density_mean']:.1%} ± {row['density_std']:.1%}{kernel}")
        key = "density"
    else:
        summary = {"kind": "channels", **channel_summary(load_channel_rows(args.pruned))}
        print(f"channels kept over {summary['runs']} run(s):")
        for row in summary["stages"]:
            print(
                f"  stage {row['stage'] + 1}: {row['keep_ratio_mean']:.1%} ± {row['keep_ratio_std']:.1%} "
                f"({row['kept_mean']:.1f} of {row['original']})"
            )
        key = "keep_ratio"
    if args.layers:
        for row in summary["layers"]:
            print(
                f"    {row['layer']:<32} stage {row['stage'] + 1}  {row[key + '_mean']:.1%} ± {row[key + '_std']:.1%}"
            )
    summary["sources"] = [_provenance(Path(d)) for d in args.pruned]
    summary["cost"] = pattern_cost(summary["sources"])
    print(f"discovered ranking channels by {_cost_words(summary['cost'])}")
    if args.out:
        write_json(args.out, summary)
    if args.csv:
        atomic_write_text(args.csv, pd.DataFrame(summary["layers"]).to_csv(index=False))
    if args.plot:
        if summary["kind"] != "sparsity":
            raise UserError("--plot draws sparsity patterns of masked runs; channel plots come with `guided plot`")
        from guided.plots import draw_sparsity

        draw_sparsity(summary, args.plot, title=f"{summary['runs']} run(s)")
    return 0


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


def _provenance(folder: Path) -> dict:
    """Where one pruned folder came from: method, ratio, architecture, dataset."""
    from guided.io import read_json, read_spec

    info = read_json(folder / "prune.json", "pruned-model record")
    spec = read_spec(folder / "spec.json")
    config = (info.get("source") or {}).get("config") or {}
    return {
        "dir": str(folder),
        "method": info.get("method"),
        "ratio": info.get("ratio"),
        "preset": info.get("preset"),
        "cost": info.get("cost"),
        "source_spec": info.get("source_spec"),
        "family": spec.family,
        "dataset": config.get("dataset"),
        "source_run": (info.get("source") or {}).get("run"),
    }
