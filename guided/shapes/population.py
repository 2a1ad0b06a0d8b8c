"""Where a shape sits among all shapes of its cost: populations of width shapes at one budget, and what
their accuracies say (the design-space analysis of Radosavovic et al., "On Network Design Spaces for
Visual Recognition", 2019, and "Designing Network Design Spaces", 2020).

A *population* is ``n`` width shapes of one target architecture drawn at random under one budget: each
design-pattern stage (`models.pattern_stages`) gets a keep ratio drawn log-uniformly in ``[low, high]``,
and `guided.shapes.design.design`, the solver every guided and uniform design uses, scales the shape by one
global factor to the budget (within 1%). Trained once each in a study's protocol, the population's
accuracies give:

- the **EDF** (empirical distribution function) of accuracy, and each arm's **percentile** in it: the share
  of the population an arm's mean accuracy beats (ties count half);
- per stage, the **Spearman** rank correlation of the stage's width share (after solving to the budget)
  with accuracy, its p-value and 95% interval, and the stage's **good range**: the 95% interval of the width
  share of the best shape in bootstrap samples of a quarter of the population (the empirical bootstrap of
  "Designing Network Design Spaces", section 3.1);
- for a cheap evaluator (a search's proxy score), the Spearman correlation of its scores with the
  population's accuracies: how well it ranks what full training gives; and for two evaluators, the
  difference of their correlations with a paired bootstrap interval over shapes (`spearman_contrast`).
  An evaluator is *clearly better* than another when that 95% interval excludes zero.

Pure functions of specs and numbers: nothing is trained here (`guided.pipeline.stages` plans the runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from guided.errors import UserError
from guided.shapes.design import Budget, design, pattern_stage_count
from guided.shapes.patterns import Pattern
from models import ArchSpec, pattern_stages

__all__ = [
    "Shape",
    "draw_shapes",
    "stage_shares",
    "percentile",
    "edf",
    "spearman",
    "good_range",
    "spearman_contrast",
    "arm_summary",
    "analyse",
    "RATIO_RANGE",
]

#: The default range of the drawn per-stage keep ratios (log-uniform): a stage between a quarter of its
#: relative width and all of it.
RATIO_RANGE = (0.25, 1.0)

#: Draws per wanted shape before a population gives up (duplicates are dropped).
TRIES_PER_SHAPE = 20

#: How far a solved shape may miss its budget (the design solver's own tolerance).
BUDGET_TOLERANCE = 0.01


@dataclass(frozen=True)
class Shape:
    """One member of a population.

    Attributes:
        index: its place in the population (draw order among distinct shapes).
        ratios: the drawn keep ratio of each design-pattern stage, before solving to the budget.
        spec: the solved architecture.
        shares: each design-pattern stage's width share of the target after solving (`stage_shares`).
    """

    index: int
    ratios: tuple[float, ...]
    spec: ArchSpec
    shares: tuple[float, ...]


def draw_shapes(
    target: ArchSpec,
    budget: Budget,
    n: int,
    *,
    seed: int = 0,
    low: float = RATIO_RANGE[0],
    high: float = RATIO_RANGE[1],
    multiple_of: int = 1,
) -> list[Shape]:
    """``n`` distinct shapes of ``target`` at ``budget``, drawn from ``seed``.

    Each draw gives every design-pattern stage a keep ratio ``exp(U(log low, log high))``; the design solver
    scales the shape to the budget. A drawn shape whose solved spec repeats an earlier one, or misses the
    budget by more than 1%, is dropped and another is drawn. Draws come in order from one generator, so the
    first ``k`` shapes of a population of ``n`` are the population of ``k``: raising ``n`` keeps the shapes
    drawn so far.

    Example:
        >>> from models import create_spec, cost
        >>> spec = create_spec("vgg11", width_mult=0.25)
        >>> shapes = draw_shapes(spec, Budget("macs", 0.25 * cost(spec).macs), 3, seed=0)
        >>> len({s.spec.to_json() for s in shapes})
        3
    """
    if n < 1:
        raise UserError(f"a population needs at least 1 shape, got n = {n}")
    if not 0 < low <= high <= 1:
        raise UserError(f"the ratio range must satisfy 0 < low <= high <= 1, got [{low}, {high}]")
    stages = pattern_stage_count(target)
    rng = np.random.default_rng(seed)
    shapes: list[Shape] = []
    seen: set[str] = set()
    tries = TRIES_PER_SHAPE * n
    for _ in range(tries):
        ratios = tuple(float(r) for r in np.exp(rng.uniform(math.log(low), math.log(high), size=stages)))
        spec = design(target, budget, pattern=_pattern(ratios), multiple_of=multiple_of)
        key = spec.to_json()
        if key in seen or abs(budget.of(spec) - budget.value) > BUDGET_TOLERANCE * budget.value:
            continue
        seen.add(key)
        shapes.append(Shape(len(shapes), ratios, spec, stage_shares(spec, target)))
        if len(shapes) == n:
            return shapes
    raise UserError(
        f"drew only {len(shapes)} distinct shapes of {target.name} within 1% of {budget} in {tries} draws; "
        f"lower n or widen the ratio range [{low}, {high}]"
    )


def _pattern(ratios: Sequence[float]) -> Pattern:
    """A channel pattern with one keep ratio per design-pattern stage: what the design solver reads."""
    return Pattern("channels", tuple({"stage": s, "keep_ratio_mean": r} for s, r in enumerate(ratios)))


def stage_shares(spec: ArchSpec, target: ArchSpec) -> tuple[float, ...]:
    """Each design-pattern stage's width share of ``target``: the summed widths of its entries in ``spec``
    over those in ``target`` (``spec`` is ``target`` with other widths).

    Example:
        >>> from models import create_spec
        >>> stage_shares(create_spec("vgg11", width_mult=0.5), create_spec("vgg11"))
        (0.5, 0.5, 0.5, 0.5, 0.5)
    """
    of = [p for row in pattern_stages(target) for p in row]
    if len(spec.widths()) != len(of):
        raise UserError(f"{spec.name} does not have the width entries of {target.name}")
    kept = np.zeros(max(of) + 1)
    base = np.zeros(max(of) + 1)
    for p, w, b in zip(of, spec.widths(), target.widths()):
        kept[p] += w
        base[p] += b
    return tuple(round(float(k / b), 6) for k, b in zip(kept, base))


# ---------------------------------------------------------------------- analysis
def percentile(values: Sequence[float], x: float) -> float:
    """The share of ``values`` (in %) below ``x``, ties counted half: where ``x`` sits in their EDF.

    Example:
        >>> percentile([0.1, 0.2, 0.3, 0.4], 0.3)
        62.5
    """
    v = np.asarray(values, dtype=float)
    if not len(v):
        raise ValueError("percentile of an empty population")
    return float(100 * ((v < x).sum() + 0.5 * (v == x).sum()) / len(v))


def edf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The empirical distribution function of ``values``: sorted values and the share at or below each.

    Example:
        >>> edf([0.3, 0.1, 0.2])
        ([0.1, 0.2, 0.3], [0.3333333333333333, 0.6666666666666666, 1.0])
    """
    xs = sorted(float(v) for v in values)
    return xs, [(i + 1) / len(xs) for i in range(len(xs))]


