"""CIFAR VGG with BatchNorm: 3x3 convs in stages, 2x2 max-pool between stages, global average pool, head.

Spec entries: one output width per conv. Heads: ``"l1"`` is Linear(c, 512)-BN1d-ReLU-Linear(512, classes)
as in the L1-norm pruning code (the default); ``"slim"`` is one Linear(c, classes) as in the Network
Slimming code. At 32x32 input the last stage works at 2x2, so the global average pool equals the paper's
2x2 average pool. ``"imagenet"`` is torchvision's ``vgg*_bn`` classifier: a max-pool after the last stage
too, a 7x7 adaptive average pool, Linear(c*49, 4096)-ReLU-Linear(4096, 4096)-ReLU-Linear(4096, classes);
its convs have biases, as torchvision's do; its dropout is left out (outputs equal torchvision's in eval
mode).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import ConvBN, initialised
from models.cost import Layer
from models.family import Family, register_family
from models.groups import ChannelGroup, conv_group
from models.spec import ArchSpec, SpecError, check_positive, scale_width

__all__ = [
    "VGG",
    "VGG_WIDTHS",
    "IMAGENET_POOL",
    "IMAGENET_HEAD_WIDTH",
    "vgg_spec",
    "build_vgg",
    "vgg_layers",
    "vgg_groups",
]

#: The classifier heads a VGG spec may have (the module docstring).
HEADS = ("l1", "slim", "imagenet")

#: Side of the average pool before torchvision's VGG classifier (``head = "imagenet"``).
IMAGENET_POOL = 7
#: Hidden width of torchvision's VGG classifier.
IMAGENET_HEAD_WIDTH = 4096

#: Full-width stages of the CIFAR VGGs (as in PAPER.md), by depth.
VGG_WIDTHS: dict[int, tuple[tuple[int, ...], ...]] = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def vgg_spec(
    stages: tuple[tuple[int, ...], ...],
    *,
    width_mult: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    head: str = "l1",
    head_width: int = 512,
) -> ArchSpec:
    """A VGG spec from full-width stages, every width (head included) scaled by ``width_mult``."""
    return ArchSpec(
        family="vgg",
        stages=tuple(tuple(scale_width(w, width_mult) for w in s) for s in stages),
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        head=head,
        head_width=scale_width(head_width, width_mult),
    )


class VGG(nn.Module):
    """VGG built from a spec; ``model.spec`` is that spec."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        stages, in_ch = [], spec.in_channels
        for widths in spec.stages:
            layers = []
            for w in widths:
                layers.append(ConvBN(in_ch, w, bias=spec.head == "imagenet"))
                in_ch = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        if spec.head == "l1":
            self.head = nn.Sequential()
            self.head.add_module("fc1", nn.Linear(in_ch, spec.head_width))
            self.head.add_module("bn", nn.BatchNorm1d(spec.head_width))
            self.head.add_module("relu", nn.ReLU(inplace=True))
            self.head.add_module("fc2", nn.Linear(spec.head_width, spec.num_classes))
        elif spec.head == "imagenet":
            self.head = nn.Sequential()
            self.head.add_module("fc1", nn.Linear(in_ch * IMAGENET_POOL**2, spec.head_width))
            self.head.add_module("relu1", nn.ReLU(inplace=True))
            self.head.add_module("fc2", nn.Linear(spec.head_width, spec.head_width))
            self.head.add_module("relu2", nn.ReLU(inplace=True))
            self.head.add_module("fc3", nn.Linear(spec.head_width, spec.num_classes))
        else:
            self.head = nn.Sequential()
            self.head.add_module("fc", nn.Linear(in_ch, spec.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s, stage in enumerate(self.stages):
            if s:
                x = F.max_pool2d(x, 2)
            x = stage(x)
        if self.spec.head == "imagenet":
            x = F.adaptive_avg_pool2d(F.max_pool2d(x, 2), IMAGENET_POOL)
        else:
            x = F.adaptive_avg_pool2d(x, 1)
        return self.head(torch.flatten(x, 1))


build_vgg = initialised(VGG, bn_weight=0.5, origin="the paper's VGG code")


def vgg_layers(spec: ArchSpec) -> list[Layer]:
    """Weight layers of a VGG spec, named as in `VGG`."""
    rows, in_ch, size = [], spec.in_channels, spec.input_size
    for s, widths in enumerate(spec.stages):
        if s:
            size //= 2
        for i, w in enumerate(widths):
            rows.append(Layer(f"stages.{s}.{i}.conv", "conv", s, in_ch, w, 3, 1, size, bias=spec.head == "imagenet"))
            rows.append(Layer(f"stages.{s}.{i}.bn", "bn", s, w, w, out_size=size))
            in_ch = w
    if spec.head == "l1":
        rows.append(Layer("head.fc1", "linear", -1, in_ch, spec.head_width))
        rows.append(Layer("head.bn", "bn", -1, spec.head_width, spec.head_width))
        rows.append(Layer("head.fc2", "linear", -1, spec.head_width, spec.num_classes))
    elif spec.head == "imagenet":
        rows.append(Layer("head.fc1", "linear", -1, in_ch * IMAGENET_POOL**2, spec.head_width))
        rows.append(Layer("head.fc2", "linear", -1, spec.head_width, spec.head_width))
        rows.append(Layer("head.fc3", "linear", -1, spec.head_width, spec.num_classes))
    else:
        rows.append(Layer("head.fc", "linear", -1, in_ch, spec.num_classes))
    return rows


def vgg_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """One group per conv: its filters, its BN, and the next conv (or the head's first linear)."""
    names = [f"stages.{s}.{i}" for s, widths in enumerate(spec.stages) for i in range(len(widths))]
    positions = [(s, i) for s, widths in enumerate(spec.stages) for i in range(len(widths))]
    head = "head.fc" if spec.head == "slim" else "head.fc1"  # imagenet: 7x7 inputs per channel
    groups = []
    for j, (name, (s, i)) in enumerate(zip(names, positions)):
        consumer = f"{names[j + 1]}.conv" if j + 1 < len(names) else head
        group = conv_group(s, i, spec.stages[s][i], f"{name}.conv", f"{name}.bn", consumer)
        if spec.head == "imagenet":  # torchvision's convs have biases
            group = dataclasses.replace(group, tensors=(*group.tensors, (f"{name}.conv.bias", 0)))
        groups.append(group)
    return groups


def _check(spec: ArchSpec) -> None:
    if spec.stage_widths or spec.stem_width:
        raise SpecError("VGG specs have no stem_width or stage_widths; put every conv width in stages")
    if any(len(stage) == 0 for stage in spec.stages):
        raise SpecError("every VGG stage needs at least one conv width")
    if spec.head not in HEADS:
        raise SpecError(f"VGG head must be one of {list(HEADS)}, got {spec.head!r}")
    if spec.head in ("l1", "imagenet"):
        check_positive("head_width", spec.head_width)


register_family(
    Family(
        name="vgg",
        blocks={"plain": 1},
        build=build_vgg,
        layers=vgg_layers,
        groups=vgg_groups,
        coupled=vgg_groups,  # no channel is shared
        depth=lambda spec, units: units + 3,  # named after ImageNet VGG: convs + 3 fully connected layers
        check=_check,
        halvings=lambda spec: len(spec.stages) if spec.head == "imagenet" else len(spec.stages) - 1,
        options=frozenset({"head"}),
        design="plain",
    )
)
