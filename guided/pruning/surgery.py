"""Surgery: from kept channel indices to a new, narrower spec and the inherited weights.

Pruning never edits a model in place: `cut` reads the old model's ``state_dict``, slices every tensor a
group names (`models.groups.ChannelGroup.tensors`), and builds the new spec's module, loading the sliced
tensors with ``strict=True``, so a forgotten tensor is an error rather than a silent mismatch.

Coupled groups (residual widths) also name tensors whose *values* are channels: a shortcut map's sources
and a channel selection's indices. Cutting such a group renumbers them, and drops the selection positions
that read a removed channel (so a selection that read it keeps one channel fewer).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models import FAMILIES, STEM, STREAM, ArchSpec, ChannelGroup, build, channel_groups

__all__ = ["cut", "pruned_spec", "width_at"]

Key = tuple[int, int]


def pruned_spec(spec: ArchSpec, counts: Mapping[Key, int]) -> ArchSpec:
    """``spec`` with the widths at ``(stage, index)`` replaced by the kept counts.

    An index of `models.STREAM` sets ``stage_widths[stage]``, `models.STEM` the ``stem_width`` (with every
    position the group ties to the same width). Channel selections that read a narrowed residual width keep
    at most what is left of it: exact for selections that kept every channel, an upper bound otherwise
    (`cut` counts the selections' real widths).
    """
    stages = [list(s) for s in spec.stages]
    fields = {"stage_widths": list(spec.stage_widths), "stem_width": spec.stem_width}
    ties = {}
    if any(i < 0 for _, i in counts):
        ties = {g.key: g.ties for g in channel_groups(spec, coupled=True) if g.ties}
    for key, k in counts.items():
        for s, i in (key, *ties.get(key, ())):
            if i == STREAM:
                fields["stage_widths"][s] = int(k)
            elif i == STEM:
                fields["stem_width"] = int(k)
            else:
                stages[s][i] = int(k)
    fit = FAMILIES[spec.family].fit
    if fit is not None:  # widths that bound others (pre-activation selections)
        fit(spec, stages, fields)
    return spec.replace(stages=stages, **fields)


def width_at(spec: ArchSpec, key: Key) -> int:
    """The width a group's ``(stage, index)`` names in ``spec`` (`models.STREAM`, `models.STEM` too)."""
    s, i = key
    if i == STREAM:
        return spec.stage_widths[s]
    return spec.stem_width if i == STEM else spec.stages[s][i]


def cut(
    model: nn.Module,
    keep: Mapping[Key, torch.Tensor],
    *,
    updates: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """A new module keeping, for each group, the channels at the given positions.

    Args:
        model: a module built from ``model.spec``; it is not modified.
        keep: ``(stage, index)`` to the sorted positions (0..width-1) of the channels to keep; groups not
            named keep every channel.
        updates: reconstructed consumer weights, by state_dict key: each has the consumer's output
            channels unpruned and its input channels already reduced to the kept ones (reconstruction
            methods rewrite them; their own output channels may still be cut by another group).

    Returns:
        The pruned module (on the CPU, in eval mode if ``model`` was), with ``.spec`` the new spec.
    """
    spec: ArchSpec = model.spec
    groups = {g.key: g for g in channel_groups(spec, coupled=any(i < 0 for _, i in keep))}
    unknown = sorted(set(keep) - set(groups))
    if unknown:
        raise ValueError(f"no channel group at {unknown[:3]} in {spec.name}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    keep = {key: torch.as_tensor(idx, dtype=torch.long).cpu() for key, idx in keep.items()}
    for key, idx in list(keep.items()):
        _check_positions(groups[key], idx)
        keep.update(_selected(groups[key], idx, keep, state))
    slices: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for key, idx in keep.items():
        g: ChannelGroup = groups[key]
        for tensor_key, dim in g.tensors:
            slices.setdefault(tensor_key, []).append((dim, _spread(idx, state[tensor_key].shape[dim] // g.width)))
    updates = dict(updates or {})
    stray = sorted(set(updates) - set(slices))
    if stray:
        raise ValueError(f"update for {stray[0]}, which no pruned group touches")
    for tensor_key, cuts in slices.items():
        t = state[tensor_key]
        for dim, idx in cuts:  # input channels first
            if dim == 1:
                t = t.index_select(1, idx)
        if tensor_key in updates:
            if updates[tensor_key].shape != t.shape:
                raise ValueError(
                    f"update for {tensor_key} has shape {tuple(updates[tensor_key].shape)}, expected {tuple(t.shape)}"
                )
            t = updates[tensor_key].detach().cpu().to(t.dtype)
        for dim, idx in cuts:
            if dim == 0:
                t = t.index_select(0, idx)
        state[tensor_key] = t
    for key, idx in keep.items():
        _renumber(groups[key], idx, state)
    new_spec = pruned_spec(spec, {k: len(v) for k, v in keep.items()})
    new = build(new_spec)
    new.load_state_dict(state, strict=True)
    new.train(model.training)
    return new


def _selected(group: ChannelGroup, kept: torch.Tensor, keep: Mapping[Key, torch.Tensor], state: dict) -> dict:
    """The positions each channel selection reading ``group`` keeps once only ``kept`` of its channels are
    left: those it kept already (``keep``, else all) that select a kept channel."""
    out = {}
    for select, key in group.selects:
        values = state[f"{select}.index"]
        positions = keep.get(key, torch.arange(len(values)))
        positions = positions[torch.isin(values[positions], kept)]
        if not len(positions):
            raise ValueError(f"{select} selects none of the channels {group.name} keeps: keep more of them")
        out[key] = positions
    return out


def _renumber(group: ChannelGroup, kept: torch.Tensor, state: dict) -> None:
    """Tensors whose values are channels of ``group`` (shortcut maps, channel selections) name the kept
    channels by their new positions (a map's source that was cut becomes -1: no input)."""
    new = torch.full((group.width,), -1, dtype=torch.long)
    new[kept] = torch.arange(len(kept))
    for name in (*group.remaps, *(f"{select}.index" for select, _ in group.selects)):
        values = state[name]
        state[name] = torch.where(values >= 0, new[values.clamp_min(0)], values)


def _spread(idx: torch.Tensor, per_channel: int) -> torch.Tensor:
    """Channel positions as positions of a tensor dimension holding ``per_channel`` entries per channel,
    channel-major (a linear layer reading a flattened 7x7 map per channel).

    Example:
        >>> _spread(torch.tensor([0, 2]), 3).tolist()
        [0, 1, 2, 6, 7, 8]
    """
    if per_channel == 1:
        return idx
    return (idx[:, None] * per_channel + torch.arange(per_channel)).flatten()


def _check_positions(group: ChannelGroup, idx: torch.Tensor) -> None:
    if idx.ndim != 1 or len(idx) == 0:
        raise ValueError(f"{group.name}: keep at least one channel (got {len(idx)})")
    if idx.min() < 0 or idx.max() >= group.width:
        raise ValueError(f"{group.name}: kept positions must lie in 0..{group.width - 1}")
    if not torch.all(idx[1:] > idx[:-1]):
        raise ValueError(f"{group.name}: kept positions must be sorted and unique")
