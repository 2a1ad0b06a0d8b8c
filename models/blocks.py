"""Building blocks shared by the families, and the paper's weight initialisation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ChannelSelect", "ConvBN", "StagedNet", "init_weights", "initialised"]


class ChannelSelect(nn.Module):
    """Keep a subset of input channels, given by an index buffer.

    Network Slimming prunes the BatchNorm that *opens* a pre-activation block (or a DenseNet layer), whose
    input is shared with other layers and cannot shrink. This layer selects the kept input channels
    before that BatchNorm. Unpruned, it keeps ``0..kept-1``; pruning stores the kept channel indices,
    which travel in the ``state_dict`` (the spec only records how many are kept).

    Args:
        available: channels entering the layer.
        kept: channels it passes on.
    """

    def __init__(self, available: int, kept: int) -> None:
        super().__init__()
        self.available = available
        self.register_buffer("index", torch.arange(kept))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.index.numel() == self.available:
            return x  # all kept: identity, and free
        return x.index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"available={self.available}, kept={self.index.numel()}"


class ConvBN(nn.Module):
    """Conv (no bias unless asked: torchvision's VGG has one) then BatchNorm, with optional ReLU; the unit of
    VGG stages and ResNet stems."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, relu: bool = True, bias: bool = False
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=bias)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return torch.relu_(x) if self.relu else x


class StagedNet(nn.Module):
    """Stem, stages, an optional closing ``final`` module, global average pool, linear classifier.

    The residual families and DenseNet share this forward pass; subclasses set ``stem``, ``stages``
    (a ModuleList), ``fc`` and, if they need one, ``final``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        final = self._modules.get("final")
        if final is not None:
            x = final(x)
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def init_weights(model: nn.Module, *, bn_weight: float) -> None:
    """Initialise as the paper's public code does.

    Convs: He normal with fan-out, N(0, sqrt(2 / (k*k*out_channels))); BatchNorm: weight ``bn_weight``
    (0.5 in the Network Slimming code, 1 in the ResNet code), bias 0; linear: N(0, 0.01), bias 0.

    Args:
        model: the module to initialise in place.
        bn_weight: initial BatchNorm scale.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.constant_(m.weight, bn_weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def initialised(net: type[nn.Module], *, bn_weight: float, origin: str) -> Callable[..., nn.Module]:
    """A family's builder: ``net(spec)`` initialised by `init_weights` with ``bn_weight`` (as ``origin``
    does), named ``build_<net>`` for tracebacks and docs.

    Example:
        >>> from models import create_spec
        >>> from models.vgg import VGG
        >>> build = initialised(VGG, bn_weight=0.5, origin="the paper's VGG code")
        >>> bn = next(m for m in build(create_spec("vgg-tiny")).modules() if isinstance(m, nn.BatchNorm2d))
        >>> build.__name__, bn.weight[0].item()
        ('build_vgg', 0.5)
    """

    def build(spec) -> nn.Module:
        model = net(spec)
        init_weights(model, bn_weight=bn_weight)
        return model

    build.__name__ = build.__qualname__ = f"build_{net.__name__.lower()}"
    build.__doc__ = f"Build a {net.__name__} and initialise it (BN scale {bn_weight}, as in {origin})."
    return build
