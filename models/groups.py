"""Channel groups: which tensors share one prunable channel dimension.

Every entry of ``spec.stages`` is one group: a set of channels that pruning removes together, and the
slices of every tensor that carries them. A group is either

* ``conv``: the output filters of a conv (and the BatchNorm after it), consumed by one next layer; or
* ``select``: the input channels a `models.blocks.ChannelSelect` keeps before a BatchNorm (pre-activation
  blocks and DenseNet layers, whose input is shared and cannot shrink); or
* ``tied``: channels a shortcut may also carry (MobileNetV2's stem, which its first block adds to its
  output when their widths agree): no channel method prunes them, designs may change them; or
* ``coupled``: channels several layers write and read at once (a residual stage's block outputs, with the
  stem or a projection shortcut where they add to it). Only pruning with ``coupled=True`` sees these
  groups (`models.registry.channel_groups`); their widths live in ``spec.stage_widths`` (index `STREAM`)
  or ``spec.stem_width`` (index `STEM`), and every member keeps the same channels.

Surgery only needs ``tensors`` (plus, for coupled groups, the shortcut maps and channel selections whose
*values* name these channels: ``remaps`` and ``selects``); criteria use ``producers`` (filter norms),
``scales`` (BatchNorm scale factors) and ``readers`` (the layers whose input these channels are:
reconstruction methods rewrite their weights).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChannelGroup", "STREAM", "STEM", "bn_tensors", "conv_group", "select_group", "coupled_group"]

Key = tuple[int, int]

#: ``index`` of a coupled group whose width is ``spec.stage_widths[stage]`` (a residual stage's channels).
STREAM = -1
#: ``index`` of a coupled group whose width is ``spec.stem_width``.
STEM = -2


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable set of channels.

    Attributes:
        stage: stage index in ``spec.stages``.
        index: entry index within the stage.
        width: channels now.
        kind: ``"conv"``, ``"select"`` or ``"tied"``.
        conv: the producing conv (``kind`` ``"conv"`` or ``"tied"``), else ``None``.
        bn: the BatchNorm that scales these channels.
        consumer: the conv or linear layer that reads these channels (its weight's dim 1).
        tensors: ``(state_dict key, dim)`` pairs sliced when channels are removed.
        inner: layers between producer and consumer that act on each of these channels alone (a
            depthwise conv and its BatchNorm): all of their cost goes with the group.
        convs: coupled groups: every conv that writes these channels.
        bns: coupled groups: every BatchNorm that scales them, each with the `ChannelSelect` it reads them
            through (``None``: directly, channel ``c`` at position ``c``).
        consumers: coupled groups: every conv or linear layer that reads them (weight dim 1).
        remaps: coupled groups: shortcut maps (`models.resnet.BasicBlock`) whose values are these channels.
        selects: coupled groups: `ChannelSelect` modules whose index values are these channels, each with
            the key of its own (``select``) group.
        ties: more ``(stage, index)`` positions of the spec that hold this same width (the stem's, where the
            first residual stage adds the stem's channels to its own).
        apart: keys of groups whose width must stay different from this one's: where two widths agree, the
            block between them would lose its projection (or gain a residual) and compute another function.
        label: a readable name for groups without one producing conv.
    """

    stage: int
    index: int
    width: int
    kind: str
    conv: str | None
    bn: str
    consumer: str
    tensors: tuple[tuple[str, int], ...]
    inner: tuple[str, ...] = ()
    convs: tuple[str, ...] = ()
    bns: tuple[tuple[str, str | None], ...] = ()
    consumers: tuple[str, ...] = ()
    remaps: tuple[str, ...] = ()
    selects: tuple[tuple[str, Key], ...] = ()
    ties: tuple[Key, ...] = ()
    apart: tuple[Key, ...] = ()
    label: str = ""

    @property
    def key(self) -> tuple[int, int]:
        """``(stage, index)``: where this group's width lives in ``spec.stages``."""
        return (self.stage, self.index)

    @property
    def name(self) -> str:
        """A readable name: the label, the producing conv, or the selecting BN."""
        return self.label or self.conv or self.bn

    @property
    def producers(self) -> tuple[str, ...]:
        """Every conv that writes these channels (none for a ``select`` group)."""
        if self.kind == "coupled":
            return self.convs
        return (self.conv,) if self.conv else ()

    @property
    def scales(self) -> tuple[tuple[str, str | None], ...]:
        """Every BatchNorm that scales these channels, with the selection it reads them through."""
        return self.bns if self.kind == "coupled" else ((self.bn, None),)

    @property
    def readers(self) -> tuple[str, ...]:
        """Every layer that reads these channels as its input (weight dim 1)."""
        return self.consumers if self.kind == "coupled" else (self.consumer,)


def bn_tensors(bn: str) -> tuple[tuple[str, int], ...]:
    """The per-channel tensors of a BatchNorm."""
    return tuple((f"{bn}.{t}", 0) for t in ("weight", "bias", "running_mean", "running_var"))


def conv_group(stage: int, index: int, width: int, conv: str, bn: str, consumer: str) -> ChannelGroup:
    """Output filters of ``conv`` normalised by ``bn`` and read by ``consumer``."""
    tensors = ((f"{conv}.weight", 0), *bn_tensors(bn), (f"{consumer}.weight", 1))
    return ChannelGroup(stage, index, width, "conv", conv, bn, consumer, tensors)


def select_group(stage: int, index: int, width: int, select: str, bn: str, consumer: str) -> ChannelGroup:
    """Input channels kept by ``select``, normalised by ``bn`` and read by ``consumer``."""
    tensors = ((f"{select}.index", 0), *bn_tensors(bn), (f"{consumer}.weight", 1))
    return ChannelGroup(stage, index, width, "select", None, bn, consumer, tensors)


def coupled_group(
    key: Key,
    width: int,
    label: str,
    *,
    convs: tuple[str, ...],
    bns: tuple[tuple[str, str | None], ...] = (),
    consumers: tuple[str, ...] = (),
    remaps: tuple[str, ...] = (),
    selects: tuple[tuple[str, Key], ...] = (),
    maps: tuple[str, ...] = (),
    ties: tuple[Key, ...] = (),
    apart: tuple[Key, ...] = (),
    inner: tuple[str, ...] = (),
) -> ChannelGroup:
    """Channels written by every conv in ``convs`` (each normalised by its BN in ``bns`` that reads them
    directly) and read by every layer in ``consumers``; ``maps`` are shortcut-map buffers with one entry per
    channel of this group (they are sliced like the channels); ``inner`` are depthwise layers (a conv and
    its BN) that filter each of these channels alone."""
    tensors = tuple((f"{c}.weight", 0) for c in convs)
    tensors += tuple(t for name in inner for t in _per_channel(name))
    tensors += tuple(t for bn, via in bns if via is None for t in bn_tensors(bn))
    tensors += tuple((f"{c}.weight", 1) for c in consumers) + tuple((m, 0) for m in maps)
    direct = next((bn for bn, via in bns if via is None), "")
    return ChannelGroup(
        key[0],
        key[1],
        width,
        "coupled",
        convs[0] if convs else None,
        direct,
        consumers[0] if consumers else "",
        tensors,
        inner,
        convs=convs,
        bns=bns,
        consumers=consumers,
        remaps=remaps,
        selects=selects,
        ties=ties,
        apart=apart,
        label=label,
    )


def _per_channel(name: str) -> tuple[tuple[str, int], ...]:
    """A depthwise layer's tensors: a conv's weight, or a BatchNorm's four."""
    return bn_tensors(name) if name.endswith("bn") else ((f"{name}.weight", 0),)
