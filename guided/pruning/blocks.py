"""Block pruning for Sparse Structure Selection (Huang & Wang, ECCV 2018): remove whole residual blocks.

A gated network (``spec.gated``) trained with `guided.training.hooks.GateSparsity` has scalar gates on its blocks'
residual branches, many driven to zero. `prune_blocks` removes the blocks with the smallest gates, so
depth changes; the other gates are folded into the weights (ResNet: the branch's last BatchNorm;
PreResNet: its last conv), and the result is an ordinary ungated spec. Only blocks whose shortcut is an
identity can go: removing a stride-2 or widening block would change the feature maps.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from guided.errors import UserError
from guided.pruning.result import PruneResult, cost_change
from models import build, entries_per_unit

__all__ = ["prune_blocks", "block_gates"]


def block_gates(model: nn.Module) -> list[dict]:
    """Every block's gate: ``stage``, ``block``, ``gate`` value and whether it is ``removable``."""
    spec = model.spec
    if not spec.gated:
        raise UserError(f"{spec.name} has no block gates: train it with --sparsity-gates GAMMA first")
    rows = []
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            in_ch = spec.stem_width if (s == 0 and b == 0) else spec.stage_widths[s if b else s - 1]
            identity = (s == 0 or b > 0) and in_ch == spec.stage_widths[s]
            rows.append({"stage": s, "block": b, "gate": float(block.gate.detach()), "removable": identity})
    return rows


def prune_blocks(model: nn.Module, *, ratio: float | None = None, threshold: float | None = None, **_: object):
    """Remove residual blocks with small gates.

    Args:
        model: a gated ResNet or PreResNet (not modified).
        ratio: remove this fraction of the removable blocks, those with the smallest |gate| (a stage always
            keeps at least one block).
        threshold: or remove every removable block whose |gate| is below this.

    Returns:
        A `guided.pruning.PruneResult` whose model is ungated and shallower.
    """

    if (ratio is None) == (threshold is None):
        raise UserError("sss removes blocks: give either --ratio R (fraction of removable blocks) or --threshold T")
    spec = model.spec
    gates = block_gates(model)
    removable = sorted((r for r in gates if r["removable"]), key=lambda r: abs(r["gate"]))
    if ratio is not None:
        if not 0 < ratio < 1:
            raise UserError(f"ratio must lie in (0, 1), got {ratio}")
        target = int(ratio * len(removable))
    else:
        removable = [r for r in removable if abs(r["gate"]) < threshold]
        target = len(removable)
    left = {s: n for s, n in enumerate(spec.units_per_stage)}
    gone = set()
    for r in removable:  # smallest |gate| first; every stage keeps at least one block
        if len(gone) < target and left[r["stage"]] > 1:
            gone.add((r["stage"], r["block"]))
            left[r["stage"]] -= 1

    k = entries_per_unit(spec.family, spec.block)
    state = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
    new_state, stages = {}, []
    for s, entries in enumerate(spec.stages):
        kept_blocks = [b for b in range(spec.units_per_stage[s]) if (s, b) not in gone]
        new_entries = [w for b in kept_blocks for w in entries[b * k : (b + 1) * k]]
        new_entries += list(entries[spec.units_per_stage[s] * k :])  # the final BN entry, if any
        stages.append(new_entries)
        for new_b, old_b in enumerate(kept_blocks):
            _fold_gate(state, spec, f"stages.{s}.{old_b}")
            prefix = re.compile(rf"^stages\.{s}\.{old_b}\.")
            for name in [n for n in state if prefix.match(n)]:
                new_state[prefix.sub(f"stages.{s}.{new_b}.", name)] = state[name]
    for name, t in state.items():
        if not name.startswith("stages."):
            new_state[name] = t
    new_spec = spec.replace(stages=stages, gated=False)
    new = build(new_spec)
    new.load_state_dict(new_state, strict=True)
    new.train(model.training)
    rows = [{**r, "kept": (r["stage"], r["block"]) not in gone} for r in gates]
    info = {
        "method": "sss",
        "allocation": "ratio" if ratio is not None else "threshold",
        "ratio": ratio,
        "threshold": threshold,
        "blocks_removed": len(gone),
        **cost_change(spec, new_spec),
    }
    return PruneResult(new, rows, info)


def _fold_gate(state: dict[str, torch.Tensor], spec, block: str) -> None:
    """Multiply the gate into the branch's last linear map and drop it from the state."""
    gate = state.pop(f"{block}.gate")
    if spec.family == "resnet":
        state[f"{block}.bn2.weight"] = state[f"{block}.bn2.weight"] * gate
        state[f"{block}.bn2.bias"] = state[f"{block}.bn2.bias"] * gate
    else:
        last = "conv3" if spec.block == "bottleneck" else "conv2"
        state[f"{block}.{last}.weight"] = state[f"{block}.{last}.weight"] * gate
