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
def add_arch_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--arch NAME [...]`` or ``--spec FILE``: how every subcommand names an architecture."""
    g = p.add_argument_group("architecture (--arch or --spec)")
    src = g.add_mutually_exclusive_group(required=required)
    src.add_argument("--arch", metavar="NAME", help="registered model name (see `guided models`)")
    src.add_argument("--spec", metavar="FILE", help="ArchSpec JSON file (from `guided spec`, pruning or design)")
    g.add_argument("--num-classes", type=int, default=10, metavar="N", help="classifier outputs (default 10)")
    g.add_argument("--width-mult", type=float, default=1.0, metavar="X", help="scale every width (default 1.0)")
    g.add_argument("--head", choices=["l1", "slim"], help="VGG classifier: l1 (default) or slim (one Linear)")
    g.add_argument("--input-size", type=int, metavar="PX", help="input side in pixels (default: the model's, 32)")
    g.add_argument("--in-channels", type=int, default=3, metavar="C", help="input image channels (default 3)")


def spec_from_args(args: argparse.Namespace) -> ArchSpec:
    """The spec named by `add_arch_args` options."""
    if args.spec:
        return read_spec(args.spec)
    if args.num_classes < 1:
        raise UserError(f"--num-classes must be at least 1, got {args.num_classes}")
    if args.width_mult <= 0:
        raise UserError(f"--width-mult must be positive, got {args.width_mult}")
    return create_spec(
        args.arch,
        num_classes=args.num_classes,
        width_mult=args.width_mult,
        head=args.head,
        input_size=args.input_size,
        in_channels=args.in_channels,
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
    """The full parser: one subparser per entry of `COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="guided",
        description="Pruning as architecture discovery: train, prune, summarise, design, search.",
    )
    parser.add_argument("--version", action="version", version=f"guided {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=cmd.help,
            description=cmd.help[0].upper() + cmd.help[1:] + ".",
            epilog=f"examples:\n  {cmd.examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_args(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``guided`` command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except USER_ERRORS as exc:
        print(f"guided {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"guided {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
