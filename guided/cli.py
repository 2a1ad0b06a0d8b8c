"""The ``guided`` command: a table of subcommands, each a thin call into the library.

``main(argv) -> int`` is what the console script and ``python -m guided`` run, and what tests call
in-process. User errors print one line to stderr and return 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from guided import __version__
from guided.errors import USER_ERRORS, UserError
from guided.io import read_spec, write_spec
from models import ArchSpec, cost, create_spec, list_models

__all__ = ["main", "COMMANDS", "build_parser"]


@dataclass(frozen=True)
class Command:
    """One subcommand: its one-line help, examples, argument setup and handler."""

    help: str
    examples: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------- shared arguments
def add_arch_args(p: argparse.ArgumentParser) -> None:
    """``--arch NAME [...]`` or ``--spec FILE``: how every subcommand names an architecture.

    Neither is required by argparse, so that a ``--config`` file can supply one; `spec_from_args` checks.
    """
    g = p.add_argument_group("architecture (--arch or --spec)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--arch", metavar="NAME", help="registered model name (see `guided models`)")
    src.add_argument("--spec", metavar="FILE", help="ArchSpec JSON file (from `guided spec`, pruning or design)")
    g.add_argument("--num-classes", type=int, metavar="N", help="classifier outputs (default 10, or the dataset's)")
    g.add_argument("--width-mult", type=float, default=1.0, metavar="X", help="scale every width (default 1.0)")
    g.add_argument("--head", choices=["l1", "slim"], help="VGG classifier: l1 (default) or slim (one Linear)")
    g.add_argument("--input-size", type=int, metavar="PX", help="input side in pixels (default: the model's, 32)")
    g.add_argument("--in-channels", type=int, metavar="C", help="input image channels (default 3, or the dataset's)")


def spec_from_args(args: argparse.Namespace, data=None) -> ArchSpec:
    """The spec named by `add_arch_args` options; classes and input shape default to ``data``'s."""
    if args.spec:
        return read_spec(args.spec)
    if not args.arch:
        raise UserError("name an architecture: --arch NAME (see `guided models`) or --spec FILE.json")
    num_classes = args.num_classes or (data.num_classes if data else 10)
    in_channels = args.in_channels or (data.in_channels if data else 3)
    input_size = args.input_size or (data.input_size if data else None)
    if num_classes < 1:
        raise UserError(f"--num-classes must be at least 1, got {num_classes}")
    if args.width_mult <= 0:
        raise UserError(f"--width-mult must be positive, got {args.width_mult}")
    return create_spec(
        args.arch,
        num_classes=num_classes,
        width_mult=args.width_mult,
        head=args.head,
        input_size=input_size,
        in_channels=in_channels,
    )


# ---------------------------------------------------------------------- cost
def _cost_args(p: argparse.ArgumentParser) -> None:
    add_arch_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object (params, macs, flops, layers)")


