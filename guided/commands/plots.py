"""``guided plot``: the design-pattern figures, from the JSON and CSV files the other commands write."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided.commands.common import Command
from guided.errors import UserError
from guided.reporting import plots
from guided.shapes.patterns import Pattern
from guided.storage.io import check_output, read_csv_table, read_spec

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

    check_figure_path(args.out, inputs=tuple(args.inputs))

    if args.kind in ("widths", "sparsity") and len(args.inputs) != 1:
        raise UserError(f"plot {args.kind} takes one input file, got {len(args.inputs)}")
    if args.kind == "widths":
        designs = {}
        for item in args.design:
            label, sep, path = item.partition("=")
            if not sep:
                raise UserError(f"--design takes LABEL=SPEC.json, got {item!r}")
            designs[label] = read_spec(path)
        pattern = _read_pattern(args.inputs[0], "channels", "widths")
        files = plots.draw_width_bars(pattern, designs, args.out, title=args.title)
    elif args.kind == "profile":
        patterns = {}
        for path in args.inputs:
            pattern = _read_pattern(path, "channels", "profiles")
            patterns[", ".join(pattern.methods()) or Path(path).stem] = pattern
        files = plots.draw_profiles(patterns, args.out, title=args.title)
    elif args.kind == "sparsity":
        files = plots.draw_sparsity(
            _read_pattern(args.inputs[0], "sparsity", "sparsity plots"), args.out, title=args.title
        )
    else:
        df = pd.concat([_runs_csv(path) for path in args.inputs])
        files = plots.draw_accuracy_cost(df.to_dict("records"), args.out, title=args.title)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _read_pattern(path: str, kind: str, what: str):
    """A pattern of ``kind`` (``what`` is drawn from that kind only)."""

    pattern = Pattern.read(path)
    if pattern.kind != kind:
        raise UserError(f"{path} is a {pattern.kind} pattern; {what} are drawn from {kind} patterns")
    return pattern


def check_figure_path(path: str, option: str = "--out", inputs: tuple = ()) -> None:
    """A figure's output: a writable ``.png`` file (its SVG twin is written beside it), neither of them one of
    the ``inputs`` it is drawn from."""

    if Path(path).suffix.lower() != ".png":
        raise UserError(f"{option} {path}: figures are written as FILE.png (with FILE.svg beside it); end it in .png")
    check_output(path, folder=False, option=option, inputs=inputs)
    check_output(Path(path).with_suffix(".svg"), folder=False, option=option, inputs=inputs)


def _runs_csv(path: str):
    """A runs table for accuracy plots: columns label, params, macs, test_acc; numbers finite, not negative."""

    numeric = ("params", "macs", "test_acc")
    df = read_csv_table(path, "runs table", ("label", *numeric), numeric)
    if df.empty:
        raise UserError(f"{path} has a header but no rows to plot")
    return df


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
