"""``guided experiment``: run a registered experiment from a TOML config."""

from __future__ import annotations

import argparse

from guided.commands.common import Command


def _experiment_args(p: argparse.ArgumentParser) -> None:
    from guided.experiments import EXPERIMENTS

    p.add_argument("name", choices=sorted(EXPERIMENTS), help="which experiment")
    p.add_argument("config_file", metavar="CONFIG.toml", help="its configuration (see configs/)")
    p.add_argument("--out", required=True, metavar="DIR", help="tables, per-run results, provenance")
    p.add_argument("--runs-dir", metavar="DIR", help="full training runs (checkpoints); default OUT/runs")


def _experiment(args: argparse.Namespace) -> int:
    from guided.experiments import EXPERIMENTS
    from guided.io import read_toml

    config = read_toml(args.config_file)
    EXPERIMENTS[args.name](config, args.out, runs_dir=args.runs_dir)
    print(f"wrote {args.out}/table.md, table.csv, runs.csv, summary.json")
    return 0


def _quickstart_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results/quickstart", metavar="DIR", help="default results/quickstart")


def _quickstart(args: argparse.Namespace) -> int:
    from guided.io import check_output
    from guided.quickstart import quickstart

    check_output(args.out)

    quickstart(args.out)
    return 0


COMMANDS = {
    "quickstart": Command(
        "the offline main job: slimming on digits, pattern, guided vs uniform designs, transfer, report",
        "guided quickstart\n  guided quickstart --out /tmp/qs",
        _quickstart_args,
        _quickstart,
    ),
    "experiment": Command(
        "run an experiment (several trainings, pruning, retraining) from a TOML config; resumable",
        "guided experiment finetune-vs-scratch configs/finetune-vs-scratch-vgg16-cifar10-cpu.toml "
        "--out results/finetune-vs-scratch-vgg16-cpu --runs-dir runs/fvs",
        _experiment_args,
        _experiment,
    ),
}
