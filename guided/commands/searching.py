"""``guided search``: Optuna width search at a budget, warm-started from guided designs."""

from __future__ import annotations

import argparse

from guided.commands.common import (
    Command,
    add_arch_args,
    add_data_args,
    add_recipe_args,
    add_threads_arg,
    budget_from_args,
    data_from_args,
    recipe_from_args,
    seed_number,
    spec_from_args,
)
from guided.errors import UserError
from guided.storage.io import check_output, read_spec
from guided.storage.provenance import resolve_device
from search.study import SAMPLERS, TRIAL_STOPPERS, query_secrets, run_search, storage_url


def _search_args(p: argparse.ArgumentParser) -> None:
    add_arch_args(p)
    add_data_args(p)
    add_recipe_args(p)
    g = p.add_argument_group("search")
    g.add_argument(
        "--budget",
        required=True,
        metavar="KIND=N",
        help="params=0.2M, macs=20M or params=25%% (of the target): every trial's cost",
    )
    g.add_argument("--trials", type=int, default=20, help="finished trials to reach, over all workers (default 20)")
    g.add_argument(
        "--objectives",
        default="acc",
        choices=["acc", "acc,macs"],
        help="acc (TPE) or acc,macs (NSGA-II, a Pareto front)",
    )
    g.add_argument(
        "--pruner",
        default="none",
        choices=TRIAL_STOPPERS,
        help="stop unpromising trials early (Optuna pruners; single objective only; median waits for 5 "
        "complete trials). Default none: every trial completes",
    )
    g.add_argument(
        "--sampler",
        default="tpe",
        choices=list(SAMPLERS),
        help=f"one of {', '.join(SAMPLERS)} (tpe: TPE; random: uniform sampling, the control); single objective only",
    )
    g.add_argument(
        "--seed-designs",
        nargs="+",
        default=[],
        metavar="SPEC.json",
        help="designs evaluated first (guided, uniform), as warm starts",
    )
    g.add_argument("--per-layer", action="store_true", help="one ratio per layer instead of per stage")
    g.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna RDB URL shared by workers (default: a journal file in --out); keep the password out of it: "
        "PostgreSQL reads PGPASSWORD, or PGPASSFILE (~/.pgpass)",
    )
    g.add_argument("--study-name", default="guided-search", help="join this study in the storage")
    g.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="S",
        help="RDB storage: seconds between heartbeats; a trial silent for 2 beats is failed and retried",
    )
    g.add_argument("--seed", type=seed_number, default=0, help="sampler and training seed")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    g.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "bf16"], help="bf16 autocast where native (auto)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="trials, best spec(s), trials.csv, plots")
    add_threads_arg(p)


def _search(args: argparse.Namespace) -> int:
    check_output(args.out)
    if args.storage:
        _warn_if_password(args.storage)
    if args.val_fraction is None:
        args.val_fraction = 0.1  # search never looks at the test set
    data = data_from_args(args)
    target = spec_from_args(args, data)
    budget = budget_from_args(args.budget, target)
    seeds = [read_spec(p) for p in args.seed_designs]
    if args.trials < len(seeds):
        raise UserError(f"--trials {args.trials} is fewer than the {len(seeds)} seed designs")
    summary = run_search(
        target,
        budget,
        data,
        recipe_from_args(args),
        trials=args.trials,
        out_dir=args.out,
        objectives=args.objectives.split(","),
        pruner=args.pruner,
        sampler=args.sampler,
        seed_designs=seeds,
        storage=args.storage,
        heartbeat=args.heartbeat,
        study_name=args.study_name,
        per_layer=args.per_layer,
        seed=args.seed,
        device=resolve_device(args.device),
        precision=args.precision,
    )
    best = summary["best"][0]
    print(
        f"{summary['trials']['complete']} complete, {summary['trials']['pruned']} stopped early; best trial "
        f"{best['number']}: {best['values'][0]:.2%} validation accuracy, {best['params']:,} params; "
        f"wrote {args.out}/{best['file']}, trials.csv, history.png"
    )
    return 0


def _warn_if_password(url: str) -> None:
    """A password typed into ``--storage`` is readable by every user of this machine (``ps``): say so, once,
    and where it belongs instead (libpq reads PGPASSWORD, or PGPASSFILE / ~/.pgpass, when the URL has none)."""
    import sys

    if storage_url(url).password or query_secrets(url):
        print(
            "guided search: warning: the --storage password is visible to other users of this machine (ps); leave "
            "it out of the URL and set PGPASSWORD, or put it in ~/.pgpass (PGPASSFILE)",
            file=sys.stderr,
        )


COMMANDS = {
    "search": Command(
        "search widths with Optuna at a budget (validation accuracy), warm-started from guided designs",
        "guided search --arch vgg16 --width-mult 0.25 --dataset digits --budget params=0.1M --trials 12 --out s1\n"
        "  guided search --arch vgg16 --width-mult 0.25 --dataset digits --budget params=0.1M --trials 12 "
        "--seed-designs guided.json uniform.json --out s2\n"
        "  guided search ... --objectives acc,macs --out pareto\n"
        "  guided search ... --storage postgresql://user@host/db --study-name shared --out worker1",
        _search_args,
        _search,
    ),
}
