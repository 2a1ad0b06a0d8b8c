"""Criteria: how important each channel of a group is (higher = keep), and the activations they read.

Weight criteria (`l1_norm`, `bn_scale`) read the model alone; activation criteria (`apoz`, `taylor`) and the
reconstruction methods (`guided.pruning.reconstruct`) run sampled training images through it, without
augmentation, in eval mode (BatchNorm statistics are not touched).

A coupled group (`models.groups`: a residual width) has several members; its score is the **mean** of its
members' per-channel scores: of each producing conv's filter L1 norms (`l1_norm`), of each BatchNorm's
|gamma| (`bn_scale`: the block outputs' BNs, or in pre-activation networks the BNs that open the blocks
reading these channels), of each of those BNs' outputs' APoZ and Taylor scores. A member that reads the
channels through a selection scores only the channels it selects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guided.errors import UserError
from guided.training.data import ImageData, Split
from guided.training.loader import DeviceLoader
from models import ChannelGroup

__all__ = ["Context", "l1_norm", "bn_scale", "apoz", "taylor"]

Key = tuple[int, int]


@dataclass
class Context:
    """What a criterion may read: the model, and sample data for activation-based criteria.

    Attributes:
        model: the trained network (not modified).
        data: training images to sample; ``None`` for weight-only criteria.
        samples: how many training images to run through the network.
        seed: which images, and which positions reconstruction methods sample.
        batch_size: images per forward pass.
    """

    model: nn.Module
    data: ImageData | None = None
    samples: int = 512
    seed: int = 0
    batch_size: int = 128
    _cache: dict = field(default_factory=dict, repr=False)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised sample images and labels, on the model's device, the same on every call."""
        if self.data is None:
            raise UserError("this pruning method reads activations: give training data (--dataset ...)")
        n = min(self.samples, len(self.data.train))
        idx = np.sort(np.random.default_rng(self.seed).permutation(len(self.data.train))[:n])
        split = Split(self.data.train.images[idx], self.data.train.labels[idx])
        device = next(self.model.parameters()).device
        yield from DeviceLoader(
            split,
            self.data.mean,
            self.data.std,
            batch_size=self.batch_size,
            train=False,
            device=device,
            channels_last=False,
        )


def l1_norm(ctx: Context, groups: list[ChannelGroup]) -> dict[Key, torch.Tensor]:
    """Li et al. 2017: the L1 norm of each filter of the producing conv (coupled: the mean over producers)."""
    modules = dict(ctx.model.named_modules())
    return {
        g.key: torch.stack([modules[c].weight.detach().abs().sum(dim=(1, 2, 3)).cpu() for c in g.producers]).mean(0)
        for g in groups
    }


def bn_scale(ctx: Context, groups: list[ChannelGroup]) -> dict[Key, torch.Tensor]:
    """Liu et al. 2017 (Network Slimming): the magnitude of each channel's BatchNorm scale |gamma|."""
    modules = dict(ctx.model.named_modules())
    per_bn = {bn: modules[bn].weight.detach().abs().cpu() for g in groups for bn, _ in g.scales}
    return {g.key: _reduce(g, per_bn, modules) for g in groups}


def apoz(ctx: Context, groups: list[ChannelGroup]) -> dict[Key, torch.Tensor]:
    """Hu et al. 2016: one minus the Average Percentage of Zeros of each channel after BN and ReLU."""
    bns = {bn for g in groups for bn, _ in g.scales}
    nonzero = {bn: 0.0 for bn in bns}
    count = {bn: 0 for bn in bns}

    def hook(bn):
        def fn(_module, _inp, out):
            positive = (out.detach() > 0).float()
            nonzero[bn] = nonzero[bn] + positive.sum(dim=(0, 2, 3)).cpu()
            count[bn] += positive.numel() // positive.shape[1]

        return fn

    with _hooks(ctx.model, {bn: hook(bn) for bn in bns}), torch.no_grad(), _eval(ctx.model):
        for x, _ in ctx.batches():
            ctx.model(x)
    modules = dict(ctx.model.named_modules())
    per_bn = {bn: nonzero[bn] / count[bn] for bn in bns}
    return {g.key: _reduce(g, per_bn, modules) for g in groups}


def taylor(ctx: Context, groups: list[ChannelGroup]) -> dict[Key, torch.Tensor]:
    """Molchanov et al. 2017: |mean of activation x gradient| per channel (first-order loss change).

    Activations are BN outputs; each group's scores are divided by their L2 norm, as in the paper, so
    a global threshold compares layers fairly.
    """
    bns = {bn for g in groups for bn, _ in g.scales}
    sums = {bn: 0.0 for bn in bns}
    batches = 0

    def hook(bn):
        def fn(_module, _inp, out):
            def grad_hook(grad):
                sums[bn] = sums[bn] + (out.detach() * grad).mean(dim=(2, 3)).abs().mean(0).cpu()

            out.register_hook(grad_hook)

        return fn

    with _hooks(ctx.model, {bn: hook(bn) for bn in bns}), _eval(ctx.model):
        for x, y in ctx.batches():
            ctx.model.zero_grad(set_to_none=True)
            F.cross_entropy(ctx.model(x), y).backward()
            batches += 1
    ctx.model.zero_grad(set_to_none=True)
    modules = dict(ctx.model.named_modules())
    per_bn = {bn: v / batches for bn, v in sums.items()}
    scores = {}
    for g in groups:
        v = _reduce(g, per_bn, modules)
        scores[g.key] = v / v.norm().clamp_min(1e-12)
    return scores


def _reduce(group: ChannelGroup, per_bn: dict[str, torch.Tensor], modules: dict) -> torch.Tensor:
    """A group's per-channel score: the mean over its BatchNorms of theirs, each placed at the channels it
    reads (through its selection, if any); a channel no BN reads scores 0."""
    rows = []
    for bn, via in group.scales:
        if via is None:
            rows.append(per_bn[bn].float())
            continue
        row = torch.full((group.width,), float("nan"))
        row[modules[via].index.cpu()] = per_bn[bn].float()
        rows.append(row)
    if len(rows) == 1:
        return rows[0]
    return torch.nan_to_num(torch.stack(rows).nanmean(0), nan=0.0)


class _hooks:
    """Register forward hooks on named modules for the duration of a ``with`` block."""

    def __init__(self, model: nn.Module, hooks: dict, *, pre: bool = False) -> None:
        self.model, self.hooks, self.pre, self.handles = model, hooks, pre, []

    def __enter__(self):
        modules = dict(self.model.named_modules())
        for name, fn in self.hooks.items():
            m = modules[name]
            self.handles.append(m.register_forward_pre_hook(fn) if self.pre else m.register_forward_hook(fn))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


class _eval:
    """Eval mode for the duration of a ``with`` block (BatchNorm statistics are not updated)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)
