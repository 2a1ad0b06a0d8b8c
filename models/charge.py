"""What each prunable channel costs: every layer's parameters or MACs shared out among the channels it reads
and writes, so that cost-aware pruning can rank channels by importance per unit of cost.

A conv or linear layer's cost is bilinear in its input and output widths, so it cannot be charged in full to
both sides without counting it twice. The rule: a layer whose input channels and output channels both belong
to channel groups gives half its cost to each side; a layer with only one prunable side gives it all of its
cost; each side's share is split evenly over the layer's channels on that side. A BatchNorm is charged to
the group it scales. Summed over every channel of every group, the charges are exactly the cost of the
layers that touch a group (`prunable_cost`): nothing is charged twice or missed. A channel whose
neighbours are not prunable (the inner channels of a residual block) is charged exactly what removing it
saves.

A coupled group (a residual width) is charged for every layer it writes, reads or scales directly; in a
pre-activation network the BatchNorms and convs it reads through channel selections stay charged to the
selections' groups, so its charge there understates what removing one of its channels saves.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.groups import ChannelGroup
from models.registry import channel_groups, cost
from models.spec import ArchSpec

__all__ = ["channel_charges", "prunable_cost", "COST_KINDS"]

COST_KINDS = ("params", "macs")

Key = tuple[int, int]


def channel_charges(
    spec: ArchSpec,
    kind: str = "macs",
    groups: list[ChannelGroup] | None = None,
    layer_costs: Mapping[str, float] | None = None,
) -> dict[Key, float]:
    """Cost charged to one channel of each group (all channels of a group carry the same charge).

    Args:
        spec: the architecture.
        kind: ``params`` or ``macs``; any other name needs ``layer_costs``.
        groups: the groups to charge (default: all of ``spec``'s channel groups); layers touching none of
            them are not charged.
        layer_costs: each layer's cost by name (e.g. measured seconds, `guided.timing.latency`), instead of its
            counted params or MACs; layers not named cost nothing.

    Example:
        >>> from models import create_spec
        >>> spec = create_spec("resnet20")
        >>> charges = channel_charges(spec, "macs")
        >>> round(charges[(0, 0)])  # conv1's output channel and conv2's input slice: 2 x 16 x 9 x 32 x 32
        294912
    """
    if kind not in COST_KINDS and layer_costs is None:
        raise ValueError(f"cost kind must be one of {COST_KINDS}, or give layer_costs; got {kind!r}")
    groups = channel_groups(spec) if groups is None else groups
    writes = {conv: g for g in groups for conv in g.producers}  # layer -> the group of its output channels
    reads = {name: g for g in groups for name in g.readers}  # layer -> the group of its input channels
    scales = {bn: g for g in groups for bn, via in g.scales if via is None}
    inside = {name: g for g in groups for name in g.inner}  # per-channel layers: all theirs
    charges = {g.key: 0.0 for g in groups}
    for row in cost(spec).layers:
        name = row["name"]
        amount = float(layer_costs.get(name, 0.0)) if layer_costs is not None else float(row[kind])
        if name in inside:
            charges[inside[name].key] += amount / row["out_ch"]
            continue
        if row["kind"] == "bn":
            if name in scales:
                charges[scales[name].key] += amount / row["out_ch"]
            continue
        sides = [g for g in (writes.get(name), reads.get(name)) if g]
        for g in sides:
            charges[g.key] += amount / len(sides) / g.width
    return charges


def prunable_cost(spec: ArchSpec, kind: str = "macs", groups: list[ChannelGroup] | None = None) -> float:
    """The cost of every layer that writes, reads or scales a channel of ``groups`` (default: all)."""
    groups = channel_groups(spec) if groups is None else groups
    touched = {c for g in groups for c in g.producers} | {r for g in groups for r in g.readers}
    touched |= {bn for g in groups for bn, via in g.scales if via is None} | {name for g in groups for name in g.inner}
    return float(sum(row[kind] for row in cost(spec).layers if row["name"] in touched))
