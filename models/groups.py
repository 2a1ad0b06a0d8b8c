"""Channel groups: which tensors share one prunable channel dimension.

Every entry of ``spec.stages`` is one group: a set of channels that pruning removes together, and the
slices of every tensor that carries them. A group is either

* ``conv``: the output filters of a conv (and the BatchNorm after it), consumed by one next layer; or
* ``select``: the input channels a `models.blocks.ChannelSelect` keeps before a BatchNorm (pre-activation
  blocks and DenseNet layers, whose input is shared and cannot shrink); or
* ``tied``: channels a shortcut may also carry (MobileNetV2's stem, which its first block adds to its
  output when their widths agree): no channel method prunes them, designs may change them.

Surgery only needs ``tensors``; criteria use ``conv`` (filter norms), ``bn`` (scale factors) and
``consumer`` (the layer whose input these channels are: reconstruction methods rewrite its weights).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChannelGroup", "bn_tensors", "conv_group", "select_group"]


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

    @property
    def key(self) -> tuple[int, int]:
        """``(stage, index)``: where this group's width lives in ``spec.stages``."""
        return (self.stage, self.index)

    @property
    def name(self) -> str:
        """A readable name: the producing conv, or the selecting BN."""
        return self.conv or self.bn


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
