"""Surgery: from kept channel indices to a new, narrower spec and the inherited weights.

Pruning never edits a model in place: `cut` reads the old model's ``state_dict``, slices every tensor a
group names (`models.groups.ChannelGroup.tensors`), and builds the new spec's module, loading the sliced
tensors with ``strict=True``, so a forgotten tensor is an error rather than a silent mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models import ArchSpec, ChannelGroup, build, channel_groups

__all__ = ["cut", "pruned_spec"]

Key = tuple[int, int]


def pruned_spec(spec: ArchSpec, counts: Mapping[Key, int]) -> ArchSpec:
    """``spec`` with the widths at ``(stage, index)`` replaced by the kept counts."""
    stages = [list(s) for s in spec.stages]
    for (s, i), k in counts.items():
        stages[s][i] = int(k)
    return spec.replace(stages=stages)


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
    groups = {g.key: g for g in channel_groups(spec)}
    unknown = sorted(set(keep) - set(groups))
    if unknown:
        raise ValueError(f"no channel group at {unknown[:3]} in {spec.name}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    slices: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for key, idx in keep.items():
        g: ChannelGroup = groups[key]
        idx = torch.as_tensor(idx, dtype=torch.long).cpu()
        _check_positions(g, idx)
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
    new_spec = pruned_spec(spec, {k: len(v) for k, v in keep.items()})
    new = build(new_spec)
    new.load_state_dict(state, strict=True)
    new.train(model.training)
    return new


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