def _cost(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    c = cost(spec)
    if args.json:
        print(json.dumps({"name": spec.name, **c.to_dict()}, indent=2))
        return 0
    print(format_cost_table(spec, c))
    return 0


def format_cost_table(spec: ArchSpec, c) -> str:
    """A readable per-layer table with totals."""
    head = f"{'layer':<28} {'stage':>5} {'in':>5} {'out':>5} {'k':>2} {'size':>4} {'params':>11} {'MACs':>13}"
    lines = [f"{spec.name}: {spec.num_classes} classes, {spec.input_size}x{spec.input_size} input", head]
    lines.append("-" * len(head))
    for r in c.layers:
        stage = "-" if r["stage"] < 0 else str(r["stage"])
        kernel = "-" if r["kind"] == "bn" else str(r["kernel"])
        lines.append(
            f"{r['name']:<28} {stage:>5} {r['in_ch']:>5} {r['out_ch']:>5} {kernel:>2} "
            f"{r['out_size']:>4} {r['params']:>11,} {r['macs']:>13,}"
        )
    lines.append("-" * len(head))
    lines.append(f"params {c.params:,} ({c.params / 1e6:.3f}M)   MACs {c.macs:,} ({c.macs / 1e6:.1f}M)   "
                 f"FLOPs {c.flops / 1e6:.1f}M")
    return "\n".join(lines)


# ---------------------------------------------------------------------- spec
def _spec_args(p: argparse.ArgumentParser) -> None:
    add_arch_args(p)
    p.add_argument("--out", metavar="FILE", help="write the spec JSON here (default: print it)")


def _spec(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.out:
        write_spec(args.out, spec)
        print(f"wrote {args.out} ({spec.name}, {cost(spec).params:,} params)")
    else:
        print(spec.to_json())
    return 0


# ---------------------------------------------------------------------- train
def add_data_args(p: argparse.ArgumentParser) -> None:
    """Dataset options shared by every command that trains or evaluates."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="cifar10", metavar="NAME",
                   help="cifar10, cifar100, svhn, fashion-mnist, digits or imagefolder:PATH (default cifar10)")
    g.add_argument("--data-root", default="./data", metavar="DIR", help="torchvision datasets live here (default ./data)")
    g.add_argument("--image-size", type=int, metavar="PX", help="resize images to PX x PX (default: as stored)")
    g.add_argument("--train-subset", type=int, metavar="N", help="train on a seeded random N images")
    g.add_argument("--test-subset", type=int, metavar="N", help="evaluate on a seeded random N images")
    g.add_argument("--val-fraction", type=float, metavar="F",
                   help="hold out F of train as the evaluation split (the test set is then never used)")


def data_from_args(args: argparse.Namespace):
    """Load, subsample and split the dataset named by `add_data_args` options."""
    from guided.data import load_dataset, subsample, validation_split

    data = load_dataset(args.dataset, root=args.data_root, size=args.image_size)
    if args.val_fraction is not None:
        data = validation_split(data, args.val_fraction, seed=args.seed)
    return subsample(data, train=args.train_subset, test=args.test_subset, seed=args.seed)


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """``--recipe`` and a flag per recipe field."""
    from guided.recipes import RECIPES, SCHEDULES

    g = p.add_argument_group("recipe (named defaults, each field overridable)")
    g.add_argument("--recipe", default="quick", choices=sorted(RECIPES), help="quick (CPU, one-cycle) or paper")
    g.add_argument("--epochs", type=int, metavar="N")
    g.add_argument("--batch-size", type=int, metavar="N")
    g.add_argument("--lr", type=float, metavar="LR", help="peak learning rate")
    g.add_argument("--momentum", type=float, metavar="M")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--weight-decay", type=float, metavar="WD")
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--warmup", type=float, metavar="F", help="onecycle warm-up, fraction of training")
    g.add_argument("--label-smoothing", type=float, metavar="S")


def recipe_from_args(args: argparse.Namespace):
    """The named recipe with the given fields overridden."""
    from guided.recipes import get_recipe

    return get_recipe(args.recipe).override(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        nesterov=args.nesterov, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup=args.warmup, label_smoothing=args.label_smoothing,
    )


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Seed, device and output options of a training run."""
    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoints, metrics, result.json)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--seed", type=int, default=0, help="seeds initialisation, data order, augmentation (default 0)")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N (default auto)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (worth it on GPUs)")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast where the device has native bf16 (CUDA, recent CPUs), else fp32")
    g.add_argument("--config", metavar="FILE.toml", help="option defaults from a TOML file (flags override it)")


def _train_args(p: argparse.ArgumentParser) -> None:
    add_arch_args(p)
    add_data_args(p)
    add_recipe_args(p)
    add_run_args(p)
    g = p.add_argument_group("pruning hooks")
    g.add_argument("--sparsity-l1", type=float, metavar="LAMBDA",
                   help="Network Slimming: L1 penalty on BN scales (paper: 1e-4 VGG, 1e-5 ResNet/DenseNet)")
    g.add_argument("--save-init", action="store_true", help="keep the initial weights (init.pt) for lottery tickets")


