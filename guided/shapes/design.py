"""Guided design: turn a per-stage pattern into a new architecture at a parameter, MAC or latency budget.

Every layer's width is its base width (the unpruned target's) times its stage's keep ratio times one
global scale, and the scale is solved so that the budget is met within 1% (Liu et al. 2019, section 5:
guided pruning). With all keep ratios 1 the same solver gives the **uniform** baseline: one width
multiplier for every layer. ``per_layer`` interpolates the pattern's per-layer ratios by relative depth
within each stage instead of using one ratio per stage.

Stages here are design-pattern stages (`models.pattern_stages`): a spec's stages, except that MobileNetV2's
last 1x1 conv is a stage of its own. A **transfer** designs a network from a pattern observed on another
model or dataset: it needs the same number of stages (or an explicit ``stage_map`` saying which pattern
stage each target stage follows).
Everything here is a pure function of specs and pattern data: nothing is trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guided.errors import UserError
from guided.pruning.unstructured import nonzero_cost
from guided.shapes.patterns import Pattern
from models import FAMILIES, ArchSpec, cost, entries_per_unit, pattern_stages
from models import layers as layer_rows

__all__ = [
    "Budget",
    "parse_budget",
    "budget_kind",
    "stage_ratios",
    "layer_ratios",
    "design",
    "design_sparsity",
    "pattern_stage_count",
    "designable",
]


def designable() -> list[str]:
    """The families a guided design applies to: those that declare a design rule
    (`models.family.Family.design`)."""
    return [name for name, family in FAMILIES.items() if family.design is not None]


KINDS = ("params", "macs", "latency")


@dataclass(frozen=True)
class Budget:
    """A target cost: ``kind`` is ``params``, ``macs`` or ``latency``; ``value`` an absolute count (for
    ``latency``, seconds of one training step as ``table``, a `guided.timing.latency.LatencyTable`, predicts them).
    """

    kind: str
    value: float
    table: Any = field(default=None, compare=False, repr=False)

    def of(self, spec: ArchSpec) -> float:
        """The spec's cost in this budget's unit."""
        if self.kind == "latency":
            if self.table is None:
                raise UserError("a latency budget needs a latency table: parse it with parse_budget, or give table=")
            return self.table.predict(spec)
        c = cost(spec)
        return c.params if self.kind == "params" else c.macs

    def show(self, amount: float | None = None) -> str:
        """``amount`` (default: the budget's value) in this budget's unit: ``12.3 ms`` or ``250,000``."""
        amount = self.value if amount is None else amount
        return f"{1000 * amount:.2f} ms" if self.kind == "latency" else f"{amount:,.0f}"

    def __str__(self) -> str:
        return f"{self.kind}={self.show()}"

    def to_dict(self) -> dict[str, Any]:
        """What identifies the budget (a latency budget names the device and batch its table was timed on)."""
        out: dict[str, Any] = {"kind": self.kind, "value": self.value}
        if self.table is not None:
            out.update(device=self.table.device_name, batch_size=self.table.batch_size)
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any], table: Any = None) -> Budget:
        """The budget `to_dict` recorded; a latency budget with ``table``, the latency table timed on the
        device and batch size it names."""
        return cls(record["kind"], record["value"], table if record["kind"] == "latency" else None)


def parse_budget(text: str, *, full: ArchSpec | None = None, table: Any = None) -> Budget:
    """``params=0.3M``, ``macs=40M``, ``params=250000``, ``macs=1.2G``, ``latency=20ms`` -> `Budget`; with
    ``full``, also ``params=25%`` (a share of that architecture's cost). Every budget text the command line
    and the studies read is parsed here.

    A ``latency`` budget is predicted by ``table``, the caller's latency table
    (`guided.operations.latency_table`), or a function that gives it (called only for a latency budget, so
    nothing is timed for the others); without one it is refused.

    Example:
        >>> parse_budget("macs=40M")
        Budget(kind='macs', value=40000000.0)
    """
    kind, number, percent = _parse(text)
    if kind == "latency" and table is None:
        raise UserError(f"budget {text!r} is predicted by a latency table: pass table=operations.latency_table()")
    table = (table() if callable(table) else table) if kind == "latency" else None
    if percent:
        if full is None:
            raise UserError(f"budget {text!r} is a percentage; give an absolute count here, e.g. {kind}=0.3M")
        return Budget(kind, number * Budget(kind, 0, table).of(full), table)
    return Budget(kind, number, table)


def budget_kind(text: str) -> str:
    """The kind of a budget string, its syntax checked (nothing is timed or counted).

    Example:
        >>> budget_kind("latency=30%")
        'latency'
    """
    return _parse(text)[0]


def _parse(text: str) -> tuple[str, float, bool]:
    """(kind, number, whether it is a fraction of the full model) of a budget string; refuses bad syntax."""
    kind, sep, value = text.partition("=")
    kind, value = kind.strip().lower(), value.strip().lower()
    if not sep or not value:
        raise UserError(f"budget {text!r} is not KIND=NUMBER, e.g. params=0.3M, macs=40M, latency=20ms or params=25%")
    if kind not in KINDS:
        raise UserError(f"budget kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if value.endswith("%"):
        fraction = _number(value[:-1], text) / 100
        if not 0 < fraction <= 1:
            raise UserError(f"budget {text!r} must be a percentage in (0, 100]")
        return kind, fraction, True
    units = {"ms": 1e-3, "s": 1.0} if kind == "latency" else {"k": 1e3, "m": 1e6, "g": 1e9}
    unit = next((u for u in sorted(units, key=len, reverse=True) if value.endswith(u)), None)
    if kind == "latency" and unit is None:
        raise UserError(f"budget {text!r} needs a unit: latency=20ms, latency=0.02s or latency=25%")
    number = _number(value[: -len(unit)] if unit else value, text) * units.get(unit, 1.0)
    if not number > 0:
        raise UserError(f"budget must be positive, got {text!r}")
    return kind, number, False


def _number(text: str, budget: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"budget {budget!r} is not KIND=NUMBER, e.g. params=0.3M, macs=40M or params=25%") from None


def stage_ratios(pattern: Pattern) -> list[float]:
    """Mean keep ratio of each stage of a channel pattern."""
    if pattern.kind != "channels":
        raise UserError("this pattern is a sparsity pattern; channel designs need a channel pattern")
    return pattern.stage_ratios()


def layer_ratios(pattern: Pattern, target_units: Sequence[int], stage_map: Sequence[int]) -> list[list[float]]:
    """Per-layer ratios for a target, interpolated by relative depth within each stage.

    Args:
        pattern: a channel pattern with per-layer ``keep_ratio_mean``.
        target_units: how many width entries each target stage has.
        stage_map: for each target stage, the pattern stage it follows.
    """
    by_stage: dict[int, list[float]] = {}
    for row in pattern.layers:
        by_stage.setdefault(row["stage"], []).append(row["keep_ratio_mean"])
    out = []
    for n, src in zip(target_units, stage_map):
        values = by_stage.get(src)
        if not values:
            raise UserError(f"per-layer designs need the pattern's per-layer rows; it has none for stage {src}")
        xs = (np.arange(len(values)) + 0.5) / len(values)
        out.append([float(np.interp((i + 0.5) / n, xs, values)) for i in range(n)])
    return out


def design(
    target: ArchSpec,
    budget: Budget,
    *,
    pattern: Pattern | None = None,
    per_layer: bool = False,
    stage_map: Sequence[int] | None = None,
    multiple_of: int = 1,
    allow_wider: bool = False,
) -> ArchSpec:
    """A network shaped like ``target`` whose widths follow ``pattern`` and whose cost meets ``budget``.

    Args:
        target: the unpruned target architecture (its widths are the base widths).
        budget: parameters or MACs to reach, within 1%.
        pattern: a channel pattern; ``None`` designs the uniform baseline (every ratio 1).
        per_layer: use the pattern's per-layer ratios, interpolated by relative depth in each stage.
        stage_map: for each target stage, which pattern stage it follows (default: the same index; the
            pattern and target must then have as many stages).
        multiple_of: round every width to a multiple of this (at least one multiple).
        allow_wider: accept a budget above ``target``'s own cost (a network wider than the target); by
            default such a budget is refused, since it is almost always a unit mistake.

    Example:
        >>> from models import create_spec, cost
        >>> uniform = design(create_spec("vgg16"), Budget("params", 1e6))
        >>> abs(cost(uniform).params - 1e6) / 1e6 < 0.01
        True
    """
    if FAMILIES[target.family].design is None:
        raise UserError(
            f"designs are built for {', '.join(designable())}; {target.name} ({target.family}) is not supported "
            "yet: its family declares no design rule (DenseNet stages share one growth rate)"
        )
    if multiple_of < 1:
        raise UserError(f"multiple_of must be at least 1, got {multiple_of}")
    full = budget.of(target)
    if budget.value > 1.01 * full and not allow_wider:
        raise UserError(
            f"budget {budget} is {budget.value / full:.1f}x the full {target.name} ({budget.show(full)}): the "
            "design would be wider than the model; lower the budget, or allow a wider network (--allow-wider)"
        )
    stages = len(target.stages)
    ratios = _ratios(target, pattern, per_layer, stage_map)
    base = {**_base_widths(target), **_residual_ratios(target, pattern, stage_map)}

    def build(scale: float, bumps: dict | None = None) -> ArchSpec:
        return _apply(target, base, ratios, scale, multiple_of, bumps or {})

    lo, hi = 1e-4, 1.0
    while budget.of(build(hi)) < budget.value:
        hi *= 2
        if hi > 1e4:
            raise UserError(f"budget {budget} is out of reach for {target.name}")
    if budget.of(build(lo)) > budget.value:
        raise UserError(
            f"budget {budget} is below the smallest {target.name} "
            f"({budget.show(budget.of(build(lo)))}); every layer keeps at least {multiple_of} channel(s)"
        )
    for _ in range(60):  # bisection: the largest scale whose cost stays within the budget
        mid = math.sqrt(lo * hi)
        if budget.of(build(mid)) <= budget.value:
            lo = mid
        else:
            hi = mid
    spec = build(lo)
    best = min((build(lo), build(hi)), key=lambda s: abs(budget.of(s) - budget.value))
    if abs(budget.of(best) - budget.value) / budget.value <= 0.01:
        return best
    return _fill(spec, budget, multiple_of, stages) or best


def _ratios(target: ArchSpec, pattern, per_layer: bool, stage_map) -> list[list[float]]:
    """The keep ratio of every width entry of ``target``, by stage (uniform: all 1). Each entry follows its
    design-pattern stage (`models.pattern_stages`: a spec stage, or MobileNetV2's last 1x1 conv alone)."""
    if pattern is None:
        return [[1.0] * len(s) for s in target.stages]
    of = pattern_stages(target)
    n_stages = pattern_stage_count(target)
    per_stage = stage_ratios(pattern)
    if stage_map is None:
        if len(per_stage) != n_stages:
            raise UserError(
                f"the pattern has {len(per_stage)} stages but {target.name} has {n_stages}; give a stage map "
                f"(--stage-map with {n_stages} pattern-stage indices, e.g. "
                f"{','.join(str(min(i, len(per_stage) - 1)) for i in range(n_stages))})"
            )
        stage_map = list(range(n_stages))
    stage_map = list(stage_map)
    if len(stage_map) != n_stages or any(not 0 <= m < len(per_stage) for m in stage_map):
        raise UserError(f"a stage map needs {n_stages} indices in 0..{len(per_stage) - 1}, got {stage_map}")
    if per_layer:
        counts = [sum(row.count(p) for row in of) for p in range(n_stages)]
        values = [iter(r) for r in layer_ratios(pattern, counts, stage_map)]
        return [[next(values[p]) for p in row] for row in of]
    return [[per_stage[stage_map[p]] for p in row] for row in of]


def pattern_stage_count(spec: ArchSpec) -> int:
    """How many design-pattern stages ``spec`` has (`models.pattern_stages`): a pattern of it has as many."""
    return 1 + max(p for row in pattern_stages(spec) for p in row)


def _residual_ratios(target: ArchSpec, pattern, stage_map) -> dict[str, Any]:
    """A pattern of runs pruned with coupled groups (`guided.pruning.prune`'s ``coupled``) says how much of
    each stage's residual width and of the stem pruning kept: a design applies those shares to them
    (``residual``, ``stem_ratio``). Without them ({}), residual widths follow their stage's mean ratio."""
    if pattern is None or pattern.kind != "channels" or not target.stage_widths:
        return {}
    rows = pattern.stages
    mapped = list(stage_map) if stage_map is not None else list(range(len(rows)))
    if len(mapped) < len(target.stage_widths) or not all(
        "stage_width_ratio_mean" in rows[mapped[s]] for s in range(len(target.stage_widths))
    ):
        return {}
    residual = [rows[mapped[s]]["stage_width_ratio_mean"] for s in range(len(target.stage_widths))]
    return {"residual": residual, "stem_ratio": rows[mapped[0]].get("stem_ratio_mean", residual[0])}


def _base_widths(target: ArchSpec) -> dict[str, Any]:
    return {
        "stages": [list(s) for s in target.stages],
        "stage_widths": list(target.stage_widths),
        "stem": target.stem_width,
    }


def _round(w: float, k: int) -> int:
    return max(k, int(round(w / k)) * k)


def _apply(target: ArchSpec, base, ratios, scale: float, k: int, bumps: dict) -> ArchSpec:
    """Scale every width as the family's design rule says (`models.family.DESIGN_RULES`); residual widths
    follow their stage's mean ratio (and stay non-decreasing)."""
    stage_mean = [float(np.mean(r)) for r in ratios]
    rule = FAMILIES[target.family].design
    if rule == "plain":
        stages = [
            [_round(w * r * scale, k) + bumps.get((s, i), 0) for i, (w, r) in enumerate(zip(ws, rs))]
            for s, (ws, rs) in enumerate(zip(base["stages"], ratios))
        ]
        # the head's hidden layers are not pruned by channel methods: they follow the global scale
        hidden = target.head in ("l1", "imagenet")
        head_width = max(k, int(round(target.head_width * scale))) if hidden else target.head_width
        return target.replace(stages=stages, head_width=head_width)
    if rule == "projected":
        return _apply_projected(target, base, ratios, scale, k, bumps)
    found = base.get("residual")  # residual widths as coupled pruning found them: any order
    residual = []
    for s, w in enumerate(base["stage_widths"]):
        width = _round(w * (found[s] if found else stage_mean[s]) * scale, k) + bumps.get(("res", s), 0)
        residual.append(width if found else max(width, residual[-1] if residual else 1))  # else non-decreasing
    stem = _round(base["stem"] * (base["stem_ratio"] if found else stage_mean[0]) * scale, k)
    if rule == "residual":
        stem = stem if found else min(stem, residual[0])
        stages = [
            [_round(w * r * scale, k) + bumps.get((s, i), 0) for i, (w, r) in enumerate(zip(ws, rs))]
            for s, (ws, rs) in enumerate(zip(base["stages"], ratios))
        ]
        return target.replace(stages=stages, stage_widths=residual, stem_width=stem)
    # preresnet: selections keep every available channel; inner convs follow the pattern
    per = entries_per_unit(target.family, target.block)
    stages, in_ch = [], stem
    for s, (ws, rs) in enumerate(zip(base["stages"], ratios)):
        entries = []
        units = (len(ws) - (1 if s == len(base["stages"]) - 1 else 0)) // per
        for b in range(units):
            entries.append(in_ch)
            for j in range(1, per):
                i = b * per + j
                entries.append(_round(ws[i] * rs[i] * scale, k) + bumps.get((s, i), 0))
            in_ch = residual[s]
        stages.append(entries)
    stages[-1].append(residual[-1])
    return target.replace(stages=stages, stage_widths=residual, stem_width=stem)


def _apply_projected(target: ArchSpec, base, ratios, scale: float, k: int, bumps: dict) -> ArchSpec:
    """Families whose shortcuts project where widths change (MobileNetV2, torchvision's ResNets): inner widths
    (and MobileNetV2's last 1x1 conv) follow the pattern; each stage's output width, and the ResNet stem,
    the mean ratio of its stage's blocks (not of the last conv, a pattern stage of its own), with no
    ordering to keep."""
    stages = [
        [_round(w * r * scale, k) + bumps.get((s, i), 0) for i, (w, r) in enumerate(zip(ws, rs))]
        for s, (ws, rs) in enumerate(zip(base["stages"], ratios))
    ]
    of = pattern_stages(target)
    blocks = [[r for r, p in zip(rs, row) if p == s] for s, (rs, row) in enumerate(zip(ratios, of))]
    found = base.get("residual") or [float(np.mean(r)) for r in blocks]
    outs = [_round(w * r * scale, k) for w, r in zip(base["stage_widths"], found)]
    stem_ratio = base["stem_ratio"] if base.get("residual") else float(np.mean(blocks[0]))
    stem = _round(base["stem"] * stem_ratio * scale, k) if base["stem"] else 0
    return target.replace(stages=stages, stage_widths=outs, stem_width=stem)


def _fill(spec: ArchSpec, budget: Budget, k: int, n_stages: int) -> ArchSpec | None:
    """Close the last gap to the budget by widening single layers, largest step that still fits first."""
    current = spec
    for _ in range(10_000):
        gap = budget.value - budget.of(current)
        if abs(gap) <= 0.01 * budget.value:
            return current
        best = None
        for s, stage in enumerate(current.stages):
            for i in range(len(stage)):
                trial = [list(x) for x in current.stages]
                trial[s][i] += k
                try:
                    cand = current.replace(stages=trial)
                except ValueError:  # a selection wider than its input: not an option
                    continue
                delta = budget.of(cand) - budget.of(current)
                if 0 < delta <= gap + 0.01 * budget.value and (best is None or delta > best[0]):
                    best = (delta, cand)
        if best is None:
            return None
        current = best[1]
    return None


# ---------------------------------------------------------------------- guided sparsification
def design_sparsity(
    spec: ArchSpec,
    budget: Budget,
    *,
    pattern: Pattern | None = None,
    kernel: bool = False,
    include_linear: bool = False,
    stage_map: Sequence[int] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Fixed random masks whose per-stage densities follow a sparsity pattern, at a non-zero budget.

    Each layer keeps ``min(1, c * d_stage)`` of its weights, ``c`` solved so that non-zero parameters (or
    MACs) meet the budget; ``pattern=None`` gives uniform sparsification (the same density everywhere).
    With ``kernel``, positions inside 3x3 kernels are drawn with the pattern's kernel-position densities
    as weights (centres and crosses favoured, as pruning found).

    Returns:
        ``masks`` (parameter name to bool tensor) and ``densities`` (layer name to kept fraction).
    """

    if budget.kind == "latency":
        raise UserError("sparse designs are matched on params or macs: dense kernels take as long however many zeros")
    weighted = [r for r in layer_rows(spec) if r.kind == "conv" or (include_linear and r.kind == "linear")]
    dens, kernels = _stage_densities(spec, pattern, stage_map)
    keep = _solve_counts(spec, budget, weighted, dens)
    masks = _random_masks(weighted, keep, kernels if kernel else {}, seed)
    return {"masks": masks, "densities": {r.name: keep[r.name] / r.weight_params for r in weighted}}


def _stage_densities(spec: ArchSpec, pattern, stage_map) -> tuple[list[float], dict]:
    """Each target stage's density from the pattern (through the stage map), and its 3x3 kernel grid."""
    n_stages = len(spec.stages)
    if pattern is None:
        return [1.0] * n_stages, {}
    if pattern.kind != "sparsity":
        raise UserError("guided sparsification needs a sparsity pattern (from masked runs), not a channel one")
    src = pattern.stage_ratios()
    stage_map = list(stage_map) if stage_map is not None else list(range(n_stages))
    if len(src) != n_stages and stage_map == list(range(n_stages)):
        raise UserError(
            f"the pattern has {len(src)} stages but {spec.name} has {n_stages}; give a stage map "
            f"(--stage-map with {n_stages} pattern-stage indices)"
        )
    if len(stage_map) != n_stages or any(not 0 <= m < len(src) for m in stage_map):
        raise UserError(f"a stage map needs {n_stages} indices in 0..{len(src) - 1}, got {stage_map}")
    return [src[m] for m in stage_map], {s: pattern.kernel.get(m) for s, m in enumerate(stage_map)}


def _solve_counts(spec: ArchSpec, budget: Budget, weighted, dens: list[float]) -> dict[str, int]:
    """Kept weights per layer, ``min(1, c * density)`` of each, with ``c`` bisected to the budget."""

    def counts(c: float) -> dict[str, int]:
        return {
            r.name: max(1, round(r.weight_params * min(1.0, c * dens[max(r.stage, 0)] if r.stage >= 0 else c)))
            for r in weighted
        }

    def spend(c: float) -> int:
        fake = {f"{r.name}.weight": _CountMask(counts(c)[r.name], r.weight_params) for r in weighted}
        nz = nonzero_cost(spec, fake)
        return nz.params if budget.kind == "params" else nz.macs

    lo, hi = 0.0, 1.0 / max(min(dens), 1e-6)
    if spend(hi) < budget.value:
        raise UserError(f"budget {budget} exceeds the dense {spec.name}")
    if spend(lo) > budget.value:
        raise UserError(f"budget {budget} is below what the unmasked layers alone cost")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spend(mid) <= budget.value else (lo, mid)
    return counts(hi if abs(spend(hi) - budget.value) < abs(spend(lo) - budget.value) else lo)


def _random_masks(weighted, keep: dict[str, int], kernels: dict, seed: int) -> dict[str, Any]:
    """Seeded random masks with ``keep`` entries per layer; 3x3 positions drawn by ``kernels`` weights."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for r in weighted:
        in_ch = r.in_ch // r.groups
        shape = (r.out_ch, in_ch, r.kernel, r.kernel) if r.kind == "conv" else (r.out_ch, r.in_ch)
        grid = kernels.get(r.stage) if r.kind == "conv" and r.kernel == 3 else None
        if grid is not None:
            weights = torch.tensor(grid, dtype=torch.float64).clamp_min(1e-6).repeat(r.out_ch * in_ch, 1, 1)
            idx = torch.multinomial(weights.flatten(), keep[r.name], replacement=False, generator=gen)
        else:
            idx = torch.randperm(r.weight_params, generator=gen)[: keep[r.name]]
        m = torch.zeros(r.weight_params, dtype=torch.bool)
        m[idx] = True
        masks[f"{r.name}.weight"] = m.view(shape)
    return masks


class _CountMask:
    """Stands in for a mask with ``kept`` of ``total`` entries set (for counting only)."""

    def __init__(self, kept: int, total: int) -> None:
        self.kept, self.total = kept, total

    def sum(self) -> int:
        return self.kept

    def numel(self) -> int:
        return self.total
