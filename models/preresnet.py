"""CIFAR pre-activation ResNet (He et al. 2016b) with the channel selection Network Slimming needs.

A 3x3 stem conv (no BN), three stages of pre-activation blocks, then BN-ReLU, global average pool and one
linear layer. Every BN that opens a block reads the block's input, which the shortcut also uses and so
cannot shrink; a `ChannelSelect` before that BN lets Network Slimming keep only some of its channels.
Shortcuts are identities, or a 1x1 conv (no BN) where the stride or the width changes, as in the Network
Slimming code.

Spec entries per block: ``basic`` (PreResNet-56/110, 6n+2): kept input channels, first 3x3 conv width;
``bottleneck`` (PreResNet-164, 9n+2): kept input channels, 1x1 width, 3x3 width. The last stage ends with
one more entry: channels kept by the final BN. ``stage_widths`` are the residual widths (for bottlenecks,
4x the 3x3 width: 64, 128, 256).
"""

from __future__ import annotations

import torch
from torch import nn

from models.blocks import ChannelSelect, StagedNet, initialised
from models.cost import Layer, conv_out
from models.family import Family, register_family, residual_depth
from models.groups import STEM, STREAM, ChannelGroup, conv_group, coupled_group, select_group
from models.spec import ArchSpec, SpecError, entries_per_unit, scale_width

__all__ = [
    "PreResNet",
    "preresnet_spec",
    "build_preresnet",
    "preresnet_layers",
    "preresnet_groups",
    "preresnet_coupled_groups",
]


def preresnet_spec(
    blocks_per_stage: int,
    *,
    block: str,
    base: tuple[int, ...] = (16, 32, 64),
    width_mult: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
) -> ArchSpec:
    """An unpruned pre-activation ResNet spec (bottleneck blocks expand the base widths 4x)."""
    mids = tuple(scale_width(w, width_mult) for w in base)
    expand = 4 if block == "bottleneck" else 1
    outs = tuple(m * expand for m in mids)
    stages, in_ch = [], mids[0]
    for mid, out in zip(mids, outs):
        entries = []
        for _ in range(blocks_per_stage):
            entries += [in_ch, mid] + ([mid] if block == "bottleneck" else [])
            in_ch = out
        stages.append(entries)
    stages[-1].append(outs[-1])  # the final BN keeps every channel
    return ArchSpec(
        family="preresnet",
        block=block,
        stages=stages,
        stage_widths=outs,
        stem_width=mids[0],
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
    )


