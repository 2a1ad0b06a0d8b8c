"""Architectures as data: `ArchSpec`, builders that turn a spec into an `nn.Module`, exact cost counting.

Example:
    >>> from models import create_spec, build, cost
    >>> spec = create_spec("vgg16", num_classes=10, width_mult=0.25)
    >>> model = build(spec, seed=0)
    >>> model.spec == spec
    True
    >>> cost(spec).params < 1_000_000
    True
"""

from models.bridge import BridgeError, from_torchvision, to_torchvision, torchvision_spec
from models.cost import Cost, Layer, count, densities_from_masks
from models.groups import STEM, STREAM, ChannelGroup
from models.registry import (
    FAMILIES,
    build,
    channel_groups,
    cost,
    create_model,
    create_spec,
    layers,
    list_models,
    pattern_stages,
    register_model,
)
from models.spec import SPEC_FORMAT, ArchSpec, SpecError, entries_per_unit

__all__ = [
    "ArchSpec",
    "BridgeError",
    "SpecError",
    "SPEC_FORMAT",
    "STEM",
    "STREAM",
    "ChannelGroup",
    "Cost",
    "Layer",
    "FAMILIES",
    "build",
    "channel_groups",
    "cost",
    "count",
    "create_model",
    "create_spec",
    "densities_from_masks",
    "entries_per_unit",
    "from_torchvision",
    "to_torchvision",
    "layers",
    "list_models",
    "pattern_stages",
    "register_model",
    "torchvision_spec",
]