def spearman(x: Sequence[float], y: Sequence[float], *, confidence: float = 0.95) -> dict[str, Any]:
    """Spearman's rank correlation (scipy) with its p-value and an interval from Fisher's z with the
    standard error ``sqrt(1.06 / (n - 3))`` of Fieller, Hartley and Pearson (1957); ``rho`` is ``None``
    when either side is constant, the interval ``None`` below 4 pairs.

    Example:
        >>> round(spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 11])["rho"], 6)
        1.0
    """
    from scipy import stats

    n = len(x)
    if n != len(y):
        raise ValueError("spearman needs as many x as y")
    out: dict[str, Any] = {"rho": None, "p": None, "low": None, "high": None, "n": n}
    if n < 3 or len(set(x)) == 1 or len(set(y)) == 1:
        return out
    test = stats.spearmanr(x, y)
    rho = float(test.statistic)
    out.update(rho=rho, p=float(test.pvalue))
    if n >= 4:
        z, se = math.atanh(max(-0.999999, min(0.999999, rho))), math.sqrt(1.06 / (n - 3))
        q = float(stats.norm.ppf(0.5 + confidence / 2))
        out.update(low=math.tanh(z - q * se), high=math.tanh(z + q * se))
    return out


def good_range(
    x: Sequence[float],
    accuracy: Sequence[float],
    *,
    share: float = 0.25,
    draws: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float] | None:
    """Where the best shapes' ``x`` lies: in ``draws`` bootstrap samples of ``share`` of the pairs (with
    replacement), the ``x`` of the most accurate pair; its ``confidence`` interval (``low``, ``high``) and
    median (``best``). ``None`` with fewer than 4 pairs.

    Example:
        >>> r = good_range([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [1, 2, 3, 4, 5, 6, 7, 8])
        >>> r["high"]
        0.8
    """
    xs, acc = np.asarray(x, dtype=float), np.asarray(accuracy, dtype=float)
    if len(xs) != len(acc):
        raise ValueError("good_range needs as many x as accuracies")
    if len(xs) < 4:
        return None
    k = max(2, int(round(share * len(xs))))
    picks = np.random.default_rng(seed).integers(0, len(xs), size=(draws, k))
    best = xs[picks[np.arange(draws), np.argmax(acc[picks], axis=1)]]
    tail = (1 - confidence) / 2
    low, mid, high = np.quantile(best, [tail, 0.5, 1 - tail])
    return {"low": float(low), "best": float(mid), "high": float(high)}


