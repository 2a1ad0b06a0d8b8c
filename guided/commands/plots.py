"""``guided plot``: the design-pattern figures, from the JSON and CSV files the other commands write."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided.commands.common import Command
from guided.errors import UserError

KINDS = ("widths", "profile", "sparsity", "accuracy")


def _plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "kind",
        choices=KINDS,
        help="widths: per-stage widths of pruned runs and designs; profile: "
        "per-layer keep ratios per pattern; sparsity: stage density and kernel heatmaps; accuracy: "
        "test error against parameters and MACs",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="pattern JSON(s) (widths, profile), a sparsity summary JSON, or a CSV of runs with columns "
        "label, params, macs, test_acc (accuracy)",
    )
    p.add_argument(
        "--design",
        action="append",
        default=[],
        metavar="LABEL=SPEC.json",
        help="widths: a designed spec to draw beside the pruned runs (repeatable)",
    )
    p.add_argument("--title", default="", help="figure title")
    p.add_argument("--out", required=True, metavar="FILE.png", help="output; an SVG is written beside it")


def _plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from guided import plots
    from guided.io import check_output, read_json, read_spec
    from guided.patterns import check_pattern

    check_output(args.out, folder=False)

    if args.kind in ("widths", "sparsity") and len(args.inputs) != 1:
        raise UserError(f"plot {args.kind} takes one input file, got {len(args.inputs)}")
    if args.kind == "widths":
        designs = {}
        for item in args.design:
            label, sep, path = item.partition("=")
            if not sep:
                raise UserError(f"--design takes LABEL=SPEC.json, got {item!r}")
            designs[label] = read_spec(path)
        pattern = check_pattern(read_json(args.inputs[0], "pattern"), args.inputs[0])
        files = plots.draw_width_bars(pattern, designs, args.out, title=args.title)
    elif args.kind == "profile":
        patterns = {}
        for path in args.inputs:
            pattern = check_pattern(read_json(path, "pattern"), path)
            methods = sorted({s.get("method") or "?" for s in pattern.get("sources", []) if isinstance(s, dict)})
            patterns[", ".join(methods) or Path(path).stem] = pattern
        files = plots.draw_profiles(patterns, args.out, title=args.title)
    elif args.kind == "sparsity":
        summary = read_json(args.inputs[0], "sparsity summary")
        check_pattern({**summary, "kind": "sparsity"} if isinstance(summary, dict) else summary, args.inputs[0])
        files = plots.draw_sparsity(summary, args.out, title=args.title)
    else:
        frames = []
        for path in args.inputs:
            if not Path(path).is_file():
                raise UserError(f"{path} does not exist")
            frames.append(pd.read_csv(path))
        df = pd.concat(frames)
        missing = {"label", "params", "macs", "test_acc"} - set(df.columns)
        if missing:
            raise UserError(f"accuracy plots need columns label, params, macs, test_acc; missing {sorted(missing)}")
        files = plots.draw_accuracy_cost(df.to_dict("records"), args.out, title=args.title)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


COMMANDS = {
    "plot": Command(
        "draw design-pattern figures (PNG and SVG) from patterns, designs, sparsity summaries, run tables",
        "guided plot widths pattern.json --design guided=g.json --design uniform=u.json --out widths.png\n"
        "  guided plot profile slim.json thinet.json --out profile.png\n"
        "  guided plot sparsity sparsity.json --out sparsity.png\n"
        "  guided plot accuracy runs.csv --out error-vs-cost.png",
        _plot_args,
        _plot,
    ),
}
