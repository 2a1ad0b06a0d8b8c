"""Allocators: from channel scores (or a named recipe) to how many channels each group keeps.

* `by_ratio`: every eligible group keeps ``int(width * (1 - ratio))`` (one ratio, or one per stage), as
  the L1-norm paper counts;
* `global_threshold`: one threshold over the pooled scores of all eligible groups removes the given
  fraction of their channels (Network Slimming);
* `preset`: the named per-layer recipes of Li et al. (``vgg16-a``, ``resnet56-a`` ...) from
  ``../shared/PAPER.md``.

The ratio allocators keep at least ``min_channels`` per group, so no layer vanishes, and at least the
``min_keep`` share of each (`floor`): a global threshold can otherwise take almost all of one wide layer
whose scores run low (MobileNetV2's last 1x1 conv under Network Slimming keeps 1 of its 1280 channels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from guided.errors import UserError
from models import ArchSpec, ChannelGroup

__all__ = ["by_ratio", "global_threshold", "floor", "keep_apart", "preset", "PRESETS"]

Key = tuple[int, int]


def _check_ratio(ratio: float) -> None:
    if not 0 < ratio < 1:
        raise UserError(f"pruning ratio must lie in (0, 1) (the fraction of channels removed), got {ratio}")


def by_ratio(
    groups: list[ChannelGroup], ratio: float | Sequence[float], *, min_channels: int = 1, min_keep: float = 0.0
) -> dict[Key, int]:
    """Each group keeps ``int(width * (1 - r))`` channels, ``r`` its stage's ratio (or the one ratio)."""
    stages = 1 + max(g.stage for g in groups)
    ratios = [float(ratio)] * stages if isinstance(ratio, (int, float)) else [float(r) for r in ratio]
    if len(ratios) != stages:
        raise UserError(f"{len(ratios)} stage ratios given but the network has {stages} stages")
    if isinstance(ratio, (int, float)):
        _check_ratio(ratio)
    elif not all(0 <= r < 1 for r in ratios) or not any(ratios):
        raise UserError(f"stage ratios must lie in [0, 1) and not all be 0, got {ratios}")
    return {g.key: max(floor(g, min_channels, min_keep), int(g.width * (1 - ratios[g.stage]))) for g in groups}


def global_threshold(
    groups: list[ChannelGroup],
    scores: dict[Key, torch.Tensor],
    ratio: float,
    *,
    min_channels: int = 1,
    min_keep: float = 0.0,
    charges: dict[Key, float] | None = None,
) -> dict[Key, int]:
    """Remove the ``ratio`` fraction of pooled channels with the lowest scores.

    Exactly ``int(ratio * total)`` channels are removed (before the floor: every group keeps at least
    ``min_channels`` and the ``min_keep`` share of its channels; a floor keeps channels back rather than
    removing others instead, so with one the ratio removed is lower: prune to a budget to hit one). Ties are
    broken by relative position within each group, so equal scores (an untrained network's BN scales)
    remove the same share of every group instead of every tied channel or whole leading layers.

    With ``charges`` (each group's cost per channel, `models.charge.channel_charges`), channels are ranked
    by score per unit of cost: of two equally important channels the dearer one goes first.
    """
    _check_ratio(ratio)
    per_cost = charges or {}
    pooled = torch.cat([scores[g.key].flatten().float() / per_cost.get(g.key, 1.0) for g in groups])
    spread = torch.cat([(torch.arange(scores[g.key].numel()) + 0.5) / scores[g.key].numel() for g in groups])
    n_remove = int(ratio * len(pooled))
    order = spread.argsort(stable=True)
    order = order[pooled[order].argsort(stable=True)]  # by score, ties in order of relative position
    removed = torch.zeros(len(pooled), dtype=torch.bool)
    removed[order[:n_remove]] = True
    counts, start = {}, 0
    for g in groups:
        n = scores[g.key].numel()
        counts[g.key] = max(floor(g, min_channels, min_keep), n - int(removed[start : start + n].sum()))
        start += n
    return counts


def keep_apart(groups: list[ChannelGroup], counts: dict[Key, int]) -> dict[Key, int]:
    """Counts where no two groups that must differ (`ChannelGroup.apart`: a projection shortcut, or a block
    without a residual, between them) keep the same width: the later group keeps one channel more (or, at
    its full width already, the earlier one does).

    Example:
        >>> from models import channel_groups, create_spec
        >>> groups = channel_groups(create_spec("resnet50", width_mult=0.25), coupled=True)
        >>> keep_apart(groups, {(0, -2): 8, (0, -1): 8})[(0, -1)]
        9
    """
    out = dict(counts)
    widths = {g.key: g.width for g in groups}
    for _ in range(len(groups) + 1):
        clash = [
            (g.key, k) for g in groups for k in g.apart if g.key in out and out[g.key] == out.get(k, widths.get(k))
        ]
        if not clash:
            return out
        later, earlier = clash[0]
        if out[later] < widths[later]:
            out[later] += 1
        else:
            out[earlier] = out.get(earlier, widths[earlier]) + 1
    raise UserError("could not keep every projection shortcut's widths apart; prune less or without --coupled")


def floor(group: ChannelGroup, min_channels: int = 1, min_keep: float = 0.0) -> int:
    """The fewest channels ``group`` may keep: ``min_channels``, and the ``min_keep`` share of its width
    (rounded up), never more than it has.

    Example:
        >>> from models import channel_groups, create_spec
        >>> g = channel_groups(create_spec("vgg11"))[-1]  # 512 channels
        >>> floor(g), floor(g, min_keep=0.1), floor(g, 600)
        (1, 52, 512)
    """
    return min(group.width, max(min_channels, math.ceil(min_keep * group.width)))


# ---------------------------------------------------------------------- presets (Li et al. 2017)
def _vgg16_a(spec: ArchSpec, groups: list[ChannelGroup]) -> dict[Key, int]:
    if spec.family != "vgg" or spec.depth != 16:
        raise UserError(f"preset vgg16-a fits VGG-16 only, not {spec.name}")
    # 50% of the filters of conv 1 and convs 8-13 (numbered from 1 in forward order).
    return {g.key: int(g.width * 0.5) if j + 1 == 1 or j + 1 >= 8 else g.width for j, g in enumerate(groups)}


def _resnet_preset(depth: int, ratios: tuple[float, float, float], skip: set[int]):
    def fn(spec: ArchSpec, groups: list[ChannelGroup]) -> dict[Key, int]:
        if spec.family != "resnet" or spec.depth != depth:
            raise UserError(f"this preset fits ResNet-{depth} only, not {spec.name}")
        counts = {}
        for j, g in enumerate(groups):  # group j is block j's first conv: conv layer 2 + 2j (stem is 1)
            layer = 2 + 2 * j
            counts[g.key] = g.width if layer in skip else int(g.width * (1 - ratios[g.stage]))
        return counts

    return fn


PRESETS = {
    "vgg16-a": _vgg16_a,
    "resnet56-a": _resnet_preset(56, (0.1, 0.1, 0.1), {16, 20, 38, 54}),
    "resnet56-b": _resnet_preset(56, (0.6, 0.3, 0.1), {16, 18, 20, 34, 38, 54}),
    "resnet110-a": _resnet_preset(110, (0.5, 0.0, 0.0), {36}),
    "resnet110-b": _resnet_preset(110, (0.5, 0.4, 0.3), {36, 38, 74}),
}


def preset(name: str, spec: ArchSpec, groups: list[ChannelGroup]) -> dict[Key, int]:
    """Kept counts of a named preset; refuses a model it does not fit."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name](spec, groups)