class PreActBlock(nn.Module):
    """Select-BN-ReLU-conv, repeated (2 convs for basic, 1x1-3x3-1x1 for bottleneck), plus a shortcut."""

    def __init__(
        self, in_ch: int, widths: tuple[int, ...], out_ch: int, stride: int, bottleneck: bool, gated: bool = False
    ) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.ones(())) if gated else None
        kept = widths[0]
        self.select = ChannelSelect(in_ch, kept)
        self.bn1 = nn.BatchNorm2d(kept)
        if bottleneck:
            _, w1, w2 = widths
            self.conv1 = nn.Conv2d(kept, w1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(w1)
            self.conv2 = nn.Conv2d(w1, w2, 3, stride, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(w2)
            self.conv3 = nn.Conv2d(w2, out_ch, 1, bias=False)
        else:
            _, w1 = widths
            self.conv1 = nn.Conv2d(kept, w1, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(w1)
            self.conv2 = nn.Conv2d(w1, out_ch, 3, 1, 1, bias=False)
        self.bottleneck = bottleneck
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(torch.relu_(self.bn1(self.select(x))))
        out = self.conv2(torch.relu_(self.bn2(out)))
        if self.bottleneck:
            out = self.conv3(torch.relu_(self.bn3(out)))
        if self.gate is not None:
            out = out * self.gate
        return out + (x if self.downsample is None else self.downsample(x))


class Final(nn.Module):
    """The closing select-BN-ReLU before pooling."""

    def __init__(self, in_ch: int, kept: int) -> None:
        super().__init__()
        self.select = ChannelSelect(in_ch, kept)
        self.bn = nn.BatchNorm2d(kept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.bn(self.select(x)))


class PreResNet(StagedNet):
    """Pre-activation ResNet built from a spec; ``model.spec`` is that spec."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        bottleneck = spec.block == "bottleneck"
        k = entries_per_unit(spec.family, spec.block)
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(spec.in_channels, spec.stem_width, 3, 1, 1, bias=False))
        stages, in_ch = [], spec.stem_width
        for s, entries in enumerate(spec.stages):
            blocks = []
            for b in range(spec.units_per_stage[s]):
                stride = 2 if s and not b else 1
                widths = entries[b * k : (b + 1) * k]
                blocks.append(PreActBlock(in_ch, widths, spec.stage_widths[s], stride, bottleneck, spec.gated))
                in_ch = spec.stage_widths[s]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.final = Final(in_ch, spec.stages[-1][-1])
        self.fc = nn.Linear(spec.stages[-1][-1], spec.num_classes)


build_preresnet = initialised(PreResNet, bn_weight=0.5, origin="the Network Slimming code")


def preresnet_layers(spec: ArchSpec) -> list[Layer]:
    """Weight layers of a pre-activation ResNet spec, named as in `PreResNet`."""
    size = spec.input_size
    rows = [Layer("stem.conv", "conv", 0, spec.in_channels, spec.stem_width, 3, 1, size)]
    k = entries_per_unit(spec.family, spec.block)
    in_ch = spec.stem_width
    for s, entries in enumerate(spec.stages):
        out = spec.stage_widths[s]
        for b in range(spec.units_per_stage[s]):
            stride = 2 if s and not b else 1
            p = f"stages.{s}.{b}"
            kept, *mids = entries[b * k : (b + 1) * k]
            rows.append(Layer(f"{p}.bn1", "bn", s, kept, kept, out_size=size))
            new_size = conv_out(size, 3, stride)
            if spec.block == "bottleneck":
                w1, w2 = mids
                rows += [
                    Layer(f"{p}.conv1", "conv", s, kept, w1, 1, 1, size),
                    Layer(f"{p}.bn2", "bn", s, w1, w1, out_size=size),
                    Layer(f"{p}.conv2", "conv", s, w1, w2, 3, stride, new_size),
                    Layer(f"{p}.bn3", "bn", s, w2, w2, out_size=new_size),
                    Layer(f"{p}.conv3", "conv", s, w2, out, 1, 1, new_size),
                ]
            else:
                (w1,) = mids
                rows += [
                    Layer(f"{p}.conv1", "conv", s, kept, w1, 3, stride, new_size),
                    Layer(f"{p}.bn2", "bn", s, w1, w1, out_size=new_size),
                    Layer(f"{p}.conv2", "conv", s, w1, out, 3, 1, new_size),
                ]
            if stride != 1 or in_ch != out:
                rows.append(Layer(f"{p}.downsample", "conv", s, in_ch, out, 1, stride, new_size))
            if spec.gated:
                rows.append(Layer(p, "gate", s, 1, 1))
            size, in_ch = new_size, out
    last = len(spec.stages) - 1
    kept = spec.stages[-1][-1]
    rows.append(Layer("final.bn", "bn", last, kept, kept, out_size=size))
    rows.append(Layer("fc", "linear", -1, kept, spec.num_classes))
    return rows


def preresnet_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """Per block: the input selection (before bn1), then each inner conv's filters; last, the final BN."""
    k = entries_per_unit(spec.family, spec.block)
    groups = []
    for s, entries in enumerate(spec.stages):
        for b in range(spec.units_per_stage[s]):
            p = f"stages.{s}.{b}"
            e = b * k
            groups.append(select_group(s, e, entries[e], f"{p}.select", f"{p}.bn1", f"{p}.conv1"))
            for j in range(1, k):  # conv j produces channels normalised by bn(j+1) and read by conv(j+1)
                groups.append(
                    conv_group(s, e + j, entries[e + j], f"{p}.conv{j}", f"{p}.bn{j + 1}", f"{p}.conv{j + 1}")
                )
    last = len(spec.stages) - 1
    groups.append(select_group(last, len(spec.stages[-1]) - 1, spec.stages[-1][-1], "final.select", "final.bn", "fc"))
    return groups


def preresnet_coupled_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """Every group of `preresnet_groups`, then each stage's residual channels (and the stem's, a group of its
    own where the first block projects it): written by every block's last conv and the stage's projection,
    read by the next stage's projection and, through their channel selections, by every BN that opens a
    block (and the final BN). Those selections' index values are these channels, so pruning one renumbers
    them and drops the positions that selected a removed channel."""
    k = entries_per_unit(spec.family, spec.block)
    last_conv = f"conv{k}"
    last = len(spec.stages) - 1
    projects = [spec.stage_widths[0] != spec.stem_width] + [True] * last  # stage s > 0: stride 2

    def reader(s: int, b: int) -> tuple[tuple[str, str | None], tuple[str, tuple[int, int]]]:
        p = f"stages.{s}.{b}"
        return (f"{p}.bn1", f"{p}.select"), (f"{p}.select", (s, b * k))

    groups = preresnet_groups(spec)
    stem_readers = [reader(0, 0)]
    if projects[0]:
        groups.append(
            coupled_group(
                (0, STEM),
                spec.stem_width,
                "stem",
                convs=("stem.conv",),
                bns=tuple(r[0] for r in stem_readers),
                consumers=("stages.0.0.downsample",),
                selects=tuple(r[1] for r in stem_readers),
            )
        )
    for s in range(len(spec.stages)):
        n = spec.units_per_stage[s]
        blocks = [f"stages.{s}.{b}" for b in range(n)]
        readers = [reader(s, b) for b in range(1, n)]
        if s < last:
            readers.append(reader(s + 1, 0))
        else:
            readers.append((("final.bn", "final.select"), ("final.select", (last, len(spec.stages[last]) - 1))))
        convs = tuple(f"{p}.{last_conv}" for p in blocks) + ((f"{blocks[0]}.downsample",) if projects[s] else ())
        merged = s == 0 and not projects[0]
        if merged:
            convs, readers = ("stem.conv", *convs), [*stem_readers, *readers]
        groups.append(
            coupled_group(
                (s, STREAM),
                spec.stage_widths[s],
                f"stages.{s}",
                convs=convs,
                bns=tuple(r[0] for r in readers),
                consumers=(f"stages.{s + 1}.0.downsample",) if s < last else (),
                selects=tuple(r[1] for r in readers),
                ties=((0, STEM),) if merged else (),
                apart=((0, STEM),) if s == 0 and projects[0] else (),
            )
        )
    return groups


def _check(spec: ArchSpec) -> None:
    spec.check_blocks()
    k = entries_per_unit(spec.family, spec.block)
    for s, stage in enumerate(spec.stages):
        for b in range(spec.units_per_stage[s]):
            available = spec.block_input(s, b)
            if stage[b * k] > available:
                raise SpecError(
                    f"stages[{s}][{b * k}] keeps {stage[b * k]} input channels but only {available} "
                    f"enter block {b} of stage {s}"
                )
    if spec.stages[-1][-1] > spec.stage_widths[-1]:
        raise SpecError(
            f"the final BN keeps {spec.stages[-1][-1]} channels but the last stage has only {spec.stage_widths[-1]}"
        )


def fit_selections(spec: ArchSpec, stages: list[list[int]], fields: dict) -> None:
    """After pruning changed widths: no block's selection (nor the final BN's) keeps more than enters it."""
    k = entries_per_unit(spec.family, spec.block)
    widths, entering = fields["stage_widths"], fields["stem_width"]
    for s, entries in enumerate(stages):
        for b in range(spec.units_per_stage[s]):
            entries[b * k] = min(entries[b * k], entering)
            entering = widths[s]
    stages[-1][-1] = min(stages[-1][-1], widths[-1])


register_family(
    Family(
        name="preresnet",
        blocks={"basic": 2, "bottleneck": 3},
        build=build_preresnet,
        layers=preresnet_layers,
        groups=preresnet_groups,
        coupled=preresnet_coupled_groups,
        depth=residual_depth,
        check=_check,
        closing=lambda spec, stage: int(stage == len(spec.stages) - 1),  # the final BN's selection
        options=frozenset({"gated"}),
        design="preactivation",
        fit=fit_selections,
    )
)