def _train(args: argparse.Namespace) -> int:
    from guided.hooks import BatchNormL1
    from guided.io import write_json
    from guided.provenance import resolve_device
    from guided.train import resolve_precision, train
    from models import build

    device = resolve_device(args.device)
    recipe = recipe_from_args(args)
    data = data_from_args(args)
    spec = spec_from_args(args, data)
    hooks = [BatchNormL1(args.sparsity_l1)] if args.sparsity_l1 else []
    config = {k: v for k, v in vars(args).items() if k != "func"}
    print(f"{data.describe()}\n{spec.name}: {cost(spec).params:,} params, {cost(spec).macs / 1e6:.1f}M MACs, "
          f"{recipe.epochs} epochs on {device} ({resolve_precision(args.precision, device)})")
    if not args.resume:
        out = Path(args.out)
        if (out / "checkpoint.pt").exists():
            raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        write_json(out / "config.json", {**config, "recipe_resolved": recipe.to_dict()})
    result = train(
        build(spec, seed=args.seed), data, recipe, out_dir=args.out, device=device, seed=args.seed,
        hooks=hooks, resume=args.resume, save_init=args.save_init, compile=args.compile,
        precision=args.precision, config=config,
    )
    print(f"test accuracy {result['test_acc']:.2%} after {result['epochs']} epochs, "
          f"{result['wall_time_s']:.0f}s; wrote {args.out}/result.json")
    return 0


# ---------------------------------------------------------------------- models
def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tiny", action="store_true", help="include the tiny test variants")


def _models(args: argparse.Namespace) -> int:
    for name in list_models(include_tiny=args.tiny):
        spec = create_spec(name)
        c = cost(spec)
        print(f"{name:<28} {spec.family:<10} {c.params / 1e6:8.3f}M params {c.macs / 1e6:9.1f}M MACs")
    return 0


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a network from scratch on a dataset, checkpointing every epoch",
        "guided train --arch vgg11 --width-mult 0.25 --dataset imagefolder:~/data/cifar10 --epochs 10 --out runs/vgg11\n"
        "  guided train --arch resnet56 --dataset cifar10 --data-root ~/data --recipe paper --out runs/r56\n"
        "  guided train --arch vgg16 --dataset cifar10 --sparsity-l1 1e-4 --out runs/vgg16-sparse\n"
        "  guided train --spec pruned/spec.json --dataset digits --out runs/tiny --resume",
        _train_args,
        _train,
    ),
    "models": Command(
        "list registered architectures with their sizes",
        "guided models\n  guided models --tiny",
        _models_args,
        _models,
    ),
    "cost": Command(
        "count parameters and MACs of an architecture, per layer",
        "guided cost --arch vgg16 --num-classes 10\n"
        "  guided cost --arch resnet56 --json\n"
        "  guided cost --spec pruned/spec.json",
        _cost_args,
        _cost,
    ),
    "spec": Command(
        "write an architecture spec (JSON) to edit by hand and feed back with --spec",
        "guided spec --arch vgg16 --width-mult 0.25 --out vgg16-q.json\n"
        "  guided spec --arch densenet40 --num-classes 100",
        _spec_args,
        _spec,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one subparser per entry of `COMMANDS` (``parser.subparsers`` maps name to it)."""
    parser = argparse.ArgumentParser(
        prog="guided",
        description="Pruning as architecture discovery: train, prune, summarise, design, search.",
    )
    parser.add_argument("--version", action="version", version=f"guided {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subparsers = {}
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=cmd.help,
            description=cmd.help[0].upper() + cmd.help[1:] + ".",
            epilog=f"examples:\n  {cmd.examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_args(p)
        subparsers[name] = p
    parser.subparsers = subparsers
    return parser


def apply_config(parser: argparse.ArgumentParser, path: str) -> None:
    """Use a TOML file's keys (option names, ``-`` or ``_``) as defaults of ``parser``; flags still win.

    Unknown keys and values of the wrong type are refused before anything runs.
    """
    import tomllib

    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    defaults = {}
    for key, value in table.items():
        dest = key.replace("-", "_")
        if dest not in actions:
            raise UserError(f"{path}: unknown key {key!r}; it must be one of this command's options")
        expected = actions[dest].type or (bool if actions[dest].const in (True, False) or
                                          isinstance(actions[dest].default, bool) else str)
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or (expected is int and isinstance(value, bool)):
            raise UserError(f"{path}: key {key!r} must be {expected.__name__}, got {value!r}")
        defaults[dest] = value
    parser.set_defaults(**defaults)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``guided`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "config", None):
            apply_config(parser.subparsers[args.command], args.config)
            args = parser.parse_args(argv)
        return COMMANDS[args.command].run(args)
    except USER_ERRORS as exc:
        print(f"guided {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"guided {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
