"""Exact parameter and MAC counts, read from an `ArchSpec` alone (no module is built).

Each family lists its weight layers as `Layer` rows (`models.registry.layers`); this module turns rows
into counts. Conventions (those of the paper's tables):

* params: conv weights (and biases, where a conv has one), BatchNorm weight and bias (not running
  statistics), linear weight and bias. Channel-selection index buffers and option-A shortcuts have no parameters.
* MACs: multiply-accumulates of conv and linear layers only, for one image. FLOPs = 2 x MACs.
* Non-zero counts: given the fraction of each layer's weights that are kept (from unstructured masks),
  a layer's weight parameters and MACs are scaled by it; BN and biases are always counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Layer", "Cost", "count", "densities_from_masks", "conv_out"]


@dataclass(frozen=True)
class Layer:
    """One weight layer of a network built from a spec.

    Attributes:
        name: module path in the built model (``model.get_submodule(name)``).
        kind: ``"conv"``, ``"linear"``, ``"bn"`` or ``"gate"`` (a residual block's scalar gate; ``name``
            is the block).
        stage: stage index (feature-map size group); ``-1`` for layers outside stages.
        in_ch: input channels (features for linear).
        out_ch: output channels (features for linear).
        kernel: kernel side in pixels (1 for linear and BN).
        stride: conv stride.
        out_size: output feature-map side in pixels (1 for linear).
        groups: conv groups (a depthwise conv has as many as channels: each output channel reads one
            input channel).
        bias: a conv with a bias (torchvision's VGG); linear layers always have one.
    """

    name: str
    kind: str
    stage: int
    in_ch: int
    out_ch: int
    kernel: int = 1
    stride: int = 1
    out_size: int = 1
    groups: int = 1
    bias: bool = False

    @property
    def weight_params(self) -> int:
        """Parameters of the weight tensor alone (what unstructured masks prune)."""
        if self.kind == "conv":
            return self.in_ch // self.groups * self.out_ch * self.kernel * self.kernel
        if self.kind == "linear":
            return self.in_ch * self.out_ch
        if self.kind == "gate":
            return 1
        return self.out_ch  # BN scale

    @property
    def bias_params(self) -> int:
        """Parameters besides the weight (linear and BN bias)."""
        if self.kind == "gate" or (self.kind == "conv" and not self.bias):
            return 0
        return self.out_ch

    @property
    def macs(self) -> int:
        """Multiply-accumulates for one image."""
        if self.kind == "conv":
            return self.weight_params * self.out_size * self.out_size
        if self.kind == "linear":
            return self.weight_params
        return 0


@dataclass(frozen=True)
class Cost:
    """Counts for one network.

    Attributes:
        params: parameters (non-zero ones when densities were given).
        macs: multiply-accumulates per image (non-zero only when densities were given).
        layers: per-layer rows: dicts with the `Layer` fields plus ``params``, ``macs``, ``density``.
    """

    params: int
    macs: int
    layers: tuple[dict[str, Any], ...]

    @property
    def flops(self) -> int:
        """FLOPs per image: 2 x MACs."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``params``, ``macs``, ``flops`` and the per-layer ``layers`` rows."""
        return {"params": self.params, "macs": self.macs, "flops": self.flops, "layers": list(self.layers)}


def count(layers: list[Layer], density: Mapping[str, float] | None = None) -> Cost:
    """Count parameters and MACs of a list of layers.

    Args:
        layers: the rows from `models.layers(spec)`.
        density: optional map from layer name to the fraction (0..1) of its weights that are non-zero;
            layers not named are dense. Names that match no conv or linear layer are an error.

    Example:
        >>> from models import create_spec, layers
        >>> count(layers(create_spec("vgg16"))).params
        14987722
    """
    density = dict(density or {})
    weighted = {layer.name for layer in layers if layer.kind in ("conv", "linear")}
    unknown = sorted(set(density) - weighted)
    if unknown:
        raise ValueError(f"density given for {unknown[:3]}, which are not conv or linear layers of this spec")
    rows, params, macs = [], 0, 0
    for layer in layers:
        d = float(density.get(layer.name, 1.0))
        if not 0.0 <= d <= 1.0:
            raise ValueError(f"density of {layer.name} must lie in [0, 1], got {d}")
        p = round(layer.weight_params * d) + layer.bias_params
        m = round(layer.macs * d)
        params += p
        macs += m
        rows.append({**asdict(layer), "params": p, "macs": m, "density": d})
    return Cost(params=params, macs=macs, layers=tuple(rows))


def densities_from_masks(masks: Mapping[str, Any]) -> dict[str, float]:
    """Turn weight masks into per-layer densities for `count`.

    Args:
        masks: layer name (or ``"<name>.weight"``) to a 0/1 array-like with ``sum()`` and ``numel()``
            or ``size`` (a torch tensor or numpy array).
    """
    out = {}
    for name, mask in masks.items():
        total = mask.numel() if hasattr(mask, "numel") else mask.size
        out[name.removesuffix(".weight")] = float(mask.sum()) / total
    return out


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output side of a conv with 'same' padding (kernel // 2) on a ``size`` x ``size`` input."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1
