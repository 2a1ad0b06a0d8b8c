"""CIFAR ResNet-(6n+2) with basic blocks and option-A shortcuts (He et al. 2016; the L1-norm code).

A 3x3 stem conv, three stages of n basic blocks, global average pool, one linear layer. The first block
of stages 2 and 3 has stride 2; its shortcut subsamples by 2 (a 1x1 stride-2 average pool) and pads the
missing channels with zeros, so shortcuts have no parameters.

Spec entries: one per block, the width of its first conv (what L1-norm pruning prunes: its output feeds
only the block's second conv). ``stage_widths`` are the residual widths (every block's output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import ConvBN, StagedNet, init_weights
from models.cost import Layer, conv_out
from models.groups import ChannelGroup, conv_group
from models.spec import ArchSpec, scale_width

__all__ = ["ResNet", "BasicBlock", "resnet_spec", "build_resnet", "resnet_layers", "resnet_groups"]


def resnet_spec(
    blocks_per_stage: int,
    *,
    base: tuple[int, ...] = (16, 32, 64),
    width_mult: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
) -> ArchSpec:
    """An unpruned ResNet-(6n+2) spec, n = ``blocks_per_stage``, widths scaled by ``width_mult``."""
    widths = tuple(scale_width(w, width_mult) for w in base)
    return ArchSpec(
        family="resnet",
        block="basic",
        stages=tuple((w,) * blocks_per_stage for w in widths),
        stage_widths=widths,
        stem_width=widths[0],
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
    )


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus an option-A shortcut, then ReLU."""

    def __init__(self, in_ch: int, mid: int, out_ch: int, stride: int, gated: bool = False) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.ones(())) if gated else None
        self.conv1 = nn.Conv2d(in_ch, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.stride = stride
        self.pad = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.gate is not None:
            out = out * self.gate
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return torch.relu_(out + shortcut)


class ResNet(StagedNet):
    """CIFAR ResNet built from a spec; ``model.spec`` is that spec."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = ConvBN(spec.in_channels, spec.stem_width)
        stages, in_ch = [], spec.stem_width
        for s, mids in enumerate(spec.stages):
            blocks = []
            for b, mid in enumerate(mids):
                stride = 2 if s and not b else 1
                blocks.append(BasicBlock(in_ch, mid, spec.stage_widths[s], stride, spec.gated))
                in_ch = spec.stage_widths[s]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(in_ch, spec.num_classes)


def build_resnet(spec: ArchSpec) -> ResNet:
    """Build and initialise (BN scale 1, as in the ResNet code)."""
    model = ResNet(spec)
    init_weights(model, bn_weight=1.0)
    return model


def resnet_layers(spec: ArchSpec) -> list[Layer]:
    """Weight layers of a ResNet spec, named as in `ResNet`."""
    size = spec.input_size
    rows = [
        Layer("stem.conv", "conv", 0, spec.in_channels, spec.stem_width, 3, 1, size),
        Layer("stem.bn", "bn", 0, spec.stem_width, spec.stem_width, out_size=size),
    ]
    in_ch = spec.stem_width
    for s, mids in enumerate(spec.stages):
        out = spec.stage_widths[s]
        for b, mid in enumerate(mids):
            stride = 2 if s and not b else 1
            size = conv_out(size, 3, stride)
            p = f"stages.{s}.{b}"
            rows += [
                Layer(f"{p}.conv1", "conv", s, in_ch, mid, 3, stride, size),
                Layer(f"{p}.bn1", "bn", s, mid, mid, out_size=size),
                Layer(f"{p}.conv2", "conv", s, mid, out, 3, 1, size),
                Layer(f"{p}.bn2", "bn", s, out, out, out_size=size),
            ]
            if spec.gated:
                rows.append(Layer(p, "gate", s, 1, 1))
            in_ch = out
    rows.append(Layer("fc", "linear", -1, in_ch, spec.num_classes))
    return rows


def resnet_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """One group per block: the first conv's filters, read only by the block's second conv."""
    return [
        conv_group(s, b, w, f"stages.{s}.{b}.conv1", f"stages.{s}.{b}.bn1", f"stages.{s}.{b}.conv2")
        for s, widths in enumerate(spec.stages)
        for b, w in enumerate(widths)
    ]
