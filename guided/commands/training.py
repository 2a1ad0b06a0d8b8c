"""``guided train`` and ``guided retrain``: training runs."""

from __future__ import annotations

import argparse

from guided.commands.common import (
    Command,
    add_arch_args,
    add_data_args,
    add_recipe_args,
    add_run_args,
    data_config_from_args,
    data_from_args,
    inherited_defaults,
    recipe_from_args,
    spec_from_args,
)
from guided.errors import UserError
from guided.operations import train_run, training_config
from guided.storage.folders import PrunedFolder, RunFolder
from guided.storage.io import check_output
from guided.storage.provenance import resolve_device
from guided.training.retrain import MODES, retrain
from guided.training.train import resolve_precision
from models import ArchSpec, cost


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


def _resumable(args: argparse.Namespace):
    """What a training command may write into besides a new or empty folder: with ``--resume``, a run folder."""

    def own(path) -> bool:
        run = RunFolder(path)
        return bool(args.resume) and (run.checkpoint.is_file() or run.result.is_file())

    return own


def _train(args: argparse.Namespace) -> int:
    check_output(args.out, inputs=tuple(x for x in (args.masks, args.spec) if x), new=True, own=_resumable(args))
    device = resolve_device(args.device)
    recipe = recipe_from_args(args)
    data_config = data_config_from_args(args)
    data = data_config.load()
    config = training_config(
        spec_from_args(args, data),
        data_config,
        recipe,
        recipe_name=args.recipe,
        seed=args.seed,
        precision=args.precision,
        sparsity_l1=args.sparsity_l1,
        sparsity_gates=args.sparsity_gates,
        masks=args.masks,
        save_init=args.save_init,
    )
    spec = ArchSpec.from_dict(config["spec"])
    print(
        f"{data.describe()}\n{spec.name}: {cost(spec).params:,} params, {cost(spec).macs / 1e6:.1f}M MACs, "
        f"{recipe.epochs} epochs on {device} ({resolve_precision(args.precision, device)})"
    )
    done_before = args.resume and RunFolder(args.out).finished() is not None
    result = train_run(config, args.out, data=data, device=device, resume=args.resume, compile=args.compile)
    print(finished_line(result) + ("" if done_before else f"; wrote {RunFolder(args.out).result}"))
    return 0


def _retrain_args(p: argparse.ArgumentParser) -> None:
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
    """The source run's data and recipe options as defaults, and ``given``: the recipe flags typed on this
    command line (this is the parse before defaults), which fine-tuning takes as its own."""
    info = PrunedFolder(args.pruned).read_record()
    given = [k for k in ("epochs", "lr") if getattr(args, k, None) is not None]
    return {**inherited_defaults((info.get("source") or {}).get("config") or {}), "given": given}


def _retrain_recipe(args: argparse.Namespace):
    """The recipe of a retraining: ``--epochs`` and ``--lr`` typed on the command line are what fine-tuning
    trains with (the recipe's ``finetune_*`` fields; the values inherited from the source run are the
    source's, not fine-tuning's); the scratch modes take their epochs from the source (as long, or as much
    compute), so a typed ``--epochs`` is refused there unless the source recorded none."""

    recipe = recipe_from_args(args)
    given = getattr(args, "given", ["epochs", "lr"])  # the flags typed, not inherited from the source run
    if args.mode == "finetune":
        return recipe.override(**{f"finetune_{k}": getattr(args, k) for k in given})
    recorded = (PrunedFolder(args.pruned).read_record().get("source") or {}).get("epochs")
    if "epochs" in given and recorded:
        raise UserError(
            f"--mode {args.mode} trains for the source's {recorded} epochs (scratch-b: its compute); --epochs does "
            "not apply: drop it, or fine-tune (--mode finetune --epochs N)"
        )
    return recipe


def _retrain(args: argparse.Namespace) -> int:
    source_run = PrunedFolder(args.pruned).source_run()
    check_output(args.out, inputs=tuple(x for x in (args.pruned, source_run) if x), new=True, own=_resumable(args))
    device = resolve_device(args.device)
    recipe = _retrain_recipe(args)
    data = data_from_args(args)
    config = {k: v for k, v in vars(args).items()}
    done_before = args.resume and RunFolder(args.out).finished() is not None
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
    print(f"{args.mode}: {finished_line(result)}" + ("" if done_before else f"; wrote {RunFolder(args.out).result}"))
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
