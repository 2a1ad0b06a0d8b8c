"""CIFAR DenseNet (Huang et al. 2017) with per-layer input channel selection, as Network Slimming uses it.

A 3x3 stem conv, dense blocks whose layers each add ``growth`` channels to a concatenated feature map,
transitions (select-BN-ReLU-1x1 conv-2x2 average pool) between blocks, and a closing select-BN-ReLU,
global average pool and linear layer. ``basic`` layers (DenseNet-40) are select-BN-ReLU-3x3 conv;
``bottleneck`` layers (DenseNet-BC-100) are select-BN-ReLU-1x1 conv (4 x growth)-BN-ReLU-3x3 conv, with
transitions halving the width.

Spec entries per stage: for each dense layer, the input channels it keeps (and, for bottleneck layers,
its 1x1 width); then one entry for the closing transition or final BN (channels it keeps).
``stage_widths`` are the transition output widths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import ChannelSelect, StagedNet, initialised
from models.cost import Layer
from models.family import Family, register_family
from models.groups import ChannelGroup, conv_group, select_group
from models.spec import ArchSpec, SpecError, check_positive, entries_per_unit, scale_width

__all__ = ["DenseNet", "densenet_spec", "build_densenet", "densenet_layers", "densenet_groups"]


def densenet_spec(
    layers_per_stage: int,
    *,
    block: str,
    growth: int = 12,
    compression: float = 1.0,
    width_mult: float = 1.0,
    num_stages: int = 3,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
) -> ArchSpec:
    """An unpruned DenseNet spec; the stem has 2 x growth channels, transitions keep ``compression``."""
    growth = scale_width(growth, width_mult)
    bottleneck = 4 * growth
    stem = 2 * growth
    stages, transitions, entering = [], [], stem
    for s in range(num_stages):
        entries = []
        for i in range(layers_per_stage):
            entries += [entering + i * growth] + ([bottleneck] if block == "bottleneck" else [])
        total = entering + layers_per_stage * growth
        entries.append(total)
        stages.append(entries)
        if s < num_stages - 1:
            entering = int(total * compression)
            transitions.append(entering)
    return ArchSpec(
        family="densenet",
        block=block,
        growth=growth,
        stages=stages,
        stage_widths=transitions,
        stem_width=stem,
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
    )


class DenseLayer(nn.Module):
    """One dense layer; returns its input with ``growth`` new channels appended."""

    def __init__(self, in_ch: int, widths: tuple[int, ...], growth: int) -> None:
        super().__init__()
        kept = widths[0]
        self.select = ChannelSelect(in_ch, kept)
        self.bn1 = nn.BatchNorm2d(kept)
        self.bottleneck = len(widths) == 2
        if self.bottleneck:
            self.conv1 = nn.Conv2d(kept, widths[1], 1, bias=False)
            self.bn2 = nn.BatchNorm2d(widths[1])
            self.conv2 = nn.Conv2d(widths[1], growth, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(kept, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(torch.relu_(self.bn1(self.select(x))))
        if self.bottleneck:
            out = self.conv2(torch.relu_(self.bn2(out)))
        return torch.cat([x, out], 1)


class Closing(nn.Module):
    """Select-BN-ReLU that closes a stage, then (transitions only) a 1x1 conv and 2x2 average pool."""

    def __init__(self, in_ch: int, kept: int, out_ch: int | None) -> None:
        super().__init__()
        self.select = ChannelSelect(in_ch, kept)
        self.bn = nn.BatchNorm2d(kept)
        self.conv = nn.Conv2d(kept, out_ch, 1, bias=False) if out_ch is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.bn(self.select(x)))
        return x if self.conv is None else F.avg_pool2d(self.conv(x), 2)


class DenseStage(nn.Module):
    """Dense layers followed by the stage's closing transition or final BN."""

    def __init__(self, layers: list[DenseLayer], close: Closing) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.close = close

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.close(self.layers(x))


