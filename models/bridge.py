"""Bring a torchvision network in: `from_torchvision` reads its widths into an `ArchSpec` and its weights
into the guided network of that spec, whose outputs equal the original's (eval mode, float tolerance).

Converted: torchvision's ``ResNet`` (``resnet18/34/50/101/152`` and the wide variants: basic and bottleneck
blocks, family ``tvresnet``), ``VGG`` with BatchNorm (``vgg11_bn`` ... ``vgg19_bn``: family ``vgg`` with
the ``imagenet`` head) and ``MobileNetV2`` (family ``mobilenetv2``), at any ``num_classes`` and width.
Widths are read from the layers, not assumed, so a network that was already pruned or widened converts
too. Dropout layers are not part of guided networks (they do nothing in eval mode). A module that is none
of these, or that has a layer the bridge does not understand (grouped convolutions of ResNeXt, VGG without
BatchNorm, another activation), is refused with one line naming the first such layer.

Example:
    >>> import torch, torchvision
    >>> original = torchvision.models.resnet18(num_classes=10).eval()
    >>> model = from_torchvision(original).eval()
    >>> model.spec.name
    'resnet18'
    >>> x = torch.randn(1, 3, 64, 64)
    >>> torch.allclose(model(x), original(x), atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from models.mobilenetv2 import MobileNetV2  # noqa: F401  (the family must be registered)
from models.registry import build
from models.spec import ArchSpec, SpecError

__all__ = ["from_torchvision", "to_torchvision", "torchvision_spec", "TORCHVISION_MODELS", "BridgeError"]

#: The torchvision constructors the bridge is tested on (others of the same classes convert as well).
TORCHVISION_MODELS = ("resnet18", "resnet34", "resnet50", "vgg11_bn", "vgg16_bn", "mobilenet_v2")


class BridgeError(SpecError):
    """A module the bridge cannot convert; the message names the first layer it does not understand."""


def from_torchvision(module: nn.Module, *, input_size: int = 224) -> nn.Module:
    """The guided network equal to a torchvision ``module``: its spec, and its weights and statistics.

    Args:
        module: a torchvision ResNet, VGG-BN or MobileNetV2 (not modified).
        input_size: the side of the images it will see (torchvision modules do not record it; it sets the
            spec's cost counts, not the weights).

    Returns:
        A module built from `torchvision_spec` (``model.spec``), on the CPU, in ``module``'s train/eval mode.
    """
    spec = torchvision_spec(module, input_size=input_size)
    model = build(spec)
    theirs = list(module.state_dict().items())
    ours = list(model.state_dict().items())
    if len(theirs) != len(ours):  # the parse below checked every layer: this is a bug, not a user error
        raise AssertionError(f"{len(theirs)} tensors in the torchvision module, {len(ours)} in its guided twin")
    state = {}
    for (name, tensor), (their_name, their_tensor) in zip(ours, theirs):
        if tensor.shape != their_tensor.shape:
            raise AssertionError(f"{their_name} {tuple(their_tensor.shape)} does not fit {name} {tuple(tensor.shape)}")
        state[name] = their_tensor.detach().cpu().clone()
    model.load_state_dict(state, strict=True)
    return model.train(module.training)


def to_torchvision(model: nn.Module, name: str) -> nn.Module:
    """The torchvision ``name`` network (``resnet18``, ``vgg16_bn``, ``mobilenet_v2``, ...) with ``model``'s
    widths and weights: the way back from `from_torchvision`, for a network converted from it and then pruned
    or designed in guided. Its layers are torchvision's own (``conv1``, ``layer1.0.conv1``, ``features.0.0``),
    resized to the widths of ``model`` and holding its tensors; it is checked to convert back to ``model``'s
    spec, and its outputs equal ``model``'s (eval mode, float tolerance).

    Example:
        >>> import torch, torchvision
        >>> back = to_torchvision(from_torchvision(torchvision.models.resnet18(num_classes=10)), "resnet18")
        >>> type(back).__name__, back.fc.out_features
        ('ResNet', 10)
    """
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise BridgeError(f"unknown torchvision model {name!r}")
    spec = model.spec
    module = tvm.get_model(name, weights=None, num_classes=spec.num_classes)
    ours = [m for m in model.modules() if isinstance(m, _LAYERS)]
    theirs = [(n, m) for n, m in module.named_modules() if isinstance(m, _LAYERS)]
    if len(ours) != len(theirs) or any(type(a) is not type(b) for a, (_, b) in zip(ours, theirs)):
        raise BridgeError(f"a {spec.family} network of {len(ours)} layers is not torchvision's {name}")
    for layer, (where, old) in zip(ours, theirs):
        _replace(module, where, _resized(layer, old))
    shortcuts = [m.residual for m in model.modules() if hasattr(m, "residual")]
    blocks = [m for m in module.modules() if hasattr(m, "use_res_connect")]
    for block, residual in zip(blocks, shortcuts):  # MobileNetV2 decides them when built; ours follow widths
        block.use_res_connect = residual
    state = dict(zip(module.state_dict(), model.state_dict().values()))
    module.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    if torchvision_spec(module, input_size=spec.input_size).widths() != spec.widths():
        raise BridgeError(f"{name} rebuilt with these widths does not read back as the same architecture")
    return module.train(model.training)


_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def _resized(layer: nn.Module, old: nn.Module) -> nn.Module:
    """A new layer of torchvision's kind ``old`` with ``layer``'s shape."""
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            old.kernel_size,
            old.stride,
            old.padding,
            groups=layer.groups,
            bias=layer.bias is not None,
        )
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm2d(layer.num_features, eps=old.eps, momentum=old.momentum)
    return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)


def _replace(module: nn.Module, where: str, new: nn.Module) -> None:
    parent, _, child = where.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, child, new)


def torchvision_spec(module: nn.Module, *, input_size: int = 224) -> ArchSpec:
    """The `ArchSpec` of a torchvision ResNet, VGG-BN or MobileNetV2, read from its layers."""
    import torchvision.models as tvm

    readers = ((tvm.ResNet, _resnet), (tvm.VGG, _vgg), (tvm.MobileNetV2, _mobilenetv2))
    for cls, read in readers:
        if isinstance(module, cls):
            return read(module, input_size)
    raise BridgeError(
        f"cannot convert a {type(module).__name__}: the bridge reads torchvision's ResNet, VGG (with BatchNorm) "
        "and MobileNetV2"
    )


# ---------------------------------------------------------------------- checks
def _expect(module: nn.Module, name: str, kind: type | tuple[type, ...], what: str) -> nn.Module:
    if not isinstance(module, kind):
        raise BridgeError(f"cannot convert {name} ({type(module).__name__}): expected {what}")
    return module


def _conv(
    module: nn.Module,
    name: str,
    kernel: int,
    *,
    stride: Iterable[int] = (1,),
    depthwise: bool = False,
    bias: bool = False,
) -> nn.Conv2d:
    """``module`` checked to be the conv torchvision builds there (kernel, stride, padding, groups, bias)."""
    conv = _expect(module, name, nn.Conv2d, f"a {kernel}x{kernel} Conv2d")
    groups = conv.in_channels if depthwise else 1
    problems = []
    if conv.kernel_size != (kernel, kernel) or conv.padding != (kernel // 2, kernel // 2):
        problems.append(f"kernel {conv.kernel_size} with padding {conv.padding}")
    if conv.stride[0] not in tuple(stride) or conv.stride[0] != conv.stride[1]:
        problems.append(f"stride {conv.stride}")
    if conv.groups != groups or (depthwise and conv.out_channels != conv.in_channels):
        problems.append(f"{conv.groups} groups")
    if conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        problems.append(f"dilation {conv.dilation}, padding mode {conv.padding_mode}")
    if (conv.bias is not None) != bias:
        problems.append("a bias" if conv.bias is not None else "no bias")
    if problems:
        kind = "depthwise " if depthwise else ""
        raise BridgeError(
            f"cannot convert {name}: {', '.join(problems)} where torchvision's {kind}{kernel}x{kernel} conv belongs"
        )
    return conv


def _bn(module: nn.Module, name: str, width: int) -> nn.BatchNorm2d:
    bn = _expect(module, name, nn.BatchNorm2d, "a BatchNorm2d")
    if bn.num_features != width or not bn.affine or not bn.track_running_stats or bn.eps != 1e-5:
        raise BridgeError(
            f"cannot convert {name}: a BatchNorm2d with affine weights, running statistics and eps 1e-5 "
            f"over {width} channels belongs there"
        )
    return bn


def _conv_bn_act(module: nn.Module, name: str, kernel: int, act: type, **conv) -> nn.Conv2d:
    """torchvision's ``Conv2dNormActivation`` (conv, BatchNorm, activation)."""
    parts = list(_expect(module, name, nn.Sequential, "a conv-BatchNorm-activation sequence").children())
    if len(parts) != 3:
        raise BridgeError(f"cannot convert {name}: {len(parts)} layers where conv, BatchNorm and activation belong")
    c = _conv(parts[0], f"{name}.0", kernel, **conv)
    _bn(parts[1], f"{name}.1", c.out_channels)
    _expect(parts[2], f"{name}.2", act, act.__name__)
    return c


# ---------------------------------------------------------------------- families
def _resnet(m, input_size: int) -> ArchSpec:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    stem = _conv(m.conv1, "conv1", 7, stride=(2,))
    _bn(m.bn1, "bn1", stem.out_channels)
    _expect(m.relu, "relu", nn.ReLU, "ReLU")
    pool = _expect(m.maxpool, "maxpool", nn.MaxPool2d, "a 3x3 stride-2 MaxPool2d")
    if (pool.kernel_size, pool.stride, pool.padding) != (3, 2, 1):
        raise BridgeError("cannot convert maxpool: torchvision's ResNet pools 3x3 with stride 2 and padding 1")
    stages, outs, kind = [], [], None
    for s in range(4):
        layer = _expect(getattr(m, f"layer{s + 1}"), f"layer{s + 1}", nn.Sequential, "a Sequential of blocks")
        entries, out = [], None
        for b, block in enumerate(layer):
            name = f"layer{s + 1}.{b}"
            _expect(block, name, (BasicBlock, Bottleneck), "a BasicBlock or Bottleneck")
            this = "basic" if isinstance(block, BasicBlock) else "bottleneck"
            if kind not in (None, this):
                raise BridgeError(f"cannot convert {name}: a {this} block in a network of {kind} blocks")
            kind = this
            stride = (2,) if s and not b else (1,)
            if this == "basic":
                c1 = _conv(block.conv1, f"{name}.conv1", 3, stride=stride)
                c2 = _conv(block.conv2, f"{name}.conv2", 3)
                convs = [c1, c2]
            else:
                c1 = _conv(block.conv1, f"{name}.conv1", 1)
                c2 = _conv(block.conv2, f"{name}.conv2", 3, stride=stride)
                c3 = _conv(block.conv3, f"{name}.conv3", 1)
                convs = [c1, c2, c3]
            for i, c in enumerate(convs, 1):
                _bn(getattr(block, f"bn{i}"), f"{name}.bn{i}", c.out_channels)
            out = convs[-1].out_channels
            _shortcut(block, name, in_ch=convs[0].in_channels, out=out, stride=stride[0])
            entries += [c.out_channels for c in convs[:-1]]
        stages.append(tuple(entries))
        outs.append(out)
    _expect(m.fc, "fc", nn.Linear, "a Linear classifier")
    return ArchSpec(
        family="tvresnet",
        block=kind,
        stages=tuple(stages),
        stage_widths=tuple(outs),
        stem_width=stem.out_channels,
        num_classes=m.fc.out_features,
        in_channels=stem.in_channels,
        input_size=input_size,
    )


def _shortcut(block: nn.Module, name: str, *, in_ch: int, out: int, stride: int) -> None:
    needed = stride > 1 or in_ch != out
    if block.downsample is None:
        if needed:
            raise BridgeError(f"cannot convert {name}: its shape changes but it has no downsample shortcut")
        return
    if not needed:
        raise BridgeError(f"cannot convert {name}.downsample: a projection where the shape does not change")
    parts = list(_expect(block.downsample, f"{name}.downsample", nn.Sequential, "a conv-BatchNorm Sequential"))
    if len(parts) != 2:
        raise BridgeError(
            f"cannot convert {name}.downsample: {len(parts)} layers where a 1x1 conv and a BatchNorm belong"
        )
    _conv(parts[0], f"{name}.downsample.0", 1, stride=(stride,))
    _bn(parts[1], f"{name}.downsample.1", out)


def _vgg(m, input_size: int) -> ArchSpec:
    stages, current, in_ch = [], [], None
    layers = list(m.features)
    i = 0
    while i < len(layers):
        name = f"features.{i}"
        if isinstance(layers[i], nn.MaxPool2d):
            pool = layers[i]
            if (pool.kernel_size, pool.stride) != (2, 2) or not current:
                raise BridgeError(
                    f"cannot convert {name}: a 2x2 stride-2 MaxPool2d after a stage's convs belongs there"
                )
            stages.append(tuple(current))
            current, i = [], i + 1
            continue
        conv = _conv(layers[i], name, 3, bias=True)
        after = layers[i + 1 : i + 3] + [None] * 2
        if not isinstance(after[0], nn.BatchNorm2d):
            raise BridgeError(
                f"cannot convert features.{i + 1} ({type(after[0]).__name__}): a BatchNorm2d belongs there; the "
                "bridge converts VGG with BatchNorm (vgg11_bn ... vgg19_bn)"
            )
        _bn(after[0], f"features.{i + 1}", conv.out_channels)
        _expect(after[1], f"features.{i + 2}", nn.ReLU, "ReLU")
        if in_ch is not None and conv.in_channels != in_ch:
            raise BridgeError(f"cannot convert {name}: it reads {conv.in_channels} channels, {in_ch} arrive")
        in_ch = conv.out_channels
        current.append(conv.out_channels)
        i += 3
    if current or not stages:
        raise BridgeError(
            f"cannot convert features.{len(layers) - 1}: torchvision's VGG ends its features with a MaxPool2d"
        )
    pool = _expect(m.avgpool, "avgpool", nn.AdaptiveAvgPool2d, "a 7x7 AdaptiveAvgPool2d")
    if pool.output_size not in (7, (7, 7)):
        raise BridgeError(f"cannot convert avgpool: it pools to {pool.output_size}, torchvision's VGG to 7x7")
    head = list(m.classifier)
    kinds = (nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear)
    for j, kind in enumerate(kinds):
        _expect(head[j] if j < len(head) else None, f"classifier.{j}", kind, kind.__name__)
    if len(head) != len(kinds):
        raise BridgeError(f"cannot convert classifier.{len(kinds)}: torchvision's VGG classifier has 7 layers")
    return ArchSpec(
        family="vgg",
        stages=tuple(stages),
        num_classes=head[6].out_features,
        in_channels=layers[0].in_channels,
        input_size=input_size,
        head="imagenet",
        head_width=head[0].out_features,
    )


def _mobilenetv2(m, input_size: int) -> ArchSpec:
    from torchvision.models.mobilenetv2 import InvertedResidual

    feats = list(m.features)
    stem = _conv_bn_act(feats[0], "features.0", 3, nn.ReLU6, stride=(1, 2))
    strides, stages, outs = [stem.stride[0]], [], []
    in_ch = stem.out_channels
    for i, block in enumerate(feats[1:-1], 1):
        name = f"features.{i}"
        _expect(block, name, InvertedResidual, "an InvertedResidual block")
        parts = list(block.conv)
        expand = len(parts) == 4
        if len(parts) not in (3, 4):
            raise BridgeError(f"cannot convert {name}.conv: {len(parts)} layers where 3 or 4 belong")
        if expand == (i == 1):
            raise BridgeError(
                f"cannot convert {name}: the bridge reads MobileNetV2 whose first block alone has no expanding conv"
            )
        hidden = in_ch
        if expand:
            hidden = _conv_bn_act(parts[0], f"{name}.conv.0", 1, nn.ReLU6).out_channels
        dw = _conv_bn_act(parts[-3], f"{name}.conv.{len(parts) - 3}", 3, nn.ReLU6, stride=(1, 2), depthwise=True)
        if dw.in_channels != hidden:
            raise BridgeError(f"cannot convert {name}: its depthwise conv reads {dw.in_channels} of {hidden} channels")
        project = _conv(parts[-2], f"{name}.conv.{len(parts) - 2}", 1)
        _bn(parts[-1], f"{name}.conv.{len(parts) - 1}", project.out_channels)
        out, stride = project.out_channels, dw.stride[0]
        implied = stride == 1 and in_ch == out  # the guided block's rule, on the widths it has now
        built = getattr(block, "use_res_connect", implied)  # torchvision's, decided on the widths it was built with
        if built != implied:
            raise BridgeError(
                f"cannot convert {name}: torchvision built it {'with' if built else 'without'} a shortcut, but its "
                f"widths now ({in_ch} -> {out}, stride {stride}) give a guided block {'none' if built else 'one'} "
                "(a pruned stem or stage that reaches or leaves its neighbour's width); prune it in guided instead"
            )
        if not stages or stride == 2 or out != outs[-1]:  # a new bottleneck sequence
            stages.append([])
            outs.append(out)
            strides.append(stride)
        stages[-1].append(hidden)
        in_ch = out
    last = _conv_bn_act(feats[-1], f"features.{len(feats) - 1}", 1, nn.ReLU6)
    head = list(m.classifier)
    if len(head) != 2:
        raise BridgeError(f"cannot convert classifier: {len(head)} layers where Dropout and Linear belong")
    _expect(head[0], "classifier.0", nn.Dropout, "Dropout")
    fc = _expect(head[1], "classifier.1", nn.Linear, "a Linear classifier")
    return ArchSpec(
        family="mobilenetv2",
        block="inverted",
        stages=(*(tuple(s) for s in stages[:-1]), (*stages[-1], last.out_channels)),
        stage_widths=tuple(outs),
        strides=tuple(strides),
        num_classes=fc.out_features,
        in_channels=stem.in_channels,
        input_size=input_size,
    )