def spearman_contrast(
    a: Sequence[float],
    b: Sequence[float],
    accuracy: Sequence[float],
    *,
    draws: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """How much better ``b`` ranks ``accuracy`` than ``a`` does: Spearman(b) - Spearman(a) on the same
    shapes, with its ``confidence`` interval from ``draws`` bootstrap resamples of the shapes (each resample
    scores both evaluators on the same shapes, so the interval accounts for their correlation). ``None``
    bounds below 4 shapes or when a side is constant.

    Example:
        >>> d = spearman_contrast([3, 1, 2, 5, 4, 6], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6])
        >>> round(d["difference"], 3), d["high"]
        (0.229, 1.0)
    """
    from scipy import stats

    xa, xb, acc = (np.asarray(v, dtype=float) for v in (a, b, accuracy))
    if not len(xa) == len(xb) == len(acc):
        raise ValueError("spearman_contrast needs one score of each evaluator per accuracy")
    ra, rb = spearman(xa, acc)["rho"], spearman(xb, acc)["rho"]
    out: dict[str, Any] = {"difference": None, "low": None, "high": None, "n": len(acc)}
    if ra is None or rb is None or len(acc) < 4:
        return out
    picks = np.random.default_rng(seed).integers(0, len(acc), size=(draws, len(acc)))

    def rho(x: np.ndarray) -> np.ndarray:  # Spearman per resample: Pearson of average ranks, row by row
        rx, ry = stats.rankdata(x[picks], axis=1), stats.rankdata(acc[picks], axis=1)
        rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (rx * ry).sum(axis=1) / np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))

    diffs = rho(xb) - rho(xa)
    diffs = diffs[np.isfinite(diffs)]  # a resample where a side is constant has no correlation
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return {**out, "difference": rb - ra, "low": float(low), "high": float(high)}


def arm_summary(accuracies: Sequence[float], population: Sequence[float]) -> dict[str, Any]:
    """An arm's mean accuracy over seeds with its 95% t-interval, and the percentiles of the mean and of the
    interval's ends in the population's accuracies."""
    from scipy import stats

    a = np.asarray(accuracies, dtype=float)
    mean = float(a.mean())
    low = high = None
    if len(a) > 1:
        half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
        low, high = mean - half, mean + half
    return {
        "mean": mean,
        "low": low,
        "high": high,
        "seeds": len(a),
        "percentile": percentile(population, mean),
        "percentile_low": None if low is None else percentile(population, low),
        "percentile_high": None if high is None else percentile(population, high),
    }


def analyse(
    shares: Sequence[Sequence[float]],
    accuracy: Sequence[float],
    *,
    arms: Mapping[str, Sequence[float]] | None = None,
    proxies: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Everything a report says of a population: its accuracy spread, each arm's place in it (``arms``: arm
    name -> its accuracies over seeds), per stage the Spearman correlation and good range of the stage's
    width share (``shares``: one row per shape), and each proxy's rank correlation with the accuracies
    (``proxies``: name -> one score per shape)."""
    acc = [float(a) for a in accuracy]
    if not acc or len(shares) != len(acc):
        raise ValueError("analyse needs one row of stage shares per accuracy, and at least one")
    columns = list(zip(*shares))
    stages = []
    for s, column in enumerate(columns):
        rank = spearman(column, acc)
        stages.append({"stage": s, "share_mean": float(np.mean(column)), **rank, "good": good_range(column, acc)})
    return {
        "n": len(acc),
        "accuracy": {
            "mean": float(np.mean(acc)),
            "std": float(np.std(acc, ddof=1)) if len(acc) > 1 else None,
            "min": min(acc),
            "median": float(np.median(acc)),
            "max": max(acc),
        },
        "arms": {name: arm_summary(values, acc) for name, values in (arms or {}).items() if len(values)},
        "stages": stages,
        "proxies": {name: spearman(list(scores), acc) for name, scores in (proxies or {}).items()},
        "contrasts": _contrasts(proxies or {}, acc),
    }


def _contrasts(proxies: Mapping[str, Sequence[float]], acc: list[float]) -> list[dict[str, Any]]:
    """Every later proxy against the first (the reference evaluator): ``{"proxy", "against", difference,
    low, high, n, "clearly_better"}``; clearly better when the interval lies above zero."""
    names = list(proxies)
    out = []
    for name in names[1:]:
        d = spearman_contrast(list(proxies[names[0]]), list(proxies[name]), acc)
        better = d["low"] is not None and d["low"] > 0
        out.append({"proxy": name, "against": names[0], **d, "clearly_better": better})
    return out
