"""``guided models``, ``guided cost``, ``guided spec``: architectures and their costs."""

from __future__ import annotations

import argparse
import json

from guided.commands.common import Command, add_arch_args, add_threads_arg, spec_from_args
from guided.errors import UserError
from guided.operations import latency_table
from guided.storage.io import check_output, write_spec
from guided.storage.provenance import device_name, resolve_device
from guided.timing.latency import measure_step
from guided.timing.speed import condition_note, inference_throughput
from models import ArchSpec, cost, create_spec, list_models


# ---------------------------------------------------------------------- cost
def _cost_args(p: argparse.ArgumentParser) -> None:
    add_arch_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object (params, macs, flops, layers)")
    g = p.add_argument_group("measured speed")
    g.add_argument(
        "--measure",
        action="store_true",
        help="also time the forward pass: images/s at --batch-size, median of 5 passes after 2 warm-up passes",
    )
    g.add_argument(
        "--latency",
        action="store_true",
        help="predict one training step (forward + backward) from the per-layer latency table of --device "
        "(layers not yet in it are timed and cached) and print it beside a measured end-to-end step",
    )
    g.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per timed pass (default 256)")
    g.add_argument("--device", default="auto", help="where to time it: auto (CUDA when available), cpu, cuda:N")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="fp32 (default) or bf16 autocast")
    add_threads_arg(p)


def _cost(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    c = cost(spec)
    measured = _measured(spec, args) if args.measure or args.latency else {}
    if args.json:
        print(json.dumps({"name": spec.name, **c.to_dict(), **measured}, indent=2))
        return 0
    print(format_cost_table(spec, c))
    if "inference" in measured:
        speed = measured["inference"]
        print(
            f"inference {speed['images_per_s']:,.0f} images/s (batch {speed['batch_size']}, {speed['precision']}, "
            f"median of {speed['repeats']} passes: {1000 * speed['median_s']:.1f} ms) on {speed['device']}"
            + (f" [{note}]" if (note := condition_note(speed["condition"])) else "")
        )
    if "latency" in measured:
        lat = measured["latency"]
        print(
            f"training step (batch {lat['batch_size']}, forward + backward) on {lat['device']}: predicted "
            f"{1000 * lat['predicted_s']:.1f} ms from the per-layer table (conv and linear layers only), measured "
            f"{1000 * lat['measured_s']:.1f} ms end to end ({lat['error']:+.0%})"
        )
    return 0


def _measured(spec: ArchSpec, args: argparse.Namespace) -> dict:
    """``guided cost --measure`` / ``--latency``: timings of ``spec`` on ``--device``."""

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = resolve_device(args.device)
    out = {}
    if args.measure:
        out["inference"] = inference_throughput(spec, device, batch_size=args.batch_size, precision=args.precision)
    if args.latency:
        predicted = latency_table(device, batch_size=args.batch_size).predict(spec)
        measured = measure_step(spec, device, batch_size=args.batch_size)
        out["latency"] = {
            "predicted_s": predicted,
            "measured_s": measured,
            "error": predicted / measured - 1,
            "batch_size": args.batch_size,
            "device": device_name(device),
        }
    return out


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
    lines.append(
        f"params {c.params:,} ({c.params / 1e6:.3f}M)   MACs {c.macs:,} ({c.macs / 1e6:.1f}M)   "
        f"FLOPs {c.flops / 1e6:.1f}M"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------- spec
def _spec_args(p: argparse.ArgumentParser) -> None:
    add_arch_args(p)
    p.add_argument("--out", metavar="FILE", help="write the spec JSON here (default: print it)")


def _spec(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.out:
        check_output(args.out, folder=False, inputs=tuple(x for x in (args.spec,) if x))
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
        print(f"{name:<28} {spec.family:<12} {c.params / 1e6:8.3f}M params {c.macs / 1e6:9.1f}M MACs")
    return 0


COMMANDS = {
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
        "  guided cost --spec pruned/spec.json\n"
        "  guided cost --spec designs/guided.json --measure --device cpu",
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
