"""What the toolkit knows about a model family, in one declaration per family.

Each family module (`models.vgg`, `models.resnet`, ...) ends with ``register_family(Family(...))``: how a
spec of the family is built, counted and grouped into prunable channels, what its width entries mean (the
block types and how many entries each block takes, the entries that close a stage, its nominal depth and
name, how often it halves the input), which optional spec fields it accepts, how its widths are checked,
and how a guided design applies to it. `models.spec.ArchSpec`, `models.registry` and `guided.shapes.design` read
these declarations; nothing else names a family. A new family is one module (importable before its specs
are made) with one `register_family` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: A `models.spec.ArchSpec` (not imported: the spec module reads this one).
ArchSpec = Any

__all__ = ["Family", "FAMILIES", "register_family", "residual_depth", "OPTIONS", "DESIGN_RULES"]

#: The optional `ArchSpec` fields a family may accept: a VGG ``head``, block ``gated``, DenseNet ``growth``,
#: MobileNetV2 ``strides``.
OPTIONS = ("head", "gated", "growth", "strides")

#: How a guided design may scale a family's widths (`guided.shapes.design`): ``plain`` (every entry its own
#: ratio), ``residual`` (residual widths follow their stage, kept non-decreasing unless coupled pruning
#: found them), ``preactivation`` (as residual, block selections keep what enters them), ``projected``
#: (projection shortcuts: each stage's output width its own ratio).
DESIGN_RULES = ("plain", "residual", "preactivation", "projected")


def residual_depth(spec: ArchSpec, units: int) -> int:
    """The nominal depth of a residual network: two or three convs per block (basic, bottleneck), the stem
    and the classifier (ResNet-56, PreResNet-164, torchvision's ResNet-50)."""
    return (3 if spec.block == "bottleneck" else 2) * units + 2


def _no_closing(spec: ArchSpec, stage: int) -> int:
    return 0


def _family_depth_name(spec: ArchSpec) -> str:
    return f"{spec.family}{spec.depth}"


def _halvings(spec: ArchSpec) -> int:
    return len(spec.stages) - 1  # a pool between stages


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: the spec's ``family``.
        blocks: block type -> how many consecutive ``stages[s]`` entries describe one block (or layer).
        build: spec -> initialised module (``model.spec`` set by `models.build`).
        layers: spec -> weight-layer rows (`models.cost.Layer`), named as the module names its layers.
        groups: spec -> prunable channel groups (`models.groups.ChannelGroup`).
        depth: (spec, blocks in all stages) -> the nominal depth its name carries.
        check: spec -> raises `models.SpecError` when its widths are impossible for the family (the generic
            checks of `ArchSpec.validate` have passed).
        coupled: spec -> every group with the coupled ones (residual widths, stems) too; ``None``: pruning
            supports none.
        pattern_stages: spec -> the design-pattern stage of each width entry, where they are not its own
            stages (`models.pattern_stages`).
        closing: (spec, stage) -> entries at the end of a stage that belong to no block (a transition, a
            final BN).
        spec_name: spec -> its canonical name (default ``{family}{depth}``).
        halvings: spec -> how often the network halves its input's side (default: between stages).
        options: the optional spec fields it accepts (`OPTIONS`).
        design: how a guided design applies (one of `DESIGN_RULES`); ``None``: not designable.
        fit: after pruning changed widths (``stages`` lists and the ``stage_widths``/``stem_width`` fields,
            in place), make them consistent where one width bounds another (pre-activation selections).
    """

    name: str
    blocks: Mapping[str, int]
    build: Callable[[ArchSpec], Any]
    layers: Callable[[ArchSpec], list]
    groups: Callable[[ArchSpec], list]
    depth: Callable[[ArchSpec, int], int]
    check: Callable[[ArchSpec], None]
    coupled: Callable[[ArchSpec], list] | None = None
    pattern_stages: Callable[[ArchSpec], list[list[int]]] | None = None
    closing: Callable[[ArchSpec, int], int] = _no_closing
    spec_name: Callable[[ArchSpec], str] = _family_depth_name
    halvings: Callable[[ArchSpec], int] = _halvings
    options: frozenset[str] = field(default_factory=frozenset)
    design: str | None = None
    fit: Callable[[ArchSpec, list[list[int]], dict], None] | None = None

    def __post_init__(self) -> None:
        bad = sorted(set(self.options) - set(OPTIONS))
        if bad:
            raise ValueError(f"family {self.name!r}: unknown options {bad}; choose among {list(OPTIONS)}")
        if self.design is not None and self.design not in DESIGN_RULES:
            raise ValueError(f"family {self.name!r}: design rule {self.design!r} is not one of {list(DESIGN_RULES)}")
        if not self.blocks or any(k < 1 for k in self.blocks.values()):
            raise ValueError(f"family {self.name!r} needs at least one block type of 1 or more entries")


#: Every registered family, by name.
FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family`` to `FAMILIES` (once per name)."""
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family
