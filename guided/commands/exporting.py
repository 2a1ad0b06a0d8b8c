"""``guided export``: a network guided wrote, in a format that runs without guided."""

from __future__ import annotations

import argparse

from guided.commands.common import Command
from guided.storage.export import FORMATS, export
from guided.storage.folders import PrunedFolder
from guided.storage.io import check_output
from guided.storage.loading import load


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="PATH", help="a run, pruned or design folder, or a spec .json file")
    p.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="torchscript, pt2 (torch.export), torchvision (a network from it) or onnx",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    p.add_argument("--weights", metavar="FILE", help="a state_dict for a spec file or a weightless folder")
    p.add_argument(
        "--torchvision",
        metavar="NAME",
        help="with --format torchvision: the torchvision network it came from (default: what the pruned folder "
        "records)",
    )


def _export(args: argparse.Namespace) -> int:
    check_output(args.out, folder=False, inputs=tuple(x for x in (args.source, args.weights) if x))
    name = args.torchvision or _torchvision_source(args.source)
    done = export(load(args.source, args.weights), args.format, args.out, torchvision=name)
    diff = done["max_abs_diff"]
    checked = f"max difference {diff:.1e}, {done['checked_with']}" if diff is not None else done["checked_with"]
    print(f"wrote {done['out']} ({args.format}; reloaded and run against the network: {checked})")
    return 0


def _torchvision_source(path: str) -> str | None:
    """The torchvision network a pruned folder was pruned from, as its ``prune.json`` records it."""

    folder = PrunedFolder(path)
    if not folder.complete():
        return None
    name = (folder.read_record().get("source") or {}).get("torchvision")
    return name if isinstance(name, str) else None


COMMANDS = {
    "export": Command(
        "write a trained, pruned or designed network as TorchScript, torch.export (pt2), torchvision or ONNX",
        "guided export pruned/slim60 --format torchscript --out slim60.ts\n"
        "  guided export pruned/r50 --format torchvision --out r50-pruned.pt   (pruned with --torchvision)\n"
        "  guided export runs/base --format pt2 --out base.pt2\n"
        "  guided export pruned/slim60 --format onnx --out slim60.onnx   (pip install -e '.[export]')",
        _export_args,
        _export,
    ),
}
