"""ImageNet ResNet as torchvision builds it (``resnet18/34/50/101/152``): 7x7 stem, projection shortcuts.

A 7x7 stride-2 stem conv with BatchNorm and ReLU, a 3x3 stride-2 max-pool, four stages of basic blocks
(two 3x3 convs) or bottleneck blocks (1x1, 3x3 with the stride, 1x1 to 4x the width: torchvision's
"ResNet v1.5"), global average pool and one linear layer. A block whose stride or width changes has a
projection shortcut (1x1 conv and BatchNorm, ``downsample``); the others add their input.

Spec entries: ``basic``: one per block, its first conv's width; ``bottleneck``: two per block, the 1x1 and
the 3x3 widths. Those are what channel pruning prunes: each is read only by the next conv in its block.
``stage_widths`` are the block output widths (every block of a stage adds to them, so pruning keeps them;
designs may change them) and ``stem_width`` the stem's width. Module and tensor names follow
torchvision's but for the stem (``stem.conv``, ``stem.bn``) and the stages (``stages.0`` is ``layer1``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.blocks import initialised
from models.cost import Layer, conv_out
from models.family import Family, register_family, residual_depth
from models.groups import STEM, STREAM, ChannelGroup, conv_group, coupled_group
from models.spec import ArchSpec, scale_width

__all__ = [
    "TVResNet",
    "TV_RESNET_BLOCKS",
    "tvresnet_spec",
    "build_tvresnet",
    "tvresnet_layers",
    "tvresnet_groups",
    "tvresnet_coupled_groups",
]

#: Blocks per stage and block type of torchvision's ResNets, by depth.
TV_RESNET_BLOCKS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_BASE = (64, 128, 256, 512)


def tvresnet_spec(
    depth: int,
    *,
    width_mult: float = 1.0,
    num_classes: int = 1000,
    in_channels: int = 3,
    input_size: int = 224,
) -> ArchSpec:
    """An unpruned torchvision ResNet spec of ``depth`` (18, 34, 50, 101, 152), widths times ``width_mult``."""
    block, counts = TV_RESNET_BLOCKS[depth]
    widths = [scale_width(w, width_mult) for w in _BASE]
    per_block = (lambda w: (w,)) if block == "basic" else (lambda w: (w, w))
    return ArchSpec(
        family="tvresnet",
        block=block,
        stages=tuple(tuple(x for _ in range(n) for x in per_block(w)) for w, n in zip(widths, counts)),
        stage_widths=tuple(w * (4 if block == "bottleneck" else 1) for w in widths),
        stem_width=scale_width(64, width_mult),
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
    )


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_ch)


class Block(nn.Module):
    """A basic block (``widths`` one entry) or a bottleneck (two), with a projection shortcut if needed."""

    def __init__(self, in_ch: int, widths: tuple[int, ...], out_ch: int, stride: int) -> None:
        super().__init__()
        if len(widths) == 1:
            self.conv1, self.bn1 = _conv_bn(in_ch, widths[0], 3, stride)
            self.conv2, self.bn2 = _conv_bn(widths[0], out_ch, 3)
            self.convs = 2
        else:
            self.conv1, self.bn1 = _conv_bn(in_ch, widths[0], 1)
            self.conv2, self.bn2 = _conv_bn(widths[0], widths[1], 3, stride)
            self.conv3, self.bn3 = _conv_bn(widths[1], out_ch, 1)
            self.convs = 3
        self.downsample = nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride)) if stride > 1 or in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for i in range(1, self.convs + 1):
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
            if i < self.convs:
                out = torch.relu(out)
        shortcut = self.downsample(x) if self.downsample is not None else x
        return torch.relu(out + shortcut)


class TVResNet(nn.Module):
    """torchvision-style ResNet built from a spec; ``model.spec`` is that spec."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = nn.Sequential()
        conv, bn = _conv_bn(spec.in_channels, spec.stem_width, 7, 2)
        self.stem.add_module("conv", conv)
        self.stem.add_module("bn", bn)
        self.stem.add_module("relu", nn.ReLU(inplace=True))
        self.stem.add_module("pool", nn.MaxPool2d(3, 2, 1))
        k = 2 if spec.block == "bottleneck" else 1
        stages, in_ch = [], spec.stem_width
        for s, entries in enumerate(spec.stages):
            blocks = []
            for b in range(len(entries) // k):
                stride = 2 if s and not b else 1
                blocks.append(Block(in_ch, entries[b * k : (b + 1) * k], spec.stage_widths[s], stride))
                in_ch = spec.stage_widths[s]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(in_ch, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


build_tvresnet = initialised(TVResNet, bn_weight=1.0, origin="torchvision")


def tvresnet_layers(spec: ArchSpec) -> list[Layer]:
    """Weight layers of a torchvision-style ResNet spec, named as in `TVResNet`."""
    size = conv_out(spec.input_size, 7, 2)
    rows = [
        Layer("stem.conv", "conv", -1, spec.in_channels, spec.stem_width, 7, 2, size),  # at twice stage 0's size
        Layer("stem.bn", "bn", -1, spec.stem_width, spec.stem_width, out_size=size),
    ]
    size = conv_out(size, 3, 2)  # the max-pool
    k = 2 if spec.block == "bottleneck" else 1
    in_ch = spec.stem_width
    for s, entries in enumerate(spec.stages):
        out = spec.stage_widths[s]
        for b in range(len(entries) // k):
            stride = 2 if s and not b else 1
            p = f"stages.{s}.{b}"
            widths = entries[b * k : (b + 1) * k]
            convs = [(in_ch, widths[0], 3, stride), (widths[0], out, 3, 1)]
            if k == 2:
                convs = [(in_ch, widths[0], 1, 1), (widths[0], widths[1], 3, stride), (widths[1], out, 1, 1)]
            block_size = size
            for i, (cin, cout, kernel, st) in enumerate(convs, 1):
                block_size = conv_out(block_size, kernel, st)
                rows.append(Layer(f"{p}.conv{i}", "conv", s, cin, cout, kernel, st, block_size))
                rows.append(Layer(f"{p}.bn{i}", "bn", s, cout, cout, out_size=block_size))
            if stride > 1 or in_ch != out:
                rows.append(Layer(f"{p}.downsample.0", "conv", s, in_ch, out, 1, stride, block_size))
                rows.append(Layer(f"{p}.downsample.1", "bn", s, out, out, out_size=block_size))
            size, in_ch = block_size, out
    rows.append(Layer("fc", "linear", -1, in_ch, spec.num_classes))
    return rows


def tvresnet_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """Each inner conv's filters, read only by the next conv of its block."""
    k = 2 if spec.block == "bottleneck" else 1
    return [
        conv_group(
            s,
            i,
            w,
            f"stages.{s}.{i // k}.conv{i % k + 1}",
            f"stages.{s}.{i // k}.bn{i % k + 1}",
            f"stages.{s}.{i // k}.conv{i % k + 2}",
        )
        for s, entries in enumerate(spec.stages)
        for i, w in enumerate(entries)
    ]


def tvresnet_coupled_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """Every group of `tvresnet_groups`, then each stage's block outputs (with its projection shortcut's conv
    and BN) and the stem's channels: one group with the first stage's outputs where its first block adds the
    stem to them (basic blocks), one of their own where that block projects them (bottlenecks)."""
    k = 2 if spec.block == "bottleneck" else 1
    out = f"conv{k + 1}", f"bn{k + 1}"
    last = len(spec.stages) - 1
    projects = [spec.stage_widths[0] != spec.stem_width] + [True] * last  # stage s > 0: stride 2
    stem = {"convs": ("stem.conv",), "bns": (("stem.bn", None),), "consumers": ("stages.0.0.conv1",)}
    groups = tvresnet_groups(spec)
    if projects[0]:
        consumers = (*stem["consumers"], "stages.0.0.downsample.0")
        groups.append(coupled_group((0, STEM), spec.stem_width, "stem", **{**stem, "consumers": consumers}))
    for s, entries in enumerate(spec.stages):
        blocks = [f"stages.{s}.{b}" for b in range(len(entries) // k)]
        convs = tuple(f"{p}.{out[0]}" for p in blocks)
        bns = tuple((f"{p}.{out[1]}", None) for p in blocks)
        if projects[s]:
            convs, bns = (*convs, f"{blocks[0]}.downsample.0"), (*bns, (f"{blocks[0]}.downsample.1", None))
        after = ("fc",) if s == last else (f"stages.{s + 1}.0.conv1", f"stages.{s + 1}.0.downsample.0")
        consumers = tuple(f"{p}.conv1" for p in blocks[1:]) + after
        merged = s == 0 and not projects[0]
        if merged:
            convs, bns, consumers = (*stem["convs"], *convs), (*stem["bns"], *bns), (*stem["consumers"], *consumers)
        groups.append(
            coupled_group(
                (s, STREAM),
                spec.stage_widths[s],
                f"stages.{s}",
                convs=convs,
                bns=bns,
                consumers=consumers,
                ties=((0, STEM),) if merged else (),
                apart=((0, STEM),) if s == 0 and projects[0] else (),
            )
        )
    return groups


register_family(
    Family(
        name="tvresnet",
        blocks={"basic": 1, "bottleneck": 2},
        build=build_tvresnet,
        layers=tvresnet_layers,
        groups=tvresnet_groups,
        coupled=tvresnet_coupled_groups,
        depth=residual_depth,
        check=ArchSpec.check_blocks,
        spec_name=lambda spec: f"resnet{spec.depth}",  # torchvision's names
        halvings=lambda spec: len(spec.stages) + 1,  # stem conv and max-pool, then every stage but the first
        design="projected",
    )
)
