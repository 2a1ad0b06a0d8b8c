"""``guided train`` and ``guided retrain``: training runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from guided.commands.common import (
    Command,
    add_arch_args,
    add_data_args,
    add_recipe_args,
    add_run_args,
    data_from_args,
    inherited_defaults,
    recipe_from_args,
    spec_from_args,
)
from guided.errors import UserError
from guided.io import check_output
from models import cost


def finished_line(result: dict) -> str:
    """One line about a finished run."""
    return f"test accuracy {result['test_acc']:.2%} after {result['epochs']} epochs, {result['wall_time_s']:.0f}s"


def _train_args(p: argparse.ArgumentParser) -> None:
    add_arch_args(p)
    add_data_args(p)
    add_recipe_args(p)
    add_run_args(p)
    g = p.add_argument_group("pruning hooks")
    g.add_argument(
        "--sparsity-l1",
        type=float,
        metavar="LAMBDA",
        help="Network Slimming: L1 penalty on BN scales (paper: 1e-4 VGG, 1e-5 ResNet/DenseNet)",
    )
    g.add_argument(
        "--sparsity-gates",
        type=float,
        metavar="GAMMA",
        help="Sparse Structure Selection: gate every residual block, L1-proximal updates on the gates",
    )
    g.add_argument(
        "--masks",
        metavar="MASKS.npz",
        help="train sparse: fixed weight masks (from `guided prune --method magnitude` or `guided design`)",
    )
    g.add_argument("--save-init", action="store_true", help="keep the initial weights (init.pt) for lottery tickets")


def _train(args: argparse.Namespace) -> int:
    from guided.hooks import BatchNormL1, FixedMasks, GateSparsity
    from guided.provenance import resolve_device
    from guided.train import resolve_precision, train
    from models import build

    check_output(args.out, inputs=tuple(x for x in (args.masks, args.spec) if x))
    device = resolve_device(args.device)
    recipe = recipe_from_args(args)
    data = data_from_args(args)
    spec = spec_from_args(args, data)
    hooks = [BatchNormL1(args.sparsity_l1)] if args.sparsity_l1 else []
    if args.masks:
        from guided.pruning.unstructured import load_masks

        model = build(spec, seed=args.seed)
        hooks.append(FixedMasks(load_masks(args.masks, model)))
    if args.sparsity_gates:
        if spec.family not in ("resnet", "preresnet"):
            raise UserError(f"--sparsity-gates needs a residual network (resnet, preresnet), not {spec.name}")
        spec = spec.replace(gated=True)
        hooks.append(GateSparsity(args.sparsity_gates))
    config = {k: v for k, v in vars(args).items() if k != "func"}
    print(
        f"{data.describe()}\n{spec.name}: {cost(spec).params:,} params, {cost(spec).macs / 1e6:.1f}M MACs, "
        f"{recipe.epochs} epochs on {device} ({resolve_precision(args.precision, device)})"
    )
    done_before = args.resume and (Path(args.out) / "result.json").exists()
    result = train(
        build(spec, seed=args.seed),
        data,
        recipe,
        out_dir=args.out,
        device=device,
        seed=args.seed,
        hooks=hooks,
        resume=args.resume,
        save_init=args.save_init,
        compile=args.compile,
        precision=args.precision,
        config=config,
    )
    print(finished_line(result) + ("" if done_before else f"; wrote {args.out}/result.json"))
    return 0


def _retrain_args(p: argparse.ArgumentParser) -> None:
    from guided.retrain import MODES

    p.add_argument("--from", dest="pruned", required=True, metavar="PRUNED_DIR", help="a `guided prune` folder")
    p.add_argument(
        "--mode",
        required=True,
        choices=MODES,
        help="finetune: inherited weights, fine-tuning recipe; scratch-e: fresh weights, the source's "
        "epochs; scratch-b: fresh weights, the source's compute (epochs x MACs ratio); lottery: "
        "masked models only, the source run's initial weights (needs --save-init)",
    )
    add_data_args(p)
    add_recipe_args(p)
    add_run_args(p)


def _retrain_defaults(args: argparse.Namespace) -> dict:
    from guided.io import read_json

    info = read_json(Path(args.pruned) / "prune.json", "pruned-model record")
    return inherited_defaults(info.get("source", {}).get("config", {}))


def _retrain(args: argparse.Namespace) -> int:
    from guided.io import read_json
    from guided.provenance import resolve_device
    from guided.retrain import retrain

    source_run = read_json(Path(args.pruned) / "prune.json", "pruned-model record").get("source", {}).get("run")
    check_output(args.out, inputs=tuple(x for x in (args.pruned, source_run) if isinstance(x, str)))
    device = resolve_device(args.device)
    recipe = recipe_from_args(args)
    data = data_from_args(args)
    config = {k: v for k, v in vars(args).items()}
    done_before = args.resume and (Path(args.out) / "result.json").exists()
    result = retrain(
        args.pruned,
        args.mode,
        data,
        recipe,
        out_dir=args.out,
        seed=args.seed,
        device=device,
        resume=args.resume,
        compile=args.compile,
        precision=args.precision,
        config=config,
    )
    print(f"{args.mode}: {finished_line(result)}" + ("" if done_before else f"; wrote {args.out}/result.json"))
    return 0


COMMANDS = {
    "train": Command(
        "train a network from scratch on a dataset, checkpointing every epoch",
        "guided train --arch vgg11 --width-mult 0.25 --dataset imagefolder:~/data/cifar10 --epochs 10 "
        "--out runs/vgg11\n"
        "  guided train --arch resnet56 --dataset cifar10 --data-root ~/data --recipe paper --out runs/r56\n"
        "  guided train --arch vgg16 --dataset cifar10 --sparsity-l1 1e-4 --out runs/vgg16-sparse\n"
        "  guided train --spec pruned/spec.json --dataset digits --out runs/tiny --resume",
        _train_args,
        _train,
    ),
    "retrain": Command(
        "fine-tune a pruned model, or train its architecture from scratch (Scratch-E, Scratch-B)",
        "guided retrain --from pruned/slim60 --mode finetune --out runs/slim60-ft\n"
        "  guided retrain --from pruned/slim60 --mode scratch-b --seed 1 --out runs/slim60-sb\n"
        "  guided retrain --from pruned/vgg16-a --mode scratch-e --dataset cifar10 --data-root ~/data --out runs/a-se",
        _retrain_args,
        _retrain,
        defaults=_retrain_defaults,
    ),
}
