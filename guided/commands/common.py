"""Argument groups shared by the subcommands, and how they turn into library objects."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from guided.errors import UserError
from guided.operations import flat_settings, latency_table
from guided.shapes.design import parse_budget
from guided.storage.io import read_spec, type_ok
from guided.storage.loading import load_torchvision
from guided.training.data import DataConfig
from guided.training.recipes import EVALS, RECIPES, SCHEDULES, check_lrs, get_recipe
from models import ArchSpec, create_spec

__all__ = [
    "Command",
    "add_arch_args",
    "spec_from_args",
    "torchvision_from_args",
    "add_data_args",
    "data_from_args",
    "data_config_from_args",
    "add_recipe_args",
    "recipe_from_args",
    "add_run_args",
    "add_threads_arg",
    "seed_number",
]


@dataclass(frozen=True)
class Command:
    """One subcommand: its one-line help, examples, argument setup and handler."""

    help: str
    examples: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    #: option defaults derived from a first parse (e.g. ``retrain`` inherits the source run's data).
    defaults: Callable[[argparse.Namespace], dict] | None = None


def seed_number(text: str) -> int:
    """An argparse type: a seed, an integer in [0, 2**32) (what NumPy and PyTorch generators accept)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"a seed lies in [0, 2**32), got {text}")
    return value


def add_arch_args(p: argparse.ArgumentParser) -> None:
    """``--arch NAME [...]`` or ``--spec FILE``: how every subcommand names an architecture.

    Neither is required by argparse, so that a ``--config`` file can supply one; `spec_from_args` checks.
    """
    g = p.add_argument_group("architecture (--arch or --spec)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--arch", metavar="NAME", help="registered model name (see `guided models`)")
    src.add_argument("--spec", metavar="FILE", help="ArchSpec JSON file (from `guided spec`, pruning or design)")
    src.add_argument(
        "--torchvision",
        metavar="NAME",
        help="a torchvision network read into a guided one: resnet18/34/50/101/152, vgg11_bn ... vgg19_bn, "
        "mobilenet_v2 (built here, nothing is downloaded; input size: --input-size, else the dataset's, else 224)",
    )
    g.add_argument(
        "--num-classes",
        type=int,
        metavar="N",
        help="classifier outputs (default: the dataset's, else 10; with --torchvision: the weights' classifier, "
        "else the dataset's, else 1000)",
    )
    g.add_argument("--width-mult", type=float, metavar="X", help="scale every width (default 1.0)")
    g.add_argument(
        "--head",
        choices=["l1", "slim", "imagenet"],
        help="VGG classifier: l1 (default), slim (one Linear) or imagenet (torchvision's: 7x7 pool, 4096-wide)",
    )
    g.add_argument("--input-size", type=int, metavar="PX", help="input side in pixels (default: the model's, 32)")
    g.add_argument("--in-channels", type=int, metavar="C", help="input image channels (default 3, or the dataset's)")


def spec_from_args(args: argparse.Namespace, data=None) -> ArchSpec:
    """The spec named by `add_arch_args` options; classes and input shape default to ``data``'s."""
    shape = {"num_classes": args.num_classes, "in_channels": args.in_channels, "input_size": args.input_size}
    if getattr(args, "torchvision", None):
        return torchvision_from_args(args, data).spec
    if args.spec:
        given = [k for k, v in {**shape, "width_mult": args.width_mult, "head": args.head}.items() if v is not None]
        if given:
            option = "--" + given[0].replace("_", "-")
            raise UserError(
                f"{option} shapes an --arch; a --spec file fixes every width and shape: edit the file, or use "
                "--arch NAME (or `guided design`) instead"
            )
        return read_spec(args.spec)
    if not args.arch:
        raise UserError("name an architecture: --arch NAME (see `guided models`) or --spec FILE.json")
    for key, value in shape.items():
        if value is not None and value < 1:
            raise UserError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    num_classes = args.num_classes or (data.num_classes if data else 10)
    in_channels = args.in_channels or (data.in_channels if data else 3)
    input_size = args.input_size or (data.input_size if data else None)
    width_mult = 1.0 if args.width_mult is None else args.width_mult
    if not 0 < width_mult <= 64:
        raise UserError(f"--width-mult must be positive and at most 64, got {args.width_mult}")
    return create_spec(
        args.arch,
        num_classes=num_classes,
        width_mult=width_mult,
        head=args.head,
        input_size=input_size,
        in_channels=in_channels,
    )


def torchvision_from_args(args: argparse.Namespace, data=None, weights: str | None = None):
    """The guided network equal to torchvision's ``--torchvision NAME`` (`guided.storage.loading.load_torchvision`).

    Its weights are ``weights`` (a ``state_dict`` file of that torchvision network, e.g. a user's own
    fine-tuned one) or torchvision's random initialisation; nothing is downloaded. Classes come from
    ``--num-classes``, else the weights' classifier, else ``data``, else 1000; ``--width-mult`` reaches
    ``mobilenet_v2`` only; the input side is ``--input-size``, else ``data``'s, else 224.
    """

    name = args.torchvision
    for option in ("head", "in_channels"):
        if getattr(args, option, None) is not None:
            raise UserError(f"--{option.replace('_', '-')} shapes an --arch; --torchvision {name} fixes it")
    for option in ("num_classes", "input_size"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.width_mult is not None and not 0 < args.width_mult <= 64:
        raise UserError(f"--width-mult must be positive and at most 64, got {args.width_mult}")
    size = args.input_size if args.input_size is not None else (data.input_size if data else 224)
    converted = load_torchvision(
        name,
        weights,
        num_classes=args.num_classes,
        default_classes=data.num_classes if data else 1000,
        width_mult=args.width_mult,
        input_size=size,
    )
    if args.input_size is None and not getattr(args, "json", False):  # costs and budgets depend on it: say so
        source = f"the dataset's, {getattr(data, 'name', 'the data')}" if data else "torchvision's default"
        print(f"--torchvision {name}: input {size} px ({source}; --input-size to change)")
    return converted


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Dataset options shared by every command that trains or evaluates."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default="cifar10",
        metavar="NAME",
        help="cifar10, cifar100, svhn, fashion-mnist, digits or imagefolder:PATH (default cifar10)",
    )
    g.add_argument(
        "--data-root", default="./data", metavar="DIR", help="torchvision datasets live here (default ./data)"
    )
    g.add_argument("--image-size", type=int, metavar="PX", help="resize images to PX x PX (default: as stored)")
    g.add_argument(
        "--train-subset", type=int, metavar="N", help="train on N images drawn at random (the same N whatever --seed)"
    )
    g.add_argument(
        "--test-subset", type=int, metavar="N", help="evaluate on N images drawn at random (the same N whatever --seed)"
    )
    g.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="hold out F of train as the evaluation split (the test set is then never used)",
    )


