"""The pruning methods, registered by name, and `prune`: score, allocate, cut.

Each `Method` says which channel groups it can prune, how it scores or selects channels, and how it
allocates kept counts by default. `prune` runs the three steps and returns a new model; the input
model is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from guided.errors import UserError
from guided.pruning import allocate, criteria, reconstruct
from guided.pruning.blocks import prune_blocks
from guided.pruning.result import PruneResult, cost_change
from guided.pruning.surgery import cut, pruned_spec, width_at
from guided.pruning.unstructured import prune_weights
from guided.training.data import ImageData
from models import ArchSpec, ChannelGroup, SpecError, channel_groups, pattern_stages
from models.charge import COST_KINDS, channel_charges

__all__ = ["Method", "PRUNERS", "PruneResult", "prune", "ratio_for_budget", "register_pruner", "cost_change"]

Key = tuple[int, int]


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
        joint: ``([(inputs, reader)], k, seed) -> (kept, new reader weights)``: ``select`` over the several
            readers of a coupled group.
        needs_data: whether it reads activations of training images.
        custom: prunes on its own terms instead of channel groups (block removal, weight masks).
        unit: what it removes: ``channels`` (a narrower spec), ``weights`` (masks; the spec is unchanged)
            or ``blocks`` (residual blocks).
    """

    name: str
    summary: str
    kinds: tuple[str, ...]
    allocation: str
    score: Callable[[criteria.Context, list[ChannelGroup]], dict[Key, torch.Tensor]] | None = None
    select: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    joint: Callable[..., tuple[torch.Tensor, list[torch.Tensor]]] | None = None
    needs_data: bool = False
    custom: Callable[..., PruneResult] | None = None
    unit: str = "channels"


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
        joint=reconstruct.thinet_joint,
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
        unit="blocks",
    )
)
for _name, _summary, _allocation in (
    ("magnitude", "smallest-magnitude weights, unstructured (Han et al., NIPS 2015)", "global"),
    ("random", "random weight masks: the baseline of unstructured pruning", "layer"),
):
    register_pruner(
        Method(_name, _summary, (), _allocation, custom=partial(prune_weights, method=_name), unit="weights")
    )
