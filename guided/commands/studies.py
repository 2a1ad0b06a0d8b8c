"""``guided run``: a whole study (train, prune, patterns, designs, transfer, search, report) from one TOML."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided.commands.common import Command, add_threads_arg
from guided.errors import UserError
from guided.pipeline import dry_run, load_study, run_study
from guided.pipeline.executors import EXECUTORS
from guided.pipeline.power import power_plan
from guided.pipeline.stages import plan_study
from guided.quickstart import quickstart
from guided.storage.io import check_output
from guided.timing.clock import clock


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", metavar="STUDY.toml", help="the study (see configs/study-*.toml)")
    p.add_argument("--out", metavar="DIR", help="the study folder (default guided-runs/<study name>, git-ignored)")
    p.add_argument("--resume", action="store_true", help="continue the study already in --out")
    add_threads_arg(p)
    p.add_argument(
        "--jobs",
        type=int,
        default=0,
        metavar="N",
        help="run up to N ready stages at once in worker processes, splitting the CPU threads between them "
        "(default: one per GPU on a CUDA study, else 1: serially)",
    )
    p.add_argument(
        "--group-seeds",
        type=int,
        default=0,
        metavar="K",
        help="train up to K seeds of one architecture together as one batched network (runs that differ only "
        "in their seeds and use no sparsity penalty or masks): one process and one kernel launch do the work of "
        "K, which keeps a GPU busy with small networks; each seed is its own run computed in the contiguous "
        "layout, while runs alone train channels-last, so the two agree in distribution, not seed for seed "
        "(docs/scale-out.md) (default 0: each run alone)",
    )
    p.add_argument(
        "--executor",
        choices=list(EXECUTORS),
        default="local",
        help="; ".join(f"{name}: {kind.help}" for name, kind in EXECUTORS.items()),
    )
    p.add_argument(
        "--address", metavar="ADDR", help="ray: the cluster to join (auto, or HOST:PORT; default: start one)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the stages with their status, training MACs and estimated time (measured on this machine: a "
        "few real training steps per architecture, real prunes, the runner's overheads; --jobs, --threads and "
        "--group-seeds as given); run nothing",
    )
    p.add_argument(
        "--throughput",
        metavar="FILE",
        help="with --dry-run: estimate the trainings for the device that measured FILE "
        "(results/benchmarks/gpu_throughput.json, written by benchmarks/gpu_throughput.py there) instead of "
        "timing them here: a GPU study's device time, planned on a machine without that GPU",
    )


#: Where ``guided run`` writes a study given no ``--out``: a folder git ignores (``.gitignore``), so a run
#: in a clone leaves the clone clean; committed results are written with ``--out results/NAME``.
DEFAULT_OUT = Path("guided-runs")


def _run(args: argparse.Namespace) -> int:
    study = load_study(args.study_file)
    if args.jobs is not None and args.jobs < 0:
        raise UserError(f"--jobs must be at least 1 (or 0: one per GPU, else 1), got {args.jobs}")
    if args.group_seeds < 0:
        raise UserError(f"--group-seeds must be 0 (each run alone) or more, got {args.group_seeds}")
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / study.study.name, writable=not args.dry_run)
    if args.throughput and not args.dry_run:
        raise UserError("--throughput only estimates (with --dry-run); drop it to run the study")
    if args.dry_run:
        rows = dry_run(
            study, out, jobs=args.jobs, threads=args.threads, group_seeds=args.group_seeds, throughput=args.throughput
        )
        _print_dry_run(rows)
        _print_power(study, out)
        return 0
    run_study(
        study,
        out,
        resume=args.resume,
        source_text=Path(args.study_file).read_text(),
        jobs=args.jobs,
        executor=args.executor,
        address=args.address,
        threads=args.threads,
        group_seeds=args.group_seeds,
    )
    return 0


def _print_dry_run(rows: list[dict]) -> None:
    """The plan, stage by stage, and the whole run's estimated wall time with its basis."""

    width = max(len(r["stage"]) for r in rows)
    print(f"{'stage':<{width}}  {'kind':<7} {'status':<7} {'train MACs':>10} {'est. time':>9}")
    for r in rows:
        macs = _count(r["macs"]) if r["macs"] else "-"
        secs = clock(r["seconds"]) if r["seconds"] is not None and r["status"] != "done" else "-"
        print(f"{r['stage']:<{width}}  {r['kind']:<7} {r['status']:<7} {macs:>10} {secs:>9}")
    todo = [r for r in rows if r["status"] != "done"]
    total_macs = sum(r["macs"] for r in todo)
    basis = todo[0]["basis"] if todo else None
    head = f"{len(todo)} of {len(rows)} stages to run: {_count(total_macs)} training MACs"
    if todo and all(r["seconds"] is None for r in todo):
        print(f"{head}; time {basis}" if basis else head)
        return
    wall = max((r["start"] + r["seconds"] for r in todo if r["start"] is not None), default=0.0)
    where = f"on {todo[0]['device']}" if todo and todo[0]["device"] else "on this machine"
    print(f"{head}, about {clock(wall)} of wall time {where}" + (f" ({basis})" if basis else ""))


def _print_power(study, out: Path) -> None:
    """Per comparison with uniform: the difference it can detect with the planned seeds, and the seeds a
    ``[study] detect`` target needs."""

    rows = power_plan(study, plan_study(study, out if (out / "latency").is_dir() else None)[0], out)
    if not rows:
        return
    print("\nDetectable differences to uniform (80% power, two-sided Welch test at 5%):")
    for r in rows:
        where = f"  {r['domain']}, {r['budget']}, {r['arm']}"
        if r["mde"] is None:
            print(f"{where}: cannot tell ({r['sd_from']})")
            continue
        line = f"{where}: {r['mde']:.2f} points with {r['seeds']} seeds (std {r['sd'][0]:.2f} and {r['sd'][1]:.2f} "
        line += f"points, from {r['sd_from']})"
        if "seeds_needed" in r:
            need = r["seeds_needed"]
            line += f"; {study.study.detect:g} points needs {need if need else 'more than 100'} seeds"
        print(line)


def _count(n: float) -> str:
    for unit, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _quickstart_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        default="guided-quickstart",
        metavar="DIR",
        help="the study folder (default ./guided-quickstart; a second run skips finished stages)",
    )
    add_threads_arg(p)


def _quickstart(args: argparse.Namespace) -> int:
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
    "run": Command(
        "run a whole study from one TOML file: stages in order, resumable, with a report",
        "guided run configs/study-tiny-digits.toml --out /tmp/tiny\n"
        "  guided run configs/study-vgg16-cifar10-cpu.toml --dry-run\n"
        "  guided run configs/study-vgg16-cifar10-cpu.toml --out results/study-vgg16-cifar10-cpu --resume\n"
        "  guided run configs/study-tiny-digits.toml --out /tmp/tiny --jobs 2\n"
        "  guided run configs/study-vgg16-cifar10-paper.toml --executor ray --address auto --out /shared/vgg16",
        _run_args,
        _run,
    ),
}
