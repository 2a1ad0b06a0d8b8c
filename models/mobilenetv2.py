"""MobileNetV2 (Sandler et al., CVPR 2018): inverted residual blocks with depthwise convolutions.

A 3x3 stem conv, seven stages of inverted residual blocks, a last 1x1 conv (1280 wide), global average
pool and one linear layer; every conv is followed by BatchNorm, and by ReLU6 except a block's
projection. A block expands its input with a 1x1 conv to its *hidden* width, filters it with a 3x3
depthwise conv (stride 2 in some stages' first block), and projects it back with a 1x1 conv; where input
and output shapes agree, the input is added to the output. The first block (torchvision's expansion
ratio 1) has no expanding conv: its depthwise conv reads the stem's channels directly.

Spec entries: one per block, its hidden width (what channel pruning prunes: the expanding conv's filters,
the depthwise conv's channels, the projection's inputs). ``stages[0]`` is one block whose hidden width is
the stem's width (``stem_width`` stays 0); the last stage ends with one more entry, the last 1x1 conv's
width (read only by the classifier: prunable). ``stage_widths`` are the blocks' output widths, one per stage;
a residual run ties them, so channel pruning keeps them (designs may change them). The stem's channels
are kept too (their group is ``tied``): as in torchvision, a block adds its input to its output whenever
stride and widths allow, so the first block gains or loses its shortcut when the stem's width reaches or
leaves its output width; pruning must not change the function beyond dropping channels. ``strides`` holds the
stem's stride, then each stage's first-block stride: ``(2, 1, 2, 2, 2, 1, 2, 1)`` for 224-pixel ImageNet
inputs (torchvision's ``mobilenet_v2``), ``(1, 1, 1, 2, 2, 1, 2, 1)`` for 32-pixel CIFAR inputs (stem
stride 1 and no stride in the second stage, so the last stages work at 4x4).

Widths scale as torchvision's do: every width times ``width_mult`` rounded to a multiple of 8 (at least
8, and not below 90% of the exact product), hidden widths the input width times the expansion ratio 6,
and the last conv keeps 1280 channels below ``width_mult`` 1. At ``width_mult`` 1 and 1000 classes the ImageNet
spec has torchvision's 3,504,872 parameters. torchvision's classifier dropout (p = 0.2) is not part of the
network: the outputs equal torchvision's in eval mode.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from models.cost import Layer, conv_out
from models.family import Family, register_family
from models.groups import STREAM, ChannelGroup, bn_tensors, conv_group, coupled_group
from models.spec import ArchSpec, SpecError

__all__ = [
    "MobileNetV2",
    "INVERTED_RESIDUAL_SETTING",
    "mobilenetv2_spec",
    "build_mobilenetv2",
    "mobilenetv2_layers",
    "mobilenetv2_groups",
    "mobilenetv2_coupled_groups",
    "mobilenetv2_pattern_stages",
    "make_divisible",
]

#: torchvision's (expansion ratio, output width, blocks, first stride) per stage at 224 pixels.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
IMAGENET_STRIDES = (2, *(s for *_, s in INVERTED_RESIDUAL_SETTING))
CIFAR_STRIDES = (1, 1, 1, 2, 2, 1, 2, 1)


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10%
    below ``value``: torchvision's rule for MobileNet widths.

    Example:
        >>> make_divisible(32 * 0.25), make_divisible(24 * 0.35), make_divisible(1280)
        (8, 8, 1280)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def mobilenetv2_spec(
    *,
    strides: tuple[int, ...] = CIFAR_STRIDES,
    setting: tuple[tuple[int, int, int, int], ...] = INVERTED_RESIDUAL_SETTING,
    stem: int = 32,
    head: int = 1280,
    width_mult: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
) -> ArchSpec:
    """An unpruned MobileNetV2 spec with torchvision's widths scaled by ``width_mult``.

    Args:
        strides: the stem's stride, then each stage's first-block stride (`IMAGENET_STRIDES` or
            `CIFAR_STRIDES`); the strides in ``setting`` are not read.
        setting: (expansion ratio, output width, blocks, stride) per stage; the first stage's ratio is 1.
        stem: the stem's width before scaling.
        head: the last 1x1 conv's width before scaling (it does not shrink below ``width_mult`` 1); it closes
            the last stage's entries.
    """
    stem = make_divisible(stem * width_mult)
    stages, outs, in_ch = [], [], stem
    for t, c, n, _ in setting:
        out = make_divisible(c * width_mult)
        hidden = []
        for _ in range(n):
            hidden.append(int(round(in_ch * t)))
            in_ch = out
        stages.append(hidden)
        outs.append(out)
    stages[-1].append(make_divisible(head * max(1.0, width_mult)))
    return ArchSpec(
        family="mobilenetv2",
        block="inverted",
        stages=tuple(tuple(s) for s in stages),
        stage_widths=tuple(outs),
        strides=tuple(strides),
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
    )


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias), BatchNorm, and ReLU6 unless ``act`` is false; ``groups`` makes it depthwise."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.add_module("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))
        if act:
            self.add_module("relu", nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """[1x1 expand] - 3x3 depthwise - 1x1 project, plus the input where shapes agree."""

    def __init__(self, in_ch: int, hidden: int, out_ch: int, stride: int, expand: bool) -> None:
        super().__init__()
        self.expand = ConvBNReLU6(in_ch, hidden, 1) if expand else None
        self.dw = ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBNReLU6(hidden, out_ch, 1, act=False)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.dw(out))
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 built from a spec; ``model.spec`` is that spec."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = ConvBNReLU6(spec.in_channels, spec.stages[0][0], 3, spec.strides[0])
        stages, in_ch = [], spec.stages[0][0]
        for s, n in enumerate(spec.units_per_stage):
            blocks = []
            for b, h in enumerate(spec.stages[s][:n]):
                stride = spec.strides[s + 1] if b == 0 else 1
                blocks.append(InvertedResidual(in_ch, h, spec.stage_widths[s], stride, expand=s > 0))
                in_ch = spec.stage_widths[s]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.last = ConvBNReLU6(in_ch, spec.stages[-1][-1], 1)
        self.fc = nn.Linear(spec.stages[-1][-1], spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = self.last(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build_mobilenetv2(spec: ArchSpec) -> MobileNetV2:
    """Build and initialise as torchvision does: convs He normal (fan-out), BN scale 1 and bias 0, linear
    N(0, 0.01) with zero bias."""
    model = MobileNetV2(spec)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return model


def _conv_bn(
    rows: list[Layer],
    name: str,
    stage: int,
    in_ch: int,
    out_ch: int,
    kernel: int,
    stride: int,
    size: int,
    groups: int = 1,
) -> int:
    size = conv_out(size, kernel, stride)
    rows.append(Layer(f"{name}.conv", "conv", stage, in_ch, out_ch, kernel, stride, size, groups))
    rows.append(Layer(f"{name}.bn", "bn", stage, out_ch, out_ch, out_size=size))
    return size


def mobilenetv2_layers(spec: ArchSpec) -> list[Layer]:
    """Weight layers of a MobileNetV2 spec, named as in `MobileNetV2` (the stem counts in stage 0)."""
    rows: list[Layer] = []
    stem = spec.stages[0][0]
    size = _conv_bn(rows, "stem", 0, spec.in_channels, stem, 3, spec.strides[0], spec.input_size)
    in_ch = stem
    for s, n in enumerate(spec.units_per_stage):
        out = spec.stage_widths[s]
        for b, h in enumerate(spec.stages[s][:n]):
            p = f"stages.{s}.{b}"
            if s:
                _conv_bn(rows, f"{p}.expand", s, in_ch, h, 1, 1, size)
            size = _conv_bn(rows, f"{p}.dw", s, h, h, 3, spec.strides[s + 1] if b == 0 else 1, size, groups=h)
            _conv_bn(rows, f"{p}.project", s, h, out, 1, 1, size)
            in_ch = out
    last = len(spec.stages) - 1
    _conv_bn(rows, "last", last, in_ch, spec.stages[-1][-1], 1, 1, size)
    rows.append(Layer("fc", "linear", -1, spec.stages[-1][-1], spec.num_classes))
    return rows


def mobilenetv2_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """One group per block: its hidden channels, written by the expanding conv (the stem for the first
    block), filtered by the depthwise conv and read by the projection; and the last conv's filters."""
    groups = []
    for s, n in enumerate(spec.units_per_stage):
        for b, h in enumerate(spec.stages[s][:n]):
            p = f"stages.{s}.{b}"
            source = f"{p}.expand" if s else "stem"
            tensors = (
                (f"{source}.conv.weight", 0),
                *bn_tensors(f"{source}.bn"),
                (f"{p}.dw.conv.weight", 0),
                *bn_tensors(f"{p}.dw.bn"),
                (f"{p}.project.conv.weight", 1),
            )
            inner = (f"{p}.dw.conv", f"{p}.dw.bn")
            kind = "conv" if s else "tied"
            groups.append(
                ChannelGroup(s, b, h, kind, f"{source}.conv", f"{source}.bn", f"{p}.project.conv", tensors, inner)
            )
    last = len(spec.stages) - 1
    groups.append(conv_group(last, len(spec.stages[last]) - 1, spec.stages[last][-1], "last.conv", "last.bn", "fc"))
    return groups