del _name, _summary, _allocation
register_pruner(
    Method(
        "regression",
        "LASSO selection + least squares (He et al., ICCV 2017)",
        ("conv", "select"),
        "layer",
        select=reconstruct.regression_select,
        joint=reconstruct.regression_joint,
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
    min_keep: float = 0.0,
    data: ImageData | None = None,
    samples: int = 512,
    seed: int = 0,
    threshold: float | None = None,
    include_linear: bool = False,
    like: dict[str, torch.Tensor] | None = None,
    cost: str | None = None,
    latency: Any = None,
    coupled: bool = False,
) -> PruneResult:
    """Prune channels of ``model`` with a registered method.

    Args:
        model: a trained network built from a spec (left unchanged).
        method: a name in `PRUNERS`.
        ratio: fraction of channels to remove: one number, or one per stage (``layer`` allocation).
        preset: a named per-layer recipe from `allocate.PRESETS` (instead of ``ratio``).
        allocation: ``global`` or ``layer``; default: the method's.
        min_channels: channels every group keeps at least.
        min_keep: the share of its channels every group keeps at least (0 to 1; 0: none).
        data: training images, for methods that read activations.
        samples: how many training images those methods run.
        seed: which images and positions are sampled.
        threshold: ``sss`` only: remove every removable block whose |gate| is below it (instead of ``ratio``).
        include_linear: unstructured methods: mask linear weights too.
        like: ``random`` only: copy the per-layer sparsity of these masks.
        cost: ``params``, ``macs`` or ``latency`` (`_charges`): rank by score per unit of it (``spreads``).
        latency: with ``cost="latency"``: the latency table to read (`guided.operations.latency_table`).
        coupled: prune the channels several layers share too (`models.groups`: residual widths, stems), every
            member of a group keeping the same channels (scores: `guided.pruning.criteria`); DenseNet refuses.

    Example:
        >>> from models import create_model
        >>> result = prune(create_model("vgg16", seed=0), "l1-norm", preset="vgg16-a")
        >>> result.info["params_after"]
        5397034
    """
    m = _method(method, model)
    if m.custom:
        if cost is not None or preset is not None or not isinstance(ratio, (float, int, type(None))):
            raise UserError(f"{method} takes one --ratio or --threshold, not presets, stage ratios or --cost")
        if coupled:
            raise UserError(f"{method} removes {m.unit}, not channels: coupled groups are for channel methods")
        kw = {"threshold": threshold, "allocation": allocation, "include_linear": include_linear, "like": like}
        return m.custom(model, ratio=ratio, seed=seed, **kw)
    if threshold is not None:
        raise UserError("--threshold is for sss (block gates); channel methods take --ratio or --preset")
    if (ratio is None) == (preset is None):
        raise UserError("give either a ratio (--ratio R) or a preset (--preset NAME)")
    if m.needs_data and data is None:
        raise UserError(f"{method} reads activations of training images; give a dataset (--dataset NAME)")
    spec = model.spec
    all_groups = _all_groups(spec, coupled, preset)
    groups = _groups(m, spec, all_groups)
    ctx = criteria.Context(model, data=data, samples=samples, seed=seed)
    scores = m.score(ctx, groups) if m.score else None
    charges = _charges(m, spec, groups, cost, allocation, preset, latency)
    floors = (min_channels, _check_min_keep(min_keep))
    counts, allocation = _allocate(m, spec, groups, scores, ratio, preset, allocation, floors, charges)
    keep, updates = _choose(m, model, ctx, groups, counts, scores, seed)
    new = cut(model, keep, updates=updates)
    info = {
        **dict(method=method, allocation=allocation, ratio=ratio, preset=preset, min_channels=min_channels),
        **({"min_keep": min_keep} if min_keep else {}),
        **dict(samples=samples if m.needs_data else None, seed=seed, cost=cost),
        **({"coupled": True} if coupled else {}),
        **({"spread": spreads(groups, scores, charges)} if charges else {}),
        **cost_change(spec, new.spec),
    }
    kept = {g.key: width_at(new.spec, g.key) for g in groups}  # selections reading a residual width: real
    return PruneResult(new, _rows(spec, all_groups, groups, kept), info)


def spreads(groups, scores: dict, charges: dict) -> dict[str, float]:
    """How far apart the pooled channels' scores and their cost charges lie (90th over 10th percentile).

    Ranking by score per unit of cost trades the two: where the charges spread much wider than the scores
    (a weakly trained slimming base: every |gamma| near one value), the ranking follows cost alone and
    keeps only the cheapest layers, whatever they are worth; `guided prune` says so.
    """

    def ratio(values: torch.Tensor) -> float:
        lo, hi = torch.quantile(values.double(), torch.tensor([0.1, 0.9], dtype=torch.float64)).tolist()
        return round(hi / lo, 2) if lo > 0 else float("inf")

    pooled = torch.cat([scores[g.key].flatten().float() for g in groups])
    charged = torch.cat([torch.full((scores[g.key].numel(),), float(charges[g.key])) for g in groups])
    return {"score": ratio(pooled.abs()), "charge": ratio(charged)}


def _method(method: str, model: nn.Module) -> Method:
    """The registered method, once the model is known to be one guided built (it carries its spec)."""
    if method not in PRUNERS:
        raise UserError(f"unknown pruning method {method!r}; choose one of {', '.join(sorted(PRUNERS))}")
    if not isinstance(getattr(model, "spec", None), ArchSpec):
        raise UserError(
            f"{type(model).__name__} was not built by guided: pruning reads the architecture from model.spec; "
            "build models with models.build(spec) or create_model(name) (see `guided models`)"
        )
    return PRUNERS[method]


def _all_groups(spec: ArchSpec, coupled: bool, preset: str | None = None) -> list[ChannelGroup]:
    """Every channel group of ``spec``, the coupled ones too with ``coupled`` (a family without them: one line)."""
    if coupled and preset is not None:
        raise UserError(f"preset {preset} names single layers; prune coupled groups with a ratio instead")
    try:
        return channel_groups(spec, coupled=coupled)
    except SpecError as exc:
        raise UserError(f"cannot prune {spec.name} with coupled groups: {exc}") from None


def _groups(m: Method, spec: ArchSpec, all_groups: list[ChannelGroup]) -> list[ChannelGroup]:
    groups = [g for g in all_groups if g.kind in m.kinds or g.kind == "coupled"]
    if not groups:
        raise UserError(f"{m.name} finds nothing to prune in {spec.name}")
    return groups


def _charges(m: Method, spec, groups, cost: str | None, allocation: str | None, preset, latency=None) -> dict | None:
    """Each group's cost per channel, when the allocation is to weigh channels by ``cost``: counted params
    or MACs (`models.charge.channel_charges`), or each layer's forward + backward seconds as the caller's
    ``latency`` table (`guided.operations.latency_table`) predicts them, so of two equally important
    channels the dearer goes first."""
    if cost is None:
        return None

    if cost not in (*COST_KINDS, "latency"):
        raise UserError(f"unknown cost {cost!r}; choose one of {', '.join(COST_KINDS)}, latency")
    if preset is not None or (allocation or m.allocation) != "global":
        raise UserError(
            f"cost-aware pruning ranks channels across layers, so it needs a global allocation: "
            f"give --allocation global (and a ratio), not {f'preset {preset}' if preset else 'per-layer ratios'}"
        )
    if cost == "latency":  # seconds per layer, from the table the caller made once
        if latency is None:
            raise UserError(
                "cost 'latency' ranks channels by a latency table: pass latency=guided.operations.latency_table(device)"
            )
        seconds = {r["name"]: r["seconds"] for r in latency.layer_seconds(spec)}
        return channel_charges(spec, cost, groups, layer_costs=seconds)
    return channel_charges(spec, cost, groups)


def _check_min_keep(min_keep: float) -> float:
    if not 0 <= min_keep < 1:
        raise UserError(f"min_keep must lie in [0, 1) (the share of each layer's channels kept), got {min_keep}")
    return min_keep


def _allocate(m: Method, spec, groups, scores, ratio, preset, allocation, floors, charges=None):
    """Kept channels per group, and the allocation's name: a preset, one global threshold (by score, or by
    score per unit of cost with ``charges``), or per layer; ``floors`` is (min_channels, min_keep)."""
    min_channels, min_keep = floors
    allocation = allocation or m.allocation
    if preset is not None:
        return allocate.preset(preset, spec, groups), f"preset {preset}"
    if allocation == "global":
        if scores is None or isinstance(ratio, Sequence):
            raise UserError(f"global allocation needs one ratio and a method with comparable scores, not {m.name}")
        counts = allocate.global_threshold(
            groups, scores, ratio, min_channels=min_channels, min_keep=min_keep, charges=charges
        )
        return allocate.keep_apart(groups, counts), allocation
    if allocation != "layer":
        raise UserError(f"unknown allocation {allocation!r}; choose global or layer")
    counts = allocate.by_ratio(groups, ratio, min_channels=min_channels, min_keep=min_keep)
    return allocate.keep_apart(groups, counts), allocation


def _choose(m: Method, model, ctx, groups, counts, scores, seed: int) -> tuple[dict, dict]:
    """Which channels each narrowed group keeps (highest scores, or the method's own selection), and the
    reconstructed consumer weights of selection methods (a coupled group: all of its readers'; one read
    through selections, which no refit follows, by its producers' L1 norms).

    Coupled groups choose first: a selection reading one then chooses among the positions that select a
    channel it kept (so it keeps at most that many)."""
    keep, updates = {}, {}
    pruned = sorted((g for g in groups if counts[g.key] < g.width), key=lambda g: g.kind != "coupled")
    if m.select:
        by_norm = [g for g in pruned if g.selects]
        joint = [g for g in pruned if g.kind == "coupled" and not g.selects]
        single = [g for g in pruned if g.kind != "coupled"]
        scores = {**(scores or {}), **criteria.l1_norm(ctx, by_norm)}
        inputs = reconstruct.sample_consumer_inputs(ctx, single) if single else {}
        readers = reconstruct.sample_reader_inputs(ctx, joint) if joint else {}
    modules = dict(model.named_modules())
    stream_of = {key: (g, select) for g in groups if g.kind == "coupled" for select, key in g.selects}
    for g in pruned:
        k, among = counts[g.key], None
        if g.key in stream_of and stream_of[g.key][0].key in keep:
            stream, select = stream_of[g.key]
            among = torch.isin(modules[select].index.cpu(), keep[stream.key]).nonzero().flatten()
            k = min(k, len(among))
        if m.select and g in single:
            x, consumer = inputs[g.key], modules[g.consumer]
            if among is not None:
                x, consumer = x[:, among], SimpleNamespace(weight=consumer.weight.detach().cpu()[:, among])
            kept, new_w = m.select(x, consumer, k, seed=seed)
            kept = kept if among is None else among[kept]
            updates[f"{g.consumer}.weight"] = new_w
        elif m.select and g in joint:
            kept, weights = m.joint([(x, modules[name]) for name, x in readers[g.key]], k, seed=seed)
            updates.update({f"{name}.weight": w for (name, _), w in zip(readers[g.key], weights)})
        else:
            s = scores[g.key].clone()
            if among is not None:
                s[torch.isin(torch.arange(g.width), among, invert=True)] = -float("inf")
            kept = s.argsort(descending=True, stable=True)[:k].sort().values
        keep[g.key] = kept
    return keep, updates


def _rows(spec, all_groups, groups, counts) -> list[dict[str, Any]]:
    """Per channel group: layer, design-pattern stage (`models.pattern_stages`), kind, original and kept
    width (``layers.csv``)."""
    rows, stage_of = [], pattern_stages(spec)
    for g in all_groups:
        kept = counts.get(g.key, g.width) if g in groups else g.width
        rows.append(
            {
                "layer": g.name,
                "stage": stage_of[g.stage][g.index] if g.index >= 0 else g.stage,
                "kind": g.kind,
                "original": g.width,
                "kept": kept,
                "kept_fraction": round(kept / g.width, 4),
            }
        )
    return rows


def ratio_for_budget(
    model: nn.Module,
    method: str,
    budget: Any,
    *,
    allocation: str | None = None,
    min_channels: int = 1,
    min_keep: float = 0.0,
    data: ImageData | None = None,
    samples: int = 512,
    seed: int = 0,
    cost: str | None = None,
    latency: Any = None,
    coupled: bool = False,
) -> float:
    """The smallest channel ratio whose pruned architecture fits ``budget`` (a `guided.shapes.design.Budget`);
    with ``cost``, channels are ranked by score per unit of that cost, as `prune` does.

    Only the allocation is repeated (by bisection over the ratio): scores are computed once and no
    surgery happens, so this costs one scoring pass. Pass the result to `prune` as ``ratio``.

    Example:
        >>> from guided.shapes.design import Budget
        >>> from models import create_model
        >>> model = create_model("vgg16", seed=0)
        >>> r = ratio_for_budget(model, "l1-norm", Budget("params", 5e6))
        >>> prune(model, "l1-norm", ratio=r).info["params_after"] <= 5e6
        True
    """
    m = _method(method, model)
    if m.unit != "channels":
        raise UserError(f"pruning to a budget needs a channel method, not {method!r}")
    spec = model.spec
    groups = _groups(m, spec, _all_groups(spec, coupled))
    scores = None
    if (allocation or m.allocation) == "global" and m.score is not None:
        scores = m.score(criteria.Context(model, data=data, samples=samples, seed=seed), groups)
    charges = _charges(m, spec, groups, cost, allocation, None, latency)
    floors = (min_channels, _check_min_keep(min_keep))

    def fits(r: float) -> bool:
        counts, _ = _allocate(m, spec, groups, scores, r, None, allocation, floors, charges)
        return budget.of(pruned_spec(spec, counts)) <= budget.value

    if budget.of(spec) <= budget.value:
        raise UserError(f"{spec.name} already fits {budget}; nothing to prune")
    lo, hi = 0.0, 0.999
    if not fits(hi):
        raise UserError(f"{method} cannot bring {spec.name} down to {budget}")
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi
