"""CIFAR ResNet-(6n+2) with basic blocks and option-A shortcuts (He et al. 2016; the L1-norm code).

A 3x3 stem conv, three stages of n basic blocks, global average pool, one linear layer. The first block
of stages 2 and 3 has stride 2; its shortcut subsamples by 2 and pads the missing channels with zeros, so
shortcuts have no parameters.

The first block of every stage carries its shortcut as a *map* (the ``shortcut`` buffer): for each output
channel, the input channel added to it, or -1 for none. Unpruned, the map pads evenly, as option A does
(or, where a stage is narrower than its input, keeps the middle input channels); pruning coupled channels
(`models.groups`) narrows it on both sides, so every stage's residual width can be pruned on its own. The
map travels in the ``state_dict``; checkpoints from before it load with the default map.

Spec entries: one per block, the width of its first conv (what L1-norm pruning prunes: its output feeds
only the block's second conv). ``stage_widths`` are the residual widths (every block's output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import ConvBN, StagedNet, initialised
from models.cost import Layer, conv_out
from models.family import Family, register_family, residual_depth
from models.groups import STEM, STREAM, ChannelGroup, conv_group, coupled_group
from models.spec import ArchSpec, scale_width

__all__ = [
    "ResNet",
    "BasicBlock",
    "resnet_spec",
    "build_resnet",
    "resnet_layers",
    "resnet_groups",
    "resnet_coupled_groups",
    "default_shortcut",
]


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


def default_shortcut(in_ch: int, out_ch: int) -> torch.Tensor:
    """Option A's map: output channel ``j`` adds input ``j - (out_ch - in_ch) // 2`` (-1: none); a narrower
    output keeps the middle input channels.

    Example:
        >>> default_shortcut(2, 4).tolist(), default_shortcut(4, 2).tolist()
        ([-1, 0, 1, -1], [1, 2])
    """
    source = torch.arange(out_ch) - (out_ch - in_ch) // 2
    return torch.where((source >= 0) & (source < in_ch), source, torch.full_like(source, -1))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus an option-A shortcut, then ReLU.

    With ``mapped`` (every stage's first block), the shortcut is the ``shortcut`` buffer's map.
    """

    def __init__(
        self, in_ch: int, mid: int, out_ch: int, stride: int, gated: bool = False, mapped: bool = False
    ) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.ones(())) if gated else None
        self.conv1 = nn.Conv2d(in_ch, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.stride = stride
        self.in_ch = in_ch
        self.shortcut: torch.Tensor | None
        self.register_buffer("shortcut", default_shortcut(in_ch, out_ch) if mapped else None)
        self._identity = self._is_identity()

    def _is_identity(self) -> bool:
        m = self.shortcut
        return m is None or (len(m) == self.in_ch and bool(torch.equal(m.cpu(), torch.arange(len(m)))))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "shortcut"
        if self.shortcut is not None and key not in state_dict:
            state_dict[key] = self.shortcut  # a checkpoint from before shortcut maps: the default map
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._identity = self._is_identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.gate is not None:
            out = out * self.gate
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if not self._identity:  # one zero channel after the inputs stands for "none"
            gather = torch.where(self.shortcut < 0, self.in_ch, self.shortcut)
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, 1)).index_select(1, gather)
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
                blocks.append(BasicBlock(in_ch, mid, spec.stage_widths[s], stride, spec.gated, mapped=b == 0))
                in_ch = spec.stage_widths[s]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(in_ch, spec.num_classes)


build_resnet = initialised(ResNet, bn_weight=1.0, origin="the ResNet code")


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


def resnet_coupled_groups(spec: ArchSpec) -> list[ChannelGroup]:
    """Every group of `resnet_groups`, then the stem's channels and each stage's residual channels: written by
    every block's second conv, read by the next blocks' first convs (and the next stage's first block, or the
    classifier). The shortcut map of each stage's first block is sliced with the stage's channels and
    renumbered with its input's."""
    groups = resnet_groups(spec)
    groups.append(
        coupled_group(
            (0, STEM),
            spec.stem_width,
            "stem",
            convs=("stem.conv",),
            bns=(("stem.bn", None),),
            consumers=("stages.0.0.conv1",),
            remaps=("stages.0.0.shortcut",),
        )
    )
    last = len(spec.stages) - 1
    for s, mids in enumerate(spec.stages):
        blocks = [f"stages.{s}.{b}" for b in range(len(mids))]
        after = ("fc",) if s == last else (f"stages.{s + 1}.0.conv1",)
        groups.append(
            coupled_group(
                (s, STREAM),
                spec.stage_widths[s],
                f"stages.{s}",
                convs=tuple(f"{p}.conv2" for p in blocks),
                bns=tuple((f"{p}.bn2", None) for p in blocks),
                consumers=tuple(f"{p}.conv1" for p in blocks[1:]) + after,
                remaps=() if s == last else (f"stages.{s + 1}.0.shortcut",),
                maps=(f"stages.{s}.0.shortcut",),
            )
        )
    return groups


register_family(
    Family(
        name="resnet",
        blocks={"basic": 1},
        build=build_resnet,
        layers=resnet_layers,
        groups=resnet_groups,
        coupled=resnet_coupled_groups,
        depth=residual_depth,
        check=ArchSpec.check_blocks,  # any residual widths: each stage's first block maps its shortcut's channels
        options=frozenset({"gated"}),
        design="residual",
    )
)