class DenseNet(StagedNet):
    """DenseNet built from a spec; ``model.spec`` is that spec."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        k = entries_per_unit(spec.family, spec.block)
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(spec.in_channels, spec.stem_width, 3, 1, 1, bias=False))
        stages, in_ch = [], spec.stem_width
        for s, entries in enumerate(spec.stages):
            layers = []
            for i in range(spec.units_per_stage[s]):
                layers.append(DenseLayer(in_ch, entries[i * k : (i + 1) * k], spec.growth))
                in_ch += spec.growth
            last = s == len(spec.stages) - 1
            out = None if last else spec.stage_widths[s]
            stages.append(DenseStage(layers, Closing(in_ch, entries[-1], out)))
            in_ch = entries[-1] if last else out
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(in_ch, spec.num_classes)


build_densenet = initialised(DenseNet, bn_weight=0.5, origin="the Network Slimming code")


def densenet_layers(spec: ArchSpec) -> list[Layer]:
    """Weight layers of a DenseNet spec, named as in `DenseNet`."""
    size = spec.input_size
    rows = [Layer("stem.conv", "conv", 0, spec.in_channels, spec.stem_width, 3, 1, size)]
    k = entries_per_unit(spec.family, spec.block)
    g = spec.growth
    for s, entries in enumerate(spec.stages):
        for i in range(spec.units_per_stage[s]):
            p = f"stages.{s}.layers.{i}"
            kept = entries[i * k]
            rows.append(Layer(f"{p}.bn1", "bn", s, kept, kept, out_size=size))
            if k == 2:
                w = entries[i * k + 1]
                rows += [
                    Layer(f"{p}.conv1", "conv", s, kept, w, 1, 1, size),
                    Layer(f"{p}.bn2", "bn", s, w, w, out_size=size),
                    Layer(f"{p}.conv2", "conv", s, w, g, 3, 1, size),
                ]
            else:
                rows.append(Layer(f"{p}.conv1", "conv", s, kept, g, 3, 1, size))
        kept = entries[-1]
        rows.append(Layer(f"stages.{s}.close.bn", "bn", s, kept, kept, out_size=size))
        if s < len(spec.stages) - 1:
            rows.append(Layer(f"stages.{s}.close.conv", "conv", s, kept, spec.stage_widths[s], 1, 1, size))
            size //= 2
    rows.append(Layer("fc", "linear", -1, spec.stages[-1][-1], spec.num_classes))
    return rows


def densenet_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """Per dense layer: its input selection (and, for BC, the 1x1 conv's filters); then the closing BN."""
    k = entries_per_unit(spec.family, spec.block)
    groups = []
    for s, entries in enumerate(spec.stages):
        for i in range(spec.units_per_stage[s]):
            p = f"stages.{s}.layers.{i}"
            groups.append(select_group(s, i * k, entries[i * k], f"{p}.select", f"{p}.bn1", f"{p}.conv1"))
            if k == 2:
                groups.append(conv_group(s, i * k + 1, entries[i * k + 1], f"{p}.conv1", f"{p}.bn2", f"{p}.conv2"))
        last = s == len(spec.stages) - 1
        consumer = "fc" if last else f"stages.{s}.close.conv"
        groups.append(
            select_group(s, len(entries) - 1, entries[-1], f"stages.{s}.close.select", f"stages.{s}.close.bn", consumer)
        )
    return groups


def _check(spec: ArchSpec) -> None:
    check_positive("growth", spec.growth)
    check_positive("stem_width", spec.stem_width)
    if len(spec.stage_widths) != len(spec.stages) - 1:
        raise SpecError(
            f"{len(spec.stages)} dense blocks need {len(spec.stages) - 1} stage_widths "
            f"(transition output widths), got {len(spec.stage_widths)}"
        )
    for s, w in enumerate(spec.stage_widths):
        check_positive(f"stage_widths[{s}]", w)
    k = entries_per_unit(spec.family, spec.block)
    for s, stage in enumerate(spec.stages):
        if len(stage) < k + 1 or (len(stage) - 1) % k:
            raise SpecError(
                f"stages[{s}] has {len(stage)} widths; a dense block of n layers takes {k}*n + 1 "
                f"(the last one for the closing transition or final BN)"
            )
        entering = spec.stem_width if s == 0 else spec.stage_widths[s - 1]
        for i in [*range(0, len(stage) - 1, k), len(stage) - 1]:
            available = entering + (i // k) * spec.growth
            if stage[i] > available:
                raise SpecError(
                    f"stages[{s}][{i}] keeps {stage[i]} input channels but only {available} are available there"
                )


def _depth(spec: ArchSpec, units: int) -> int:
    per_layer = 2 if spec.block == "bottleneck" else 1
    return per_layer * units + len(spec.stages) + 1  # stem, transitions, classifier


register_family(
    Family(
        name="densenet",
        blocks={"basic": 1, "bottleneck": 2},
        build=build_densenet,
        layers=densenet_layers,
        groups=densenet_groups,
        depth=_depth,
        check=_check,
        closing=lambda spec, stage: 1,  # the transition, or the final BN
        spec_name=lambda spec: f"densenet-bc{spec.depth}" if spec.block == "bottleneck" else f"densenet{spec.depth}",
        options=frozenset({"growth"}),
        design=None,  # its stages share one growth rate: no design rule yet
    )
)
