"""The pruning methods, registered by name, and `prune`: score, allocate, cut.

Each `Method` says which channel groups it can prune, how it scores or selects channels, and how it
allocates kept counts by default. `prune` runs the three steps and returns a new model; the input
model is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from guided.data import ImageData
from guided.errors import UserError
from guided.pruning import allocate, criteria, reconstruct
from guided.pruning.blocks import prune_blocks
from guided.pruning.surgery import cut, pruned_spec
from guided.pruning.unstructured import prune_weights
from models import ArchSpec, ChannelGroup, channel_groups, cost

__all__ = ["Method", "PRUNERS", "PruneResult", "prune", "ratio_for_budget", "register_pruner", "cost_change"]

Key = tuple[int, int]


@dataclass
class PruneResult:
    """A pruned model and what was done.

    Attributes:
        model: the new module (``model.spec`` is the pruned spec).
        rows: per group: layer, stage, original, kept, kept fraction.
        info: method, allocation and costs before and after (non-zero counts for masks).
        masks: unstructured methods: the binary weight masks (the spec is unchanged).
    """

    model: nn.Module
    rows: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class Method:
    """A channel-pruning method.

    Attributes:
        name: registry name.
        summary: one line, citing the paper.
        kinds: channel-group kinds it prunes (``conv`` filters, ``select`` input selections).
        allocation: default allocator with ``ratio``: ``global`` (one threshold) or ``layer`` (per group).
        score: ``(context, groups) -> {key: scores}``, higher keeps; ``None`` for selection methods.
        select: ``(inputs, consumer, k, seed) -> (kept, new consumer weight)`` for reconstruction methods.
        needs_data: whether it reads activations of training images.
        custom: prunes on its own terms instead of channel groups (block removal).
    """

    name: str
    summary: str
    kinds: tuple[str, ...]
    allocation: str
    score: Callable[[criteria.Context, list[ChannelGroup]], dict[Key, torch.Tensor]] | None = None
    select: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    needs_data: bool = False
    custom: Callable[..., PruneResult] | None = None


PRUNERS: dict[str, Method] = {}


def register_pruner(method: Method) -> Method:
    """Add a method to `PRUNERS` (the CLI and the tests iterate it)."""
    PRUNERS[method.name] = method
    return method


register_pruner(
    Method("l1-norm", "smallest-L1 filters (Li et al., ICLR 2017)", ("conv",), "layer", score=criteria.l1_norm)
)
register_pruner(
    Method(
        "slimming",
        "smallest BN scales, one global threshold (Liu et al., ICCV 2017)",
        ("conv", "select"),
        "global",
        score=criteria.bn_scale,
    )
)
register_pruner(
    Method(
        "apoz",
        "most zeros after ReLU (Hu et al., 2016)",
        ("conv", "select"),
        "layer",
        score=criteria.apoz,
        needs_data=True,
    )
)
register_pruner(
    Method(
        "taylor",
        "first-order Taylor loss change (Molchanov et al., ICLR 2017)",
        ("conv", "select"),
        "layer",
        score=criteria.taylor,
        needs_data=True,
    )
)
register_pruner(
    Method(
        "thinet",
        "greedy next-layer reconstruction (Luo et al., ICCV 2017)",
        ("conv", "select"),
        "layer",
        select=reconstruct.thinet_select,
        needs_data=True,
    )
)
register_pruner(
    Method(
        "sss",
        "remove residual blocks with small sparse gates (Huang & Wang, ECCV 2018)",
        (),
        "blocks",
        custom=prune_blocks,
    )
)
register_pruner(
    Method(
        "magnitude",
        "smallest-magnitude weights, unstructured (Han et al., NIPS 2015)",
        (),
        "global",
        custom=lambda model, **kw: prune_weights(model, method="magnitude", **kw),
    )
)
register_pruner(
    Method(
        "random",
        "random weight masks: the baseline of unstructured pruning",
        (),
        "layer",
        custom=lambda model, **kw: prune_weights(model, method="random", **kw),
    )
)
register_pruner(
    Method(
        "regression",
        "LASSO selection + least squares (He et al., ICCV 2017)",
        ("conv", "select"),
        "layer",
        select=reconstruct.regression_select,
        needs_data=True,
    )
)


def prune(
    model: nn.Module,
    method: str,
    *,
    ratio: float | Sequence[float] | None = None,
    preset: str | None = None,
    allocation: str | None = None,
    min_channels: int = 1,
    data: ImageData | None = None,
    samples: int = 512,
    seed: int = 0,
    threshold: float | None = None,
    include_linear: bool = False,
    like: dict[str, torch.Tensor] | None = None,
) -> PruneResult:
    """Prune channels of ``model`` with a registered method.

    Args:
        model: a trained network built from a spec (left unchanged).
        method: a name in `PRUNERS`.
        ratio: fraction of channels to remove: one number, or one per stage (``layer`` allocation).
        preset: a named per-layer recipe from `allocate.PRESETS` (instead of ``ratio``).
        allocation: ``global`` or ``layer``; default: the method's.
        min_channels: channels every group keeps at least.
        data: training images, for methods that read activations.
        samples: how many training images those methods run.
        seed: which images and positions are sampled.
        threshold: ``sss`` only: remove every removable block whose |gate| is below it (instead of ``ratio``).
        include_linear: unstructured methods: mask linear weights too.
        like: ``random`` only: copy the per-layer sparsity of these masks.

    Example:
        >>> from models import create_model
        >>> result = prune(create_model("vgg16", seed=0), "l1-norm", preset="vgg16-a")
        >>> result.info["params_after"]
        5397034
    """
    if method not in PRUNERS:
        raise UserError(f"unknown pruning method {method!r}; choose one of {', '.join(sorted(PRUNERS))}")
    m = PRUNERS[method]
    if m.custom:
        if preset is not None or not isinstance(ratio, (float, int, type(None))):
            raise UserError(f"{method} takes one --ratio or --threshold, not presets or stage ratios")
        return m.custom(
            model,
            ratio=ratio,
            threshold=threshold,
            allocation=allocation,
            include_linear=include_linear,
            like=like,
            seed=seed,
        )
    if threshold is not None:
        raise UserError("--threshold is for sss (block gates); channel methods take --ratio or --preset")
    if (ratio is None) == (preset is None):
        raise UserError("give either a ratio (--ratio R) or a preset (--preset NAME)")
    if m.needs_data and data is None:
        raise UserError(f"{method} reads activations of training images; give a dataset (--dataset NAME)")
    allocation = allocation or m.allocation
    if allocation not in ("global", "layer"):
        raise UserError(f"unknown allocation {allocation!r}; choose global or layer")
    spec = model.spec
    all_groups = channel_groups(spec)
    groups = [g for g in all_groups if g.kind in m.kinds]
    if not groups:
        raise UserError(f"{method} finds nothing to prune in {spec.name}")
    ctx = criteria.Context(model, data=data, samples=samples, seed=seed)

    scores = m.score(ctx, groups) if m.score else None
    if preset is not None:
        counts = allocate.preset(preset, spec, groups)
        allocation = f"preset {preset}"
    elif allocation == "global":
        if scores is None or isinstance(ratio, Sequence):
            raise UserError(f"global allocation needs one ratio and a method with comparable scores, not {method}")
        counts = allocate.global_threshold(groups, scores, ratio, min_channels=min_channels)
    else:
        counts = allocate.by_ratio(groups, ratio, min_channels=min_channels)

    keep, updates = {}, {}
    pruned = [g for g in groups if counts[g.key] < g.width]
    inputs = reconstruct.sample_consumer_inputs(ctx, pruned) if m.select and pruned else {}
    modules = dict(model.named_modules())
    for g in pruned:
        k = counts[g.key]
        if m.select:
            kept, new_w = m.select(inputs[g.key], modules[g.consumer], k, seed=seed)
            updates[f"{g.consumer}.weight"] = new_w
        else:
            kept = scores[g.key].argsort(descending=True, stable=True)[:k].sort().values
        keep[g.key] = kept
    new = cut(model, keep, updates=updates)

    rows = [
        {
            "layer": g.name,
            "stage": g.stage,
            "kind": g.kind,
            "original": g.width,
            "kept": counts.get(g.key, g.width) if g in groups else g.width,
            "kept_fraction": round((counts.get(g.key, g.width) if g in groups else g.width) / g.width, 4),
        }
        for g in all_groups
    ]
    info = {
        "method": method,
        "allocation": allocation,
        "ratio": ratio,
        "preset": preset,
        "min_channels": min_channels,
        "samples": samples if m.needs_data else None,
        "seed": seed,
        **cost_change(spec, new.spec),
    }
    return PruneResult(new, rows, info)


def ratio_for_budget(
    model: nn.Module,
    method: str,
    budget: Any,
    *,
    allocation: str | None = None,
    min_channels: int = 1,
    data: ImageData | None = None,
    samples: int = 512,
    seed: int = 0,
) -> float:
    """The smallest channel ratio whose pruned architecture fits ``budget`` (a `guided.design.Budget`).

    Only the allocation is repeated (by bisection over the ratio): scores are computed once and no
    surgery happens, so this costs one scoring pass. Pass the result to `prune` as ``ratio``.

    Example:
        >>> from guided.design import Budget
        >>> from models import create_model
        >>> model = create_model("vgg16", seed=0)
        >>> r = ratio_for_budget(model, "l1-norm", Budget("params", 5e6))
        >>> prune(model, "l1-norm", ratio=r).info["params_after"] <= 5e6
        True
    """
    if method not in PRUNERS or PRUNERS[method].custom is not None:
        raise UserError(f"pruning to a budget needs a channel method, not {method!r}")
    m = PRUNERS[method]
    allocation = allocation or m.allocation
    spec = model.spec
    groups = [g for g in channel_groups(spec) if g.kind in m.kinds]
    if allocation == "global":
        if m.score is None:
            raise UserError(f"global allocation needs a method with comparable scores, not {method}")
        scores = m.score(criteria.Context(model, data=data, samples=samples, seed=seed), groups)

        def counts(r: float) -> dict:
            return allocate.global_threshold(groups, scores, r, min_channels=min_channels)
    else:

        def counts(r: float) -> dict:
            return allocate.by_ratio(groups, r, min_channels=min_channels)

    def fits(r: float) -> bool:
        return budget.of(pruned_spec(spec, counts(r))) <= budget.value

    if budget.of(spec) <= budget.value:
        raise UserError(f"{spec.name} already fits {budget.kind}={budget.value:,.0f}; nothing to prune")
    lo, hi = 0.0, 0.999
    if not fits(hi):
        raise UserError(f"{method} cannot bring {spec.name} down to {budget.kind}={budget.value:,.0f}")
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def cost_change(before: ArchSpec, after: ArchSpec, masks: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The source spec's name, and parameters and MACs before and after pruning (non-zero ones with masks)."""
    from models import densities_from_masks

    old = cost(before)
    new = cost(after, densities_from_masks(masks) if masks else None)
    return {
        "source_spec": before.name,
        "params_before": old.params,
        "params_after": new.params,
        "macs_before": old.macs,
        "macs_after": new.macs,
    }
