"""Registries: model names to specs, and families to builders and layer lists.

Adding a model is one function decorated with `register_model`; adding a family is one module that
declares it (`models.family.register_family`), imported before its specs are made (this module imports
the built-in ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from models.cost import Cost, Layer, count
from models.densenet import densenet_spec
from models.family import FAMILIES, Family
from models.groups import ChannelGroup
from models.mobilenetv2 import (
    CIFAR_STRIDES,
    IMAGENET_STRIDES,
    mobilenetv2_spec,
)
from models.preresnet import (
    preresnet_spec,
)
from models.resnet import resnet_spec
from models.spec import ArchSpec, SpecError, scale_width
from models.tvresnet import (
    TV_RESNET_BLOCKS,
    tvresnet_spec,
)
from models.vgg import IMAGENET_HEAD_WIDTH, VGG_WIDTHS, vgg_spec

__all__ = [
    "Family",
    "FAMILIES",
    "register_model",
    "list_models",
    "create_spec",
    "create_model",
    "build",
    "layers",
    "channel_groups",
    "pattern_stages",
    "cost",
]


#: name -> factory(*, width_mult, num_classes, in_channels[, input_size]) -> ArchSpec
_MODELS: dict[str, Callable[..., ArchSpec]] = {}
_TINY: set[str] = set()


def register_model(name: str, *, tiny: bool = False) -> Callable[[Callable[..., ArchSpec]], Callable[..., ArchSpec]]:
    """Register a spec factory under ``name``; ``tiny`` marks test-size variants."""

    def deco(fn: Callable[..., ArchSpec]) -> Callable[..., ArchSpec]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        if tiny:
            _TINY.add(name)
        return fn

    return deco


def list_models(*, include_tiny: bool = False) -> list[str]:
    """Registered model names, sorted (tiny test variants only when asked)."""
    return sorted(n for n in _MODELS if include_tiny or n not in _TINY)


def create_spec(
    name: str,
    *,
    num_classes: int = 10,
    width_mult: float = 1.0,
    widths: Sequence[Sequence[int]] | None = None,
    head: str | None = None,
    input_size: int | None = None,
    in_channels: int = 3,
) -> ArchSpec:
    """The spec of a registered model.

    Args:
        name: a name from `list_models` (``"vgg16"``, ``"resnet56"``, ...).
        num_classes: classifier outputs.
        width_mult: multiplies every width (rounded, at least 1).
        widths: replaces the per-stage widths (``spec.stages``) after scaling: one list per stage.
        head: VGG only: ``"l1"`` (default), ``"slim"`` or ``"imagenet"`` (torchvision's classifier, 4096 wide
            times ``width_mult``).
        input_size: input side in pixels (default: the model's, 32 for CIFAR models).
        in_channels: input image channels.

    Example:
        >>> create_spec("resnet56").depth
        56
    """
    if name not in _MODELS:
        raise SpecError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    if not 0 < width_mult <= 64:  # also refuses nan and inf
        raise SpecError(f"width_mult must be positive and at most 64, got {width_mult}")
    kwargs = {"num_classes": num_classes, "width_mult": width_mult, "in_channels": in_channels}
    if input_size is not None:
        kwargs["input_size"] = input_size
    spec = _MODELS[name](**kwargs)
    if head is not None:
        if "head" not in FAMILIES[spec.family].options:
            raise SpecError(f"model {name!r} has no head option (only VGG has one); drop it")
        wide = {"head_width": scale_width(IMAGENET_HEAD_WIDTH, width_mult)} if head == "imagenet" else {}
        spec = spec.replace(head=head, **wide)
    if widths is not None:
        spec = spec.replace(stages=tuple(tuple(s) for s in widths))
    return spec


def build(spec: ArchSpec, *, seed: int | None = None) -> nn.Module:
    """Build the module a spec describes, initialised as in the paper's code; ``model.spec`` is ``spec``.

    Args:
        spec: the architecture.
        seed: makes initialisation reproducible without touching the global RNG.

    Example:
        >>> import torch
        >>> model = build(create_spec("resnet20"), seed=0)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    if seed is None:
        return FAMILIES[spec.family].build(spec)
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FAMILIES[spec.family].build(spec)


def create_model(name: str, *, seed: int | None = None, **kwargs) -> nn.Module:
    """`build(create_spec(name, **kwargs), seed=seed)`."""
    return build(create_spec(name, **kwargs), seed=seed)


def layers(spec: ArchSpec) -> list[Layer]:
    """The weight layers of a spec (conv, BN, linear), in forward order, named as in the built module."""
    return FAMILIES[spec.family].layers(spec)


def channel_groups(spec: ArchSpec, *, coupled: bool = False) -> list[ChannelGroup]:
    """The prunable channel groups of a spec, one per entry of ``spec.stages``, in forward order; with
    ``coupled``, then the groups of channels several layers share (`models.groups`: residual widths, the
    stem), which a family without them refuses (`SpecError`)."""
    family = FAMILIES[spec.family]
    if not coupled:
        return family.groups(spec)
    if family.coupled is None:
        raise SpecError(
            f"{spec.family} has no coupled channel groups that pruning supports (DenseNet concatenates its "
            "layers' channels); prune it without coupled groups"
        )
    return family.coupled(spec)


def pattern_stages(spec: ArchSpec) -> list[list[int]]:
    """The design-pattern stage of every entry of ``spec.stages``: where a pruning pattern pools it and a
    guided design reads its ratio. Its own stage, except where a family says otherwise (MobileNetV2's last
    1x1 conv is a stage of its own: see `models.mobilenetv2.mobilenetv2_pattern_stages`).

    Example:
        >>> pattern_stages(create_spec("vgg11", width_mult=0.25))
        [[0], [1], [2, 2], [3, 3], [4, 4]]
    """
    own = FAMILIES[spec.family].pattern_stages
    return own(spec) if own else [[s] * len(entries) for s, entries in enumerate(spec.stages)]


def cost(spec: ArchSpec, density: dict[str, float] | None = None) -> Cost:
    """Parameters and MACs of a spec (non-zero counts given per-layer weight densities).

    A model built from a spec may stand in for it (its ``spec`` is counted); anything else is refused.

    Example:
        >>> cost(create_spec("vgg16")).params
        14987722
    """
    if not isinstance(spec, ArchSpec):
        spec = getattr(spec, "spec", spec)
    if not isinstance(spec, ArchSpec):
        raise SpecError(
            f"cost counts architectures described by an ArchSpec, not a {type(spec).__name__}: pass a spec "
            "(create_spec, ArchSpec.from_json) or a model built from one (models.build)"
        )
    return count(layers(spec), density)


# ---------------------------------------------------------------------- registered models
def _vgg(depth: int):
    def factory(**kw) -> ArchSpec:
        return vgg_spec(VGG_WIDTHS[depth], **kw)

    return factory


for _d in VGG_WIDTHS:
    register_model(f"vgg{_d}")(_vgg(_d))

for _d in (20, 32, 44, 56, 110):
    register_model(f"resnet{_d}")(lambda n=(_d - 2) // 6, **kw: resnet_spec(n, **kw))

for _d in (56, 110):
    register_model(f"preresnet{_d}")(lambda n=(_d - 2) // 6, **kw: preresnet_spec(n, block="basic", **kw))
register_model("preresnet164")(lambda **kw: preresnet_spec(18, block="bottleneck", **kw))

register_model("densenet40")(lambda **kw: densenet_spec(12, block="basic", **kw))
register_model("densenet-bc100")(lambda **kw: densenet_spec(16, block="bottleneck", compression=0.5, **kw))

for _d in TV_RESNET_BLOCKS:  # torchvision's ImageNet ResNets, at 224 pixels
    register_model(f"resnet{_d}")(lambda d=_d, input_size=224, **kw: tvresnet_spec(d, input_size=input_size, **kw))

register_model("mobilenetv2")(lambda **kw: mobilenetv2_spec(strides=CIFAR_STRIDES, **kw))
register_model("mobilenetv2-imagenet")(
    lambda input_size=224, **kw: mobilenetv2_spec(strides=IMAGENET_STRIDES, input_size=input_size, **kw)
)


# Tiny variants for fast tests: widths 2 to 16, 16x16 inputs.
@register_model("vgg-tiny", tiny=True)
def _vgg_tiny(*, input_size: int = 16, **kw) -> ArchSpec:
    return vgg_spec(((8,), (8, 8), (16,), (16,), (16,)), head_width=16, input_size=input_size, **kw)


register_model("resnet-tiny", tiny=True)(
    lambda input_size=16, **kw: resnet_spec(2, base=(4, 8, 16), input_size=input_size, **kw)
)
register_model("preresnet-tiny", tiny=True)(
    lambda input_size=16, **kw: preresnet_spec(2, block="basic", base=(4, 8, 16), input_size=input_size, **kw)
)
register_model("preresnet-bottleneck-tiny", tiny=True)(
    lambda input_size=16, **kw: preresnet_spec(1, block="bottleneck", base=(2, 4, 4), input_size=input_size, **kw)
)
register_model("resnet-gated-tiny", tiny=True)(
    lambda input_size=16, **kw: resnet_spec(2, base=(4, 8, 16), input_size=input_size, **kw).replace(gated=True)
)
register_model("preresnet-gated-tiny", tiny=True)(
    lambda input_size=16, **kw: preresnet_spec(2, block="basic", base=(4, 4, 8), input_size=input_size, **kw).replace(
        gated=True
    )
)
register_model("mobilenetv2-tiny", tiny=True)(
    lambda input_size=16, **kw: mobilenetv2_spec(
        strides=(1, 1, 2, 2),
        setting=((1, 8, 1, 1), (2, 8, 2, 2), (2, 16, 2, 2)),
        stem=8,
        head=32,
        input_size=input_size,
        **kw,
    )
)
register_model("tvresnet-tiny", tiny=True)(
    lambda input_size=32, **kw: tvresnet_spec(18, input_size=input_size, **kw).replace(
        stem_width=4, stages=((4,), (8,), (8,), (8,)), stage_widths=(4, 8, 8, 16)
    )
)
register_model("tvresnet-bottleneck-tiny", tiny=True)(
    lambda input_size=32, **kw: tvresnet_spec(50, input_size=input_size, **kw).replace(
        stem_width=4, stages=((4, 4), (4, 4), (8, 8), (8, 8)), stage_widths=(16, 16, 32, 32)
    )
)
register_model("densenet-tiny", tiny=True)(
    lambda input_size=16, **kw: densenet_spec(2, block="basic", growth=4, input_size=input_size, **kw)
)
register_model("densenet-bc-tiny", tiny=True)(
    lambda input_size=16, **kw: densenet_spec(
        2, block="bottleneck", growth=4, compression=0.5, input_size=input_size, **kw
    )
)
