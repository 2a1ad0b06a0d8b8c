"""``guided prune``: structured pruning of a trained run (or of fresh weights)."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided.commands.common import (
    Command,
    add_arch_args,
    add_data_args,
    add_threads_arg,
    budget_from_args,
    data_from_args,
    inherited_defaults,
    seed_number,
    spec_from_args,
    torchvision_from_args,
)
from guided.errors import UserError
from guided.operations import latency_table, prune_run, run_settings
from guided.pruning import PRUNERS
from guided.pruning.allocate import PRESETS
from guided.storage.folders import PrunedFolder, RunFolder
from guided.storage.io import check_output
from guided.storage.provenance import resolve_device
from models import build


def _parse_ratio(text: str) -> float | list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a ratio or a comma-separated list of ratios: {text!r}") from None
    return values[0] if len(values) == 1 else values


COUPLED_HELP = (
    "channel methods: prune the channels several layers share too (residual stage widths and the stem of ResNets "
    "and MobileNetV2), every member of such a group keeping the same channels; its score is the mean of its "
    "members' (default: off, as the paper's methods prune)"
)


def _prune_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to prune")
    g.add_argument(
        "--checkpoint",
        metavar="RUN_DIR",
        help="a finished `guided train` run folder, or a study's training stage (DIR/stages/source/base-sparse-s0)",
    )
    add_arch_args(p)
    g.add_argument(
        "--weights",
        metavar="FILE",
        help="with --torchvision: that network's trained state_dict (torch.save(model.state_dict(), FILE))",
    )
    g = p.add_argument_group("how")
    g.add_argument(
        "--method",
        required=True,
        choices=sorted(PRUNERS),
        help="; ".join(f"{n}: {m.summary}" for n, m in sorted(PRUNERS.items())),
    )
    g.add_argument(
        "--ratio",
        type=_parse_ratio,
        metavar="R",
        help="fraction of channels to remove, in (0, 1); or one per stage: 0.5,0.3,0.1",
    )
    g.add_argument("--preset", choices=sorted(PRESETS), help="a named per-layer recipe (Li et al.)")
    g.add_argument(
        "--budget",
        metavar="KIND=N",
        help="channel methods: the smallest ratio whose result fits params=25%% (of this model), params=0.3M or "
        "macs=40M or latency=25%% (found by bisection over the allocation)",
    )
    g.add_argument("--threshold", type=float, metavar="T", help="sss: remove blocks whose |gate| is below T")
    g.add_argument("--include-linear", action="store_true", help="magnitude/random: mask linear weights too")
    g.add_argument("--like", metavar="PRUNED_DIR", help="random: copy the per-layer sparsity of these masks")
    g.add_argument(
        "--allocation",
        choices=["global", "layer"],
        help="one threshold over the network, or the same ratio per layer (default: the method's)",
    )
    g.add_argument(
        "--cost",
        choices=["params", "macs", "latency"],
        help="global allocation: rank channels by score per unit of this cost (each channel is charged its "
        "share of the layers it writes and reads; latency: measured per layer on --device at batch 128, "
        "cached), so dear channels go first; default: by score alone",
    )
    g.add_argument("--coupled", action="store_true", help=COUPLED_HELP)
    g.add_argument("--min-channels", type=int, default=1, metavar="N", help="channels every layer keeps (default 1)")
    g.add_argument(
        "--min-keep",
        type=float,
        default=0.0,
        metavar="F",
        help="share of its channels every layer keeps, in [0, 1) (default 0): stops a global threshold from "
        "emptying one wide layer whose scores run low (MobileNetV2's last 1x1 conv under slimming)",
    )
    g.add_argument(
        "--samples",
        type=int,
        default=512,
        metavar="N",
        help="training images read by activation-based methods (default 512)",
    )
    g.add_argument("--seed", type=seed_number, default=0, help="seeds fresh weights and activation sampling")
    add_data_args(p)
    p.add_argument(
        "--out", required=True, metavar="DIR", help="pruned folder: spec.json, model.pt, prune.json, layers.csv"
    )
    p.add_argument("--device", default="cpu", help="where activations are computed (default cpu)")
    add_threads_arg(p)


def _prune_defaults(args: argparse.Namespace) -> dict:
    if not args.checkpoint:
        return {}
    if not Path(args.checkpoint).is_dir():
        raise UserError(
            f"--checkpoint {args.checkpoint} does not exist or is not a run folder (from guided train, or a "
            "study's training stage)"
        )
    return inherited_defaults(run_settings(args.checkpoint))


def _prune(args: argparse.Namespace) -> int:
    if args.checkpoint and (args.arch or args.spec or args.torchvision):
        raise UserError("give --checkpoint RUN_DIR, or --arch/--spec/--torchvision for other weights, not both")
    if args.weights and not args.torchvision:
        raise UserError("--weights reads a torchvision state_dict: name its network with --torchvision NAME")
    inputs = tuple(x for x in (args.checkpoint, args.like, args.weights) if x)
    check_output(args.out, inputs=inputs, new=True)
    if args.min_channels < 1:
        raise UserError(f"--min-channels must be at least 1, got {args.min_channels}")
    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, got {args.samples}")
    if not 0 <= args.min_keep < 1:
        raise UserError(f"--min-keep must lie in [0, 1) (the share of each layer kept), got {args.min_keep}")
    data = data_from_args(args) if PRUNERS[args.method].needs_data else None
    device = resolve_device(args.device)
    model, source = None, None
    if args.torchvision:
        model = torchvision_from_args(args, data, weights=args.weights)
        source = {"run": None, "epochs": None, "config": {}, "torchvision": args.torchvision, "weights": args.weights}
    elif not args.checkpoint:
        model = build(spec_from_args(args, data), seed=args.seed)
    full = RunFolder(args.checkpoint).read_spec() if args.checkpoint else model.spec
    table = latency_table(device) if args.cost == "latency" else None  # ranks channels and solves the budget
    budget = None
    if args.budget:
        if args.ratio is not None or args.preset:
            raise UserError("give --budget, or --ratio/--preset, not both")
        budget = budget_from_args(args.budget, full, table=table)
    result = prune_run(
        args.out,
        args.method,
        checkpoint=args.checkpoint,
        model=model,
        data=data,
        seed=args.seed,
        budget=budget,
        source=source,
        like=args.like,
        latency=table,
        device=device,
        ratio=args.ratio,
        preset=args.preset,
        allocation=args.allocation,
        min_channels=args.min_channels,
        min_keep=args.min_keep or None,
        samples=args.samples,
        threshold=args.threshold,
        include_linear=args.include_linear,
        cost=args.cost,
        coupled=args.coupled or None,
    )
    print("\n".join(_summary(args.method, full.name, result)))
    out = PrunedFolder(args.out)
    files = [out.spec, out.weights, out.record, out.layers] + ([out.masks] if result.masks is not None else [])
    print(f"wrote {out}: " + ", ".join(f.name for f in files))
    return 0


def _summary(method: str, name: str, result) -> list[str]:
    """What pruning did: costs before and after, and per stage what was kept (weights, blocks, channels)."""

    info = result.info
    nonzero = "non-zero " if result.masks is not None else ""
    lines = [
        f"{method} ({info['allocation']}): {name} {info['params_before']:,} -> {nonzero}"
        f"{info['params_after']:,} params ({info['params_after'] / info['params_before']:.1%}), "
        f"{info['macs_before'] / 1e6:.1f}M -> {info['macs_after'] / 1e6:.1f}M MACs"
    ]
    stages = max([len(result.model.spec.stages)] + [r["stage"] + 1 for r in result.rows])  # with pattern stages
    for s in range(stages):
        rows = [r for r in result.rows if r["stage"] == s]
        if result.masks is not None:
            kept, total = sum(r["kept"] for r in rows), sum(r["weights"] for r in rows)
            lines.append(f"  stage {s}: kept {kept:,}/{total:,} weights ({kept / max(total, 1):.1%})")
        elif PRUNERS[method].unit == "blocks":
            gates = " ".join(format(r["gate"], ".2g") for r in rows)
            lines.append(f"  stage {s}: kept {sum(r['kept'] for r in rows)}/{len(rows)} blocks, gates [{gates}]")
        else:
            shared = [r for r in rows if r.get("kind") == "coupled"]
            rows = [r for r in rows if r.get("kind") != "coupled"]
            kept = " ".join(str(r["kept"]) for r in rows)
            total = sum(r["original"] for r in rows)
            line = f"  stage {s}: kept {sum(r['kept'] for r in rows)}/{total} channels [{kept}]"
            line += "".join(f", {r['layer']} {r['kept']}/{r['original']}" for r in shared)
            lines.append(line)
    spread = info.get("spread")
    if spread and spread["charge"] > spread["score"]:
        lines.append(
            f"note: the {info['cost']} charges spread {spread['charge']:g}x (90th/10th percentile) and the scores "
            f"only {spread['score']:g}x, so ranking by score per unit of {info['cost']} follows cost more than "
            "importance: a base trained longer (or with a stronger penalty) spreads its scores"
        )
    return lines


COMMANDS = {
    "prune": Command(
        "prune channels of a trained run (or fresh weights) and save the narrower model",
        "guided prune --method slimming --checkpoint runs/vgg16-sparse --ratio 0.6 --out pruned/slim60\n"
        "  guided prune --method l1-norm --arch vgg16 --preset vgg16-a --out pruned/vgg16-a\n"
        "  guided prune --method thinet --checkpoint runs/vgg16 --ratio 0.5 --samples 256 --out pruned/thinet\n"
        "  guided prune --method l1-norm --checkpoint runs/r56 --ratio 0.5,0.3,0.1 --out pruned/r56\n"
        "  guided prune --method l1-norm --arch resnet56 --ratio 0.5 --coupled --out pruned/r56-coupled\n"
        "  guided prune --method slimming --checkpoint runs/vgg16-sparse --budget params=25% --out pruned/slim-25pct\n"
        "  guided prune --method slimming --checkpoint runs/vgg16-sparse --budget macs=25% --cost macs --out p/mac",
        _prune_args,
        _prune,
        defaults=_prune_defaults,
    ),
}