def mobilenetv2_coupled_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """Every group of `mobilenetv2_groups`, the stem's one now prunable, then each residual run's channels:
    written by every block's projection and read by the next blocks' expanding convs (and the block after the
    run, or the last 1x1 conv). A run is a stage's blocks, and goes on into the next stage where that
    stage's first block adds its input to its output (stride 1, equal widths: the stem and the first two
    stages at ``width_mult`` 0.25 are one run); a run that starts at the stem takes in its channels too,
    which the first block's depthwise conv filters and its projection reads. A run whose first block keeps
    its stride at 1 must keep a width unlike its input's (`ChannelGroup.apart`): equal widths would give that
    block a residual."""
    groups = [dataclasses.replace(g, kind="conv") if g.kind == "tied" else g for g in mobilenetv2_groups(spec)]
    runs: list[dict] = []
    for s, n in enumerate(spec.units_per_stage):
        entering = spec.stages[0][0] if s == 0 else spec.stage_widths[s - 1]
        adds = spec.strides[s + 1] == 1 and entering == spec.stage_widths[s]
        blocks = [f"stages.{s}.{b}" for b in range(n)]
        if adds and s == 0:  # the stem's channels start the run
            stem = groups.pop(0)
            run = {"convs": ["stem.conv"], "bns": [("stem.bn", None)], "consumers": [stem.consumer]}
            runs.append({**run, "key": (s, STREAM), "ties": [stem.key], "inner": stem.inner, "apart": ()})
        elif adds:
            runs[-1]["ties"].append((s, STREAM))
            runs[-1]["consumers"].append(f"{blocks[0]}.expand.conv")
        else:
            if runs:
                runs[-1]["consumers"].append(f"{blocks[0]}.expand.conv")
            apart = (runs[-1]["key"] if runs else (0, 0),) if spec.strides[s + 1] == 1 else ()
            runs.append({"convs": [], "bns": [], "consumers": [], "key": (s, STREAM), "ties": [], "apart": apart})
        runs[-1]["convs"] += [f"{p}.project.conv" for p in blocks]
        runs[-1]["bns"] += [(f"{p}.project.bn", None) for p in blocks]
        runs[-1]["consumers"] += [f"{p}.expand.conv" for p in blocks[1:]]
    runs[-1]["consumers"].append("last.conv")
    for run in runs:
        s = run["key"][0]
        groups.append(
            coupled_group(
                run["key"],
                spec.stage_widths[s],
                f"stages.{s}",
                convs=tuple(run["convs"]),
                bns=tuple(run["bns"]),
                consumers=tuple(run["consumers"]),
                ties=tuple(run["ties"]),
                apart=tuple(run["apart"]),
                inner=tuple(run.get("inner", ())),
            )
        )
    return groups