def data_config_from_args(args: argparse.Namespace):
    """The `guided.training.data.DataConfig` that `add_data_args` options name."""

    fields = ("dataset", "data_root", "image_size", "train_subset", "test_subset", "val_fraction")
    return DataConfig(**{f: getattr(args, f) for f in fields})


def data_from_args(args: argparse.Namespace):
    """Load, split and subsample the dataset named by `add_data_args` options (the same images whatever
    ``--seed``: seeds vary initialisation and data order)."""
    return data_config_from_args(args).load()


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """``--recipe`` and a flag per recipe field."""

    g = p.add_argument_group("recipe (named defaults, each field overridable)")
    g.add_argument("--recipe", default="quick", choices=sorted(RECIPES), help="quick (CPU, one-cycle) or paper")
    g.add_argument("--epochs", type=int, metavar="N", help="passes over the training set")
    g.add_argument("--batch-size", type=int, metavar="N", help="images per step")
    g.add_argument("--lr", type=float, metavar="LR", help="peak learning rate")
    g.add_argument("--momentum", type=float, metavar="M", help="SGD momentum")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov momentum")
    g.add_argument("--weight-decay", type=float, metavar="WD", help="L2 penalty on every parameter")
    g.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    g.add_argument("--warmup", type=float, metavar="F", help="onecycle warm-up, fraction of training")
    g.add_argument("--label-smoothing", type=float, metavar="S", help="cross-entropy label smoothing")
    g.add_argument(
        "--ema", type=float, metavar="DECAY", help="evaluate and save a moving average of the weights (e.g. 0.999)"
    )
    g.add_argument(
        "--test-flip", action=argparse.BooleanOptionalAction, default=None, help="average each test image's mirror"
    )
    g.add_argument("--eval", choices=EVALS, help="test every epoch (default) or only after the last")


def recipe_from_args(args: argparse.Namespace):
    """The named recipe with the given fields overridden."""

    check_lrs({"--lr": args.lr})
    return get_recipe(args.recipe).override(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        nesterov=args.nesterov,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup=args.warmup,
        label_smoothing=args.label_smoothing,
        ema=getattr(args, "ema", None),
        test_flip=getattr(args, "test_flip", None),
        eval=getattr(args, "eval", None),
    )


def add_threads_arg(p) -> None:
    """``--threads N``: the CPU threads this command computes with (see `guided.timing.threads`)."""
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads to compute with (default: $GUIDED_THREADS, else the cores divided among the guided "
        "processes running on this machine, re-checked every epoch)",
    )


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Seed, device and output options of a training run."""
    g = p.add_argument_group("run")
    add_threads_arg(g)
    g.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoints, metrics, result.json)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument(
        "--seed", type=seed_number, default=0, help="seeds initialisation, data order, augmentation (default 0)"
    )
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N (default auto)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (worth it on GPUs)")
    g.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="auto: bf16 autocast where the device has native bf16 (CUDA, recent CPUs), else fp32",
    )
    g.add_argument("--config", metavar="FILE.toml", help="option defaults from a TOML file (flags override it)")


#: Options a run inherits from the run it derives from (pruning and retraining reuse its data and recipe),
#: with the type each must have in the recorded ``config.json``.
INHERITED = {
    "dataset": "str",
    "data_root": "str",
    "image_size": "int",
    "train_subset": "int",
    "test_subset": "int",
    "val_fraction": "float",
    "recipe": "str",
    "epochs": "int",
    "batch_size": "int",
    "lr": "float",
    "momentum": "float",
    "nesterov": "bool",
    "weight_decay": "float",
    "schedule": "str",
    "warmup": "float",
    "label_smoothing": "float",
    "precision": "str",
}


def inherited_defaults(config: dict) -> dict:
    """The `INHERITED` options of a recorded run configuration (``config.json``); a value of the wrong type
    (a hand-edited or foreign file) is refused in one line."""

    config = flat_settings(config)
    if not isinstance(config, dict):
        raise UserError(f"the run configuration is a {type(config).__name__}, not a table of options")
    out = {}
    for key, expected in INHERITED.items():
        value = config.get(key)
        if value is None:
            continue
        if not type_ok(value, expected):
            raise UserError(f"the run configuration's {key} = {value!r} is not a {expected}; fix its config.json")
        out[key] = value
    return out


def budget_from_args(text: str, full, device="cpu", table=None):
    """``--budget`` on ``full``; a latency budget is predicted by ``table``, else by this ``device``'s table
    at batch 128 (timed on first use, kept in the user's cache)."""

    return parse_budget(text, full=full, table=table or (lambda: latency_table(device)))
