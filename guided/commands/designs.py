"""``guided design``: guided and uniform architectures (or sparsity masks) at a budget."""

from __future__ import annotations

import argparse

from guided.commands.common import Command, add_arch_args, budget_from_args, seed_number, spec_from_args
from guided.errors import UserError
from guided.operations import design_to
from guided.pruning.unstructured import nonzero_cost, save_masks
from guided.shapes.design import design_sparsity
from guided.shapes.patterns import Pattern
from guided.storage.folders import PrunedFolder
from guided.storage.io import check_output, write_json


def _stage_map(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a stage map is comma-separated stage indices, got {text!r}") from None


def _design_args(p: argparse.ArgumentParser) -> None:
    add_arch_args(p)
    g = p.add_argument_group("design")
    g.add_argument("--pattern", metavar="PATTERN.json", help="a pattern from `guided summarize --out`")
    g.add_argument("--uniform", action="store_true", help="the uniform baseline: one multiplier (or density) for all")
    g.add_argument(
        "--budget",
        required=True,
        metavar="KIND=N",
        help="params=0.3M, macs=40M, latency=20ms or params=25%% (of the target); latency: one training step "
        "on this CPU at batch 128, predicted by the per-layer table (guided cost --latency); masks: params or macs",
    )
    g.add_argument("--per-layer", action="store_true", help="channels: interpolate the pattern's per-layer ratios")
    g.add_argument(
        "--stage-map",
        type=_stage_map,
        metavar="I,J,...",
        help="transfer: for each target stage, the pattern stage it follows",
    )
    g.add_argument(
        "--allow-wider", action="store_true", help="accept a budget above the full model's cost (a wider network)"
    )
    g.add_argument("--multiple-of", type=int, default=1, metavar="K", help="round widths to multiples of K")
    g.add_argument("--kernel", action="store_true", help="sparsity: draw 3x3 positions with the pattern's weights")
    g.add_argument("--include-linear", action="store_true", help="sparsity: mask linear layers too")
    g.add_argument("--seed", type=seed_number, default=0, help="sparsity: seeds the random masks")
    p.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="channels: the spec JSON to write; sparsity: a folder for spec.json and masks.npz",
    )


def _design(args: argparse.Namespace) -> int:
    if bool(args.pattern) == bool(args.uniform):
        raise UserError("give --pattern PATTERN.json for a guided design, or --uniform for the baseline")
    target = spec_from_args(args)
    budget = budget_from_args(args.budget, target)
    pattern = Pattern.read(args.pattern) if args.pattern else None
    kind = pattern.kind if pattern else "channels"
    if args.uniform and (args.kernel or args.include_linear):
        kind = "sparsity"
    if kind == "sparsity" and args.per_layer:
        raise UserError("--per-layer interpolates a channel pattern's layer ratios; sparsity designs are per stage")
    if kind == "channels" and args.kernel:
        raise UserError("--kernel places weights inside 3x3 kernels: it takes a sparsity pattern (or --uniform)")
    inputs = tuple(x for x in (args.pattern, args.spec) if x)
    check_output(args.out, folder=kind == "sparsity", inputs=inputs, new=kind == "sparsity")
    if kind == "sparsity":
        return _design_sparsity(args, target, budget, pattern)
    spec, record = design_to(
        args.out,
        target,
        budget,
        pattern=pattern,
        per_layer=args.per_layer,
        stage_map=args.stage_map,
        multiple_of=args.multiple_of,
        allow_wider=args.allow_wider,
    )
    step = f", {budget.show(record['predicted_s'])} predicted step" if "predicted_s" in record else ""
    print(
        f"{'uniform' if args.uniform else 'guided'} {spec.name}: {record['params']:,} params, "
        f"{record['macs'] / 1e6:.2f}M MACs{step}; widths {record['stages']}; wrote {args.out}"
    )
    return 0


def _design_sparsity(args: argparse.Namespace, target, budget, pattern) -> int:
    """Fixed masks following a sparsity pattern (or uniform), in a folder: spec, masks, what was designed."""

    result = design_sparsity(
        target,
        budget,
        pattern=pattern,
        kernel=args.kernel,
        include_linear=args.include_linear,
        stage_map=args.stage_map,
        seed=args.seed,
    )
    out = PrunedFolder(args.out)
    out.write_spec(target)
    save_masks(out.masks, result["masks"])
    c = nonzero_cost(target, result["masks"])
    write_json(
        out.design,
        {
            "kind": "sparsity",
            "budget": vars(budget),
            "pattern": args.pattern,
            "uniform": args.uniform,
            "kernel": args.kernel,
            "seed": args.seed,
            "nonzero_params": c.params,
            "nonzero_macs": c.macs,
            "densities": result["densities"],
        },
    )
    print(
        f"{'uniform' if args.uniform else 'guided'} sparsity for {target.name}: {c.params:,} non-zero params, "
        f"{c.macs / 1e6:.2f}M non-zero MACs; wrote {out.spec}, {out.masks.name} "
        f"(train with: guided train --spec {out.spec} --masks {out.masks} ...)"
    )
    return 0


COMMANDS = {
    "design": Command(
        "design a guided (or uniform) architecture, or sparsity masks, at a parameter or MAC budget",
        "guided design --pattern pattern.json --arch vgg19 --num-classes 100 --budget params=0.3M --out guided.json\n"
        "  guided design --uniform --arch vgg19 --num-classes 100 --budget params=0.3M --out uniform.json\n"
        "  guided design --pattern r56.json --arch resnet110 --budget macs=100M --out r110.json\n"
        "  guided design --pattern sparsity.json --kernel --arch vgg19 --budget params=0.4M --out guided-sparse/",
        _design_args,
        _design,
    ),
}