def mobilenetv2_pattern_stages(spec: ArchSpec) -> list[list[int]]:
    """Each width entry's design-pattern stage: its block's stage, and one more stage for the last 1x1 conv.

    That conv (1280 channels below ``width_mult`` 1) closes the network and is read only by the classifier:
    pooled with the last stage's one block (240 hidden channels at x0.25), its share would set the stage's
    ratio alone, and a guided design would shrink the block by what pruning did to the conv.

    Example:
        >>> from models import create_spec
        >>> mobilenetv2_pattern_stages(create_spec("mobilenetv2", width_mult=0.25))[-2:]
        [[5, 5, 5], [6, 7]]
    """
    stages = [[s] * len(entries) for s, entries in enumerate(spec.stages)]
    stages[-1][-1] = len(spec.stages)
    return stages


def _check(spec: ArchSpec) -> None:
    if spec.stem_width:
        raise SpecError("MobileNetV2 specs have no stem_width: the stem's width is stages[0][0]; remove it")
    if len(spec.stages[0]) != 1 + (len(spec.stages) == 1):
        raise SpecError(
            f"stages[0] has {len(spec.stages[0])} widths; MobileNetV2's first stage is one block without an "
            "expanding conv, whose hidden width is the stem's"
        )
    spec.check_stage_widths("block output widths")
    if len(spec.strides) != len(spec.stages) + 1 or any(s not in (1, 2) for s in spec.strides):
        raise SpecError(
            f"strides must give the stem's stride then each stage's first-block stride ({len(spec.stages) + 1} "
            f"values of 1 or 2), got {list(spec.strides)}"
        )
    if len(spec.stages[-1]) < 2:
        raise SpecError(
            f"stages[{len(spec.stages) - 1}] has {len(spec.stages[-1])} width; MobileNetV2's last stage is at "
            "least one block, then the last 1x1 conv's width"
        )


register_family(
    Family(
        name="mobilenetv2",
        blocks={"inverted": 1},
        build=build_mobilenetv2,
        layers=mobilenetv2_layers,
        groups=mobilenetv2_groups,
        coupled=mobilenetv2_coupled_groups,
        pattern_stages=mobilenetv2_pattern_stages,
        depth=lambda spec, units: units,  # named without a depth; this counts its inverted residual blocks
        check=_check,
        closing=lambda spec, stage: int(stage == len(spec.stages) - 1),  # the last 1x1 conv
        spec_name=lambda spec: "mobilenetv2",
        halvings=lambda spec: sum(1 for s in spec.strides if s == 2),
        options=frozenset({"strides"}),
        design="projected",
    )
)
