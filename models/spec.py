"""`ArchSpec`: a network's architecture as plain, frozen, JSON-serialisable data.

A spec holds every width that pruning or design can change, grouped by *stage* (the layers that share
one feature-map size). Builders (`models.registry.build`) turn a spec into an `nn.Module`; cost counting
(`models.cost`) reads the spec alone. Nothing here imports torch.

What one entry of ``stages[s]`` means depends on the family (see each family module's docstring):

=============  =========  =======================================================================
family         block      entries of one stage, in forward order
=============  =========  =======================================================================
``vgg``        ``plain``  one output width per 3x3 conv
``resnet``     ``basic``  one width per block: the block's first conv (its second conv outputs the
                          stage's residual width ``stage_widths[s]``)
``preresnet``  ``basic``  two per block: input channels kept by the block's channel selection,
                          width of its first conv
``preresnet``  ``bottleneck``  three per block: kept input channels, 1x1 width, 3x3 width;
                          for both preresnet blocks the last stage ends with one more entry:
                          channels kept by the final BN
``densenet``   ``basic``  one per dense layer (kept input channels), then one for the transition
                          (or, in the last stage, the final BN) that closes the stage
``densenet``   ``bottleneck``  two per dense layer (kept input channels, 1x1 bottleneck width),
                          then one for the closing transition / final BN
``tvresnet``   ``basic``  one per block: its first conv's width (torchvision's ImageNet ResNets)
``tvresnet``   ``bottleneck``  two per block: the 1x1 and 3x3 widths
``mobilenetv2``  ``inverted``  one per inverted residual block: its hidden (expanded) width; the
                          first stage's one block has no expanding conv, its hidden width is the
                          stem's width; the last stage ends with one more entry: the last 1x1
                          conv's width
=============  =========  =======================================================================
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from models.family import FAMILIES

__all__ = ["ArchSpec", "SpecError", "SPEC_FORMAT", "entries_per_unit", "scale_width", "check_positive"]

SPEC_FORMAT = "guided.archspec/1"


class SpecError(ValueError):
    """An architecture spec is malformed or describes an impossible network."""


def entries_per_unit(family: str, block: str) -> int:
    """How many consecutive ``stages[s]`` entries describe one block (or dense layer): the family's
    declaration (`models.family.Family.blocks`)."""
    return FAMILIES[family].blocks[block]


#: Bounds on what a spec may ask for: beyond them a build would exhaust memory rather than fail clearly.
MAX_WIDTH = 2**16
MAX_INPUT = 4096
MAX_CLASSES = 10**6


@dataclass(frozen=True)
class ArchSpec:
    """A CNN described by its widths.

    Args:
        family: ``"vgg"``, ``"resnet"``, ``"preresnet"``, ``"densenet"``, ``"mobilenetv2"`` or ``"tvresnet"``
            (ResNet as torchvision builds it for ImageNet).
        stages: per stage, the prunable widths in forward order (meaning per family in the module
            docstring). The number of blocks per stage, and so the depth, follows from it.
        stage_widths: residual families and MobileNetV2: the block output width of each stage; DenseNet:
            the output width of each transition (one fewer than stages). Empty for VGG.
        stem_width: output channels of the first conv (residual families and DenseNet); 0 for VGG and
            MobileNetV2 (whose stem width is ``stages[0][0]``).
        block: block type (``"plain"`` for VGG; ``"basic"`` or ``"bottleneck"``; ``"inverted"`` for
            MobileNetV2).
        growth: DenseNet growth rate (channels each dense layer adds); 0 for other families.
        num_classes: outputs of the classifier.
        in_channels: input image channels.
        input_size: input height = width, in pixels.
        head: VGG classifier: ``"l1"`` (Linear-BN1d-ReLU-Linear, as in the L1-norm code), ``"slim"``
            (a single Linear, as in the Network Slimming code) or ``"imagenet"`` (torchvision's: a max-pool
            after the last stage too, a 7x7 average pool, Linear-ReLU-Linear-ReLU-Linear; its dropout is
            not part of the network). ``None`` for other families.
        head_width: hidden width of the ``"l1"`` head (512 in the paper) or the ``"imagenet"`` one (4096).
        gated: residual families: every block's residual branch is scaled by a learnable scalar gate
            (Sparse Structure Selection trains these sparse, then removes blocks whose gate is ~0).

    Example:
        >>> from models import create_spec
        >>> spec = create_spec("vgg16", num_classes=10)
        >>> spec.depth, spec.stages[0]
        (16, (64, 64))
        >>> ArchSpec.from_json(spec.to_json()) == spec
        True
    """

    family: str
    stages: tuple[tuple[int, ...], ...]
    stage_widths: tuple[int, ...] = ()
    stem_width: int = 0
    block: str = "plain"
    growth: int = 0
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32
    head: str | None = None
    head_width: int = 512
    gated: bool = False
    strides: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Normalise lists (from JSON or hand-written code) to tuples so specs hash and compare by value.
        object.__setattr__(self, "stages", tuple(tuple(s) for s in self.stages))
        object.__setattr__(self, "stage_widths", tuple(self.stage_widths))
        object.__setattr__(self, "strides", tuple(self.strides))
        self.validate()

    # ------------------------------------------------------------------ derived facts
    def closing_entries(self, stage: int) -> int:
        """Entries at the end of ``stages[stage]`` that belong to no block (transition or final BN)."""
        return FAMILIES[self.family].closing(self, stage)

    @property
    def units_per_stage(self) -> tuple[int, ...]:
        """Blocks (VGG: convs; DenseNet: dense layers) in each stage."""
        k = entries_per_unit(self.family, self.block)
        return tuple((len(st) - self.closing_entries(s)) // k for s, st in enumerate(self.stages))

    @property
    def depth(self) -> int:
        """Nominal depth, as in the model's name (VGG-16, ResNet-56, DenseNet-40...)."""
        return FAMILIES[self.family].depth(self, sum(self.units_per_stage))

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``vgg16``, ``resnet56``, ``preresnet164``, ``densenet-bc100``."""
        return FAMILIES[self.family].spec_name(self)

    def widths(self) -> list[int]:
        """All prunable widths, flattened in forward order."""
        return [w for stage in self.stages for w in stage]

    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise `SpecError` with a one-line, actionable message if the spec is impossible: the checks every
        family shares, then the family's own (`models.family.Family.check`)."""
        family = FAMILIES.get(self.family)
        if family is None:
            raise SpecError(f"unknown family {self.family!r}; expected one of {sorted(FAMILIES)}")
        if self.block not in family.blocks:
            raise SpecError(
                f"family {self.family!r} has no block type {self.block!r}; expected one of {list(family.blocks)}"
            )
        for field in ("num_classes", "in_channels", "input_size"):
            check_positive(field, getattr(self, field))
        for field, most in (("num_classes", MAX_CLASSES), ("in_channels", MAX_WIDTH), ("input_size", MAX_INPUT)):
            if getattr(self, field) > most:
                raise SpecError(f"{field} = {getattr(self, field)} is above the largest guided builds ({most})")
        if not self.stages:
            raise SpecError("stages is empty: give at least one stage of widths")
        for s, stage in enumerate(self.stages):
            for i, w in enumerate(stage):
                if not _is_int(w) or w < 1:
                    raise SpecError(
                        f"stages[{s}][{i}] = {w!r}: every width must be a positive integer "
                        f"(a layer cannot keep zero channels)"
                    )
                if w > MAX_WIDTH:
                    raise SpecError(f"stages[{s}][{i}] = {w}: widths above {MAX_WIDTH} channels are not built")
        self._check_options(family.options)
        family.check(self)
        halvings = self.halvings
        if self.input_size < 2**halvings:
            raise SpecError(
                f"input_size {self.input_size} is too small: the network halves it {halvings} times; "
                f"use input_size >= {2**halvings}"
            )

    def _check_options(self, options: frozenset[str]) -> None:
        """Refuse an optional field the family does not take (`models.family.OPTIONS`)."""
        if "head" not in options and self.head is not None:
            raise SpecError(f"family {self.family!r} has no head option; remove 'head'")
        if self.gated not in (True, False):
            raise SpecError(f"gated must be true or false, got {self.gated!r}")
        if "gated" not in options and self.gated:
            gated = sorted(n for n, f in FAMILIES.items() if "gated" in f.options)
            raise SpecError(f"only {', '.join(gated)} have block gates; {self.family!r} cannot be gated")
        if "growth" not in options and self.growth:
            raise SpecError(f"family {self.family!r} has no growth rate; remove 'growth'")
        if "strides" not in options and self.strides:
            raise SpecError(f"family {self.family!r} has fixed strides; remove 'strides'")

    @property
    def halvings(self) -> int:
        """How many times the network halves its input's side before the global pool."""
        return FAMILIES[self.family].halvings(self)

    def block_input(self, stage: int, block: int) -> int:
        """Channels entering block ``block`` of ``stage`` in a residual family: the stem's or the stage's."""
        if block > 0:
            return self.stage_widths[stage]
        return self.stem_width if stage == 0 else self.stage_widths[stage - 1]

    def check_stage_widths(self, meaning: str) -> None:
        """One positive ``stage_widths`` entry per stage (``meaning``: what they are, for the message)."""
        if len(self.stage_widths) != len(self.stages):
            raise SpecError(
                f"{len(self.stages)} stages need {len(self.stages)} stage_widths ({meaning}), "
                f"got {len(self.stage_widths)}"
            )
        for s, w in enumerate(self.stage_widths):
            check_positive(f"stage_widths[{s}]", w)

    def check_blocks(self) -> None:
        """A residual family's widths: a stem, one residual width per stage, whole blocks in every stage."""
        check_positive("stem_width", self.stem_width)
        self.check_stage_widths("residual widths")
        k = entries_per_unit(self.family, self.block)
        for s, stage in enumerate(self.stages):
            body = len(stage) - self.closing_entries(s)
            if body < k or body % k:
                extra = " plus 1 for the final BN" if self.closing_entries(s) else ""
                raise SpecError(
                    f"stages[{s}] has {len(stage)} widths; {self.family} {self.block} blocks take {k} "
                    f"widths each{extra}, and every stage needs at least one block"
                )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with a format tag so later versions can read old files."""
        data = {"format": SPEC_FORMAT, "name": self.name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "strides" and not value:
                continue  # only MobileNetV2 has them: other families' files stay as they were
            data[f.name] = (
                [list(s) for s in value] if f.name == "stages" else (list(value) if isinstance(value, tuple) else value)
            )
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """Serialise to JSON text (hand-editable: one stage per line when indented)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        """Rebuild a spec from `to_dict` output; unknown keys or a wrong format are `SpecError`."""
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format", SPEC_FORMAT)
        if fmt != SPEC_FORMAT:
            raise SpecError(f"unsupported spec format {fmt!r}; this version reads {SPEC_FORMAT!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k not in ("format", "name")}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise SpecError(f"unknown spec key(s) {unknown}; allowed keys are {sorted(known)}")
        if "family" not in fields or "stages" not in fields:
            raise SpecError("a spec needs at least 'family' and 'stages'")
        stages = fields["stages"]
        if not isinstance(stages, list) or not all(isinstance(s, list) for s in stages):
            raise SpecError("'stages' must be a list of lists of integers, one list per stage")
        try:
            return cls(**fields)
        except TypeError as exc:  # e.g. a string where a list of widths belongs
            raise SpecError(f"malformed spec: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        """Parse JSON text produced by `to_json` (or written by hand)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def scale_width(width: int, mult: float) -> int:
    """``width * mult`` rounded to the nearest integer, at least 1."""
    return max(1, int(round(width * mult)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive(field: str, value: Any) -> None:
    """Refuse (`SpecError`) anything but a positive integer as ``field``."""
    if not _is_int(value) or value < 1:
        raise SpecError(f"{field} must be a positive integer, got {value!r}")
