"""Coupled-group pruning checked against Torch-Pruning, at the same setting, on the same random weights.

Both tools prune torchvision ResNet-18 and MobileNetV2 (random weights from one seed, 10 classes) by L1 norm,
50% of the channels of every prunable group, the classifier left whole, each group's channels ranked by the
**mean over its producing convs of each filter's L1 norm** (guided's ``l1-norm`` with ``coupled=True``; for
Torch-Pruning a group importance that reads the same filters: `_ProducerL1`). Compared, per network: every
conv's kept width, the parameter and MAC counts, the kept channel indices (every weight of the two pruned
networks, after converting Torch-Pruning's into a guided network with `models.from_torchvision`) and the
outputs on one batch.

Torch-Pruning is not a dependency of guided: ``pip install torch-pruning`` first; without it this script says
so and exits 2.

Run: ``python benchmarks/peer_coupled.py`` writes ``results/benchmarks/peer_coupled.json`` (``--out`` to
change) with the code revision, the host and both tools' versions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guided.pruning import prune  # noqa: E402
from guided.storage.provenance import provenance  # noqa: E402
from models import cost, from_torchvision  # noqa: E402

NETWORKS = {"resnet18": "fc", "mobilenet_v2": "classifier.1"}
RATIO = 0.5
INPUT = 64


def _producer_l1(tp):
    class ProducerL1(tp.importance.Importance):
        """Mean over the group's producing convs (not depthwise) of each filter's L1 norm."""

        def __call__(self, group):
            rows = []
            for dep, idxs in group:
                layer, fn = dep.target.module, dep.handler
                if isinstance(layer, torch.nn.Conv2d) and layer.groups == 1 and fn == tp.prune_conv_out_channels:
                    rows.append(layer.weight.detach()[idxs].abs().sum(dim=(1, 2, 3)))
            if not rows:
                return None
            return torch.stack(rows).mean(0)

    return ProducerL1()


def _torch_pruning(tp, name: str, seed: int) -> torch.nn.Module:
    model = getattr(torchvision.models, name)(num_classes=10).eval()
    torch.manual_seed(seed)
    model.load_state_dict(_weights(name, seed))
    example = torch.randn(1, 3, INPUT, INPUT)
    ignored = [dict(model.named_modules())[NETWORKS[name]]]
    pruner = tp.pruner.BasePruner(
        model, example, importance=_producer_l1(tp), pruning_ratio=RATIO, ignored_layers=ignored, global_pruning=False
    )
    pruner.step()
    return model.eval()


def _weights(name: str, seed: int) -> dict:
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(num_classes=10)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # BN statistics and scales away from their constants, so every channel differs
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.state_dict()


def _guided(name: str, seed: int, coupled: bool) -> torch.nn.Module:
    model = getattr(torchvision.models, name)(num_classes=10)
    model.load_state_dict(_weights(name, seed))
    net = from_torchvision(model.eval(), input_size=INPUT).eval()
    return prune(net, "l1-norm", ratio=RATIO, coupled=coupled).model.eval()


def _widths(model: torch.nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def compare(tp, name: str, seed: int = 0) -> dict:
    """One network pruned by both tools: widths, costs, kept weights, outputs."""
    ours = _guided(name, seed, coupled=True)
    theirs = from_torchvision(_torch_pruning(tp, name, seed), input_size=INPUT).eval()
    full = from_torchvision(getattr(torchvision.models, name)(num_classes=10).eval(), input_size=INPUT)
    plain = _guided(name, seed, coupled=False)
    a, b = _widths(ours), _widths(theirs)
    differing = sorted(k for k in a if a[k] != b.get(k))
    same_keys = list(ours.state_dict()) == list(theirs.state_dict())
    unequal = [
        k
        for k, v in ours.state_dict().items()
        if same_keys and (v.shape != theirs.state_dict()[k].shape or not torch.equal(v, theirs.state_dict()[k]))
    ]
    x = torch.randn(3, 3, INPUT, INPUT, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        gap = float((ours(x) - theirs(x)).abs().max())
    c_full, c_ours, c_theirs, c_plain = (cost(m.spec) for m in (full, ours, theirs, plain))
    return {
        "network": name,
        "convs": len(a),
        "convs_with_other_width": differing,
        "same_spec": ours.spec == theirs.spec,
        "tensors_not_equal": unequal if same_keys else "different state_dict keys",
        "max_output_difference": gap,
        "params": {"full": c_full.params, "guided": c_ours.params, "torch_pruning": c_theirs.params},
        "macs": {"full": c_full.macs, "guided": c_ours.macs, "torch_pruning": c_theirs.macs},
        "kept_params": {
            "guided_coupled": round(c_ours.params / c_full.params, 4),
            "torch_pruning": round(c_theirs.params / c_full.params, 4),
            "guided_without_coupled": round(c_plain.params / c_full.params, 4),
        },
        "stage_widths": {"full": list(full.spec.stage_widths), "guided": list(ours.spec.stage_widths)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "peer_coupled.json"))
    args = p.parse_args(argv)
    try:
        import torch_pruning as tp
    except ImportError:
        message = "peer_coupled: Torch-Pruning is not installed; pip install torch-pruning, then run again"
        print(message, file=sys.stderr)
        return 2
    rows = [compare(tp, name) for name in NETWORKS]
    record = {
        "benchmark": "peer_coupled",
        "setting": f"L1 (mean over producing convs), {RATIO:.0%} of every prunable group, classifier kept, "
        f"random weights (seed 0), {INPUT}x{INPUT} inputs, 10 classes",
        "torch_pruning": tp.__version__,
        "provenance": provenance(),
        "networks": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    for r in rows:
        kept, unequal = r["kept_params"], r["tensors_not_equal"]
        print(
            f"{r['network']}: kept params guided {kept['guided_coupled']:.1%}, Torch-Pruning "
            f"{kept['torch_pruning']:.1%} (guided without coupled {kept['guided_without_coupled']:.1%}); "
            f"same spec {r['same_spec']}, convs of other width {len(r['convs_with_other_width'])}, "
            f"unequal tensors {len(unequal) if isinstance(unequal, list) else unequal}, "
            f"max output gap {r['max_output_difference']:.2e}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
