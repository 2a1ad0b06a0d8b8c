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

__all__ = ["ArchSpec", "SpecError", "SPEC_FORMAT", "FAMILY_BLOCKS", "entries_per_unit", "scale_width"]

SPEC_FORMAT = "guided.archspec/1"

#: Block types each family accepts.
FAMILY_BLOCKS: dict[str, tuple[str, ...]] = {
    "vgg": ("plain",),
    "resnet": ("basic",),
    "preresnet": ("basic", "bottleneck"),
    "densenet": ("basic", "bottleneck"),
    "mobilenetv2": ("inverted",),
    "tvresnet": ("basic", "bottleneck"),
}

_HEADS = ("l1", "slim", "imagenet")


class SpecError(ValueError):
    """An architecture spec is malformed or describes an impossible network."""


def entries_per_unit(family: str, block: str) -> int:
    """How many consecutive ``stages[s]`` entries describe one block (or dense layer)."""
    return {
        ("vgg", "plain"): 1,
        ("resnet", "basic"): 1,
        ("preresnet", "basic"): 2,
        ("preresnet", "bottleneck"): 3,
        ("densenet", "basic"): 1,
        ("densenet", "bottleneck"): 2,
        ("mobilenetv2", "inverted"): 1,
        ("tvresnet", "basic"): 1,
        ("tvresnet", "bottleneck"): 2,
    }[(family, block)]


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
        if self.family == "densenet":
            return 1
        if self.family in ("preresnet", "mobilenetv2") and stage == len(self.stages) - 1:
            return 1
        return 0

    @property
    def units_per_stage(self) -> tuple[int, ...]:
        """Blocks (VGG: convs; DenseNet: dense layers) in each stage."""
        k = entries_per_unit(self.family, self.block)
        return tuple((len(st) - self.closing_entries(s)) // k for s, st in enumerate(self.stages))

    @property
    def depth(self) -> int:
        """Nominal depth, as in the model's name (VGG-16, ResNet-56, DenseNet-40...)."""
        units = sum(self.units_per_stage)
        if self.family == "vgg":
            return units + 3  # named after ImageNet VGG: convs + 3 fully connected layers
        if self.family == "mobilenetv2":
            return units  # named without a depth; this counts its inverted residual blocks
        if self.family == "tvresnet":
            return (3 if self.block == "bottleneck" else 2) * units + 2
        if self.family == "densenet":
            per_layer = 2 if self.block == "bottleneck" else 1
            return per_layer * units + len(self.stages) + 1  # stem, transitions, classifier
        per_block = 3 if self.block == "bottleneck" else 2
        return per_block * units + 2

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``vgg16``, ``resnet56``, ``preresnet164``, ``densenet-bc100``."""
        if self.family == "densenet" and self.block == "bottleneck":
            return f"densenet-bc{self.depth}"
        if self.family == "mobilenetv2":
            return "mobilenetv2"
        if self.family == "tvresnet":
            return f"resnet{self.depth}"
        return f"{self.family}{self.depth}"

    def widths(self) -> list[int]:
        """All prunable widths, flattened in forward order."""
        return [w for stage in self.stages for w in stage]

    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise `SpecError` with a one-line, actionable message if the spec is impossible."""
        if self.family not in FAMILY_BLOCKS:
            raise SpecError(f"unknown family {self.family!r}; expected one of {sorted(FAMILY_BLOCKS)}")
        if self.block not in FAMILY_BLOCKS[self.family]:
            raise SpecError(
                f"family {self.family!r} has no block type {self.block!r}; "
                f"expected one of {list(FAMILY_BLOCKS[self.family])}"
            )
        for field in ("num_classes", "in_channels", "input_size"):
            _check_positive(field, getattr(self, field))
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
        if self.family != "vgg" and self.head is not None:
            raise SpecError(f"family {self.family!r} has no head option; remove 'head'")
        if self.gated not in (True, False):
            raise SpecError(f"gated must be true or false, got {self.gated!r}")
        if self.gated and self.family not in ("resnet", "preresnet"):
            raise SpecError(f"only residual families have block gates; {self.family!r} cannot be gated")
        if self.family != "densenet" and self.growth:
            raise SpecError(f"family {self.family!r} has no growth rate; remove 'growth'")
        if self.family != "mobilenetv2" and self.strides:
            raise SpecError(f"family {self.family!r} has fixed strides; remove 'strides'")
        getattr(self, f"_validate_{self.family}")()
        halvings = self.halvings
        if self.input_size < 2**halvings:
            raise SpecError(
                f"input_size {self.input_size} is too small: the network halves it {halvings} times; "
                f"use input_size >= {2**halvings}"
            )

    @property
    def halvings(self) -> int:
        """How many times the network halves its input's side before the global pool."""
        if self.family == "mobilenetv2":
            return sum(1 for s in self.strides if s == 2)
        if self.family == "tvresnet":
            return len(self.stages) + 1  # stem conv and max-pool, then every stage but the first
        if self.head == "imagenet":
            return len(self.stages)  # a max-pool after every stage
        return len(self.stages) - 1

    def _validate_mobilenetv2(self) -> None:
        if self.stem_width:
            raise SpecError("MobileNetV2 specs have no stem_width: the stem's width is stages[0][0]; remove it")
        if len(self.stages[0]) != 1 + (len(self.stages) == 1):
            raise SpecError(
                f"stages[0] has {len(self.stages[0])} widths; MobileNetV2's first stage is one block without an "
                "expanding conv, whose hidden width is the stem's"
            )
        self._validate_stage_widths("block output widths")
        if len(self.strides) != len(self.stages) + 1 or any(s not in (1, 2) for s in self.strides):
            raise SpecError(
                f"strides must give the stem's stride then each stage's first-block stride ({len(self.stages) + 1} "
                f"values of 1 or 2), got {list(self.strides)}"
            )
        if len(self.stages[-1]) < 2:
            raise SpecError(
                f"stages[{len(self.stages) - 1}] has {len(self.stages[-1])} width; MobileNetV2's last stage is at "
                "least one block, then the last 1x1 conv's width"
            )

    def _validate_tvresnet(self) -> None:
        self._validate_blocks()

    def _validate_vgg(self) -> None:
        if self.stage_widths or self.stem_width:
            raise SpecError("VGG specs have no stem_width or stage_widths; put every conv width in stages")
        if any(len(stage) == 0 for stage in self.stages):
            raise SpecError("every VGG stage needs at least one conv width")
        if self.head not in _HEADS:
            raise SpecError(f"VGG head must be one of {list(_HEADS)}, got {self.head!r}")
        if self.head in ("l1", "imagenet"):
            _check_positive("head_width", self.head_width)

    def _validate_resnet(self) -> None:
        self._validate_blocks()  # any residual widths: each stage's first block maps its shortcut's channels

    def _validate_preresnet(self) -> None:
        self._validate_blocks()
        k = entries_per_unit(self.family, self.block)
        for s, stage in enumerate(self.stages):
            for b in range(self.units_per_stage[s]):
                available = self._block_input(s, b)
                if stage[b * k] > available:
                    raise SpecError(
                        f"stages[{s}][{b * k}] keeps {stage[b * k]} input channels but only {available} "
                        f"enter block {b} of stage {s}"
                    )
        if self.stages[-1][-1] > self.stage_widths[-1]:
            raise SpecError(
                f"the final BN keeps {self.stages[-1][-1]} channels but the last stage has only {self.stage_widths[-1]}"
            )

    def _block_input(self, stage: int, block: int) -> int:
        if block > 0:
            return self.stage_widths[stage]
        return self.stem_width if stage == 0 else self.stage_widths[stage - 1]

    def _validate_stage_widths(self, meaning: str) -> None:
        if len(self.stage_widths) != len(self.stages):
            raise SpecError(
                f"{len(self.stages)} stages need {len(self.stages)} stage_widths ({meaning}), "
                f"got {len(self.stage_widths)}"
            )
        for s, w in enumerate(self.stage_widths):
            _check_positive(f"stage_widths[{s}]", w)

    def _validate_blocks(self) -> None:
        _check_positive("stem_width", self.stem_width)
        self._validate_stage_widths("residual widths")
        k = entries_per_unit(self.family, self.block)
        for s, stage in enumerate(self.stages):
            body = len(stage) - self.closing_entries(s)
            if body < k or body % k:
                extra = " plus 1 for the final BN" if self.closing_entries(s) else ""
                raise SpecError(
                    f"stages[{s}] has {len(stage)} widths; {self.family} {self.block} blocks take {k} "
                    f"widths each{extra}, and every stage needs at least one block"
                )

    def _validate_densenet(self) -> None:
        _check_positive("growth", self.growth)
        _check_positive("stem_width", self.stem_width)
        if len(self.stage_widths) != len(self.stages) - 1:
            raise SpecError(
                f"{len(self.stages)} dense blocks need {len(self.stages) - 1} stage_widths "
                f"(transition output widths), got {len(self.stage_widths)}"
            )
        for s, w in enumerate(self.stage_widths):
            _check_positive(f"stage_widths[{s}]", w)
        k = entries_per_unit(self.family, self.block)
        for s, stage in enumerate(self.stages):
            if len(stage) < k + 1 or (len(stage) - 1) % k:
                raise SpecError(
                    f"stages[{s}] has {len(stage)} widths; a dense block of n layers takes {k}*n + 1 "
                    f"(the last one for the closing transition or final BN)"
                )
            entering = self.stem_width if s == 0 else self.stage_widths[s - 1]
            for i in [*range(0, len(stage) - 1, k), len(stage) - 1]:
                available = entering + (i // k) * self.growth
                if stage[i] > available:
                    raise SpecError(
                        f"stages[{s}][{i}] keeps {stage[i]} input channels but only {available} are available there"
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


def _check_positive(field: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise SpecError(f"{field} must be a positive integer, got {value!r}")
