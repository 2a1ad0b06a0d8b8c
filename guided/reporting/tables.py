"""Numbers for reports: mean ± std cells, Markdown tables, and plain-words verdicts over seeds.

A verdict compares two arms' accuracies over seeds with Welch's t-test: the difference of means, its 95%
confidence interval and p-value (`difference`), and the **minimum detectable effect** (`detectable`): the
smallest true difference the comparison would have found with 80% probability, given the spread and
seed counts it saw. A report's verdicts form one family; `holm` adjusts their p-values (statsmodels), and
only verdicts whose adjusted p stays below alpha count as findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "mean_std",
    "markdown_table",
    "difference",
    "paired_difference",
    "detectable",
    "interval_cell",
    "compare",
    "verdict",
    "holm",
]

#: Every verdict's test level and the power its detectable effect is stated at.
ALPHA, POWER = 0.05, 0.8


def mean_std(values: Sequence[float], *, percent: bool = True, digits: int = 2) -> str:
    """``mean ± std`` (sample std; just the value for one run), in percent by default.

    Example:
        >>> mean_std([0.5, 0.7])
        '60.00 ± 14.14'
    """
    if not len(values):
        return "-"
    s = pd.Series(values, dtype=float) * (100 if percent else 1)
    if len(s) == 1:
        return f"{s.iloc[0]:.{digits}f}"
    return f"{s.mean():.{digits}f} ± {s.std():.{digits}f}"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table of a data frame's rows (cells as ``str``)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def detectable(sd_a: float, n_a: int, sd_b: float, n_b: int, *, alpha: float = ALPHA, power: float = POWER):
    """The minimum detectable effect of a two-sided Welch t-test: the smallest true difference of means
    found (p < ``alpha``) with probability ``power``, for samples of ``n_a`` and ``n_b`` with these standard
    deviations (same unit as the result). Solved on scipy's noncentral t distribution with the
    Welch-Satterthwaite degrees of freedom; ``None`` with fewer than two seeds on a side.

    Example:
        >>> round(detectable(1.0, 3, 1.0, 3), 2)  # three seeds a side, std 1 point: 3.07 points
        3.07
    """

    if n_a < 2 or n_b < 2:
        return None
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se = (va + vb) ** 0.5
    if se == 0:
        return 0.0
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    return _smallest_found(se, df, alpha=alpha, power=power)


def _quiet(fn):
    """Run ``fn`` without scipy's and numpy's RuntimeWarnings (precision loss on near-equal samples, a
    noncentral t that underflows): they would print before error lines and into study output, and every
    case they warn about has its own answer here (an interval that is the point, a NaN tail taken as 0)."""
    import functools
    import warnings

    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)

    return quiet


@_quiet
def _smallest_found(se: float, df: float, *, alpha: float, power: float) -> float:
    """The true difference a two-sided t-test with standard error ``se`` and ``df`` degrees of freedom finds
    with probability ``power`` at level ``alpha`` (scipy's noncentral t): the detectable effect of Welch's
    test (`detectable`) and of the paired one (`paired_difference`) alike."""
    from scipy import optimize, stats

    crit = stats.t.ppf(1 - alpha / 2, df)

    def missed(delta: float) -> float:  # power at ``delta`` minus the target
        nc = delta / se
        wrong_side = float(np.nan_to_num(stats.nct.cdf(-crit, df, nc)))  # negligible; scipy may give NaN
        return float(stats.nct.sf(crit, df, nc)) + wrong_side - power

    high = se * (crit + 1)
    while missed(high) < 0:  # widen until the power is reached (small samples need several standard errors)
        high *= 2
    return float(optimize.brentq(missed, 0.0, high))


@_quiet
def difference(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict[str, Any]:
    """Mean difference ``a - b`` in points (accuracies given in 0..1) with its confidence interval from
    Welch's t-test (`scipy.stats.ttest_ind` with unequal variances), and its minimum detectable effect
    ``mde`` (points, at ``alpha`` = 1 - confidence and 80% power, `detectable`); ``low``/``high``/``mde``
    are ``None`` when a side has fewer than two seeds.

    Example:
        >>> d = difference([0.80, 0.82, 0.81], [0.70, 0.71, 0.69])
        >>> round(d["diff"], 2), round(d["low"], 2), round(d["high"], 2)
        (11.0, 8.73, 13.27)
    """
    from scipy import stats

    x, y = 100 * np.asarray(a, dtype=float), 100 * np.asarray(b, dtype=float)
    out = {"diff": float(x.mean() - y.mean()), "low": None, "high": None, "p": None, "n": (len(x), len(y))}
    out.update(alpha=1 - confidence, mde=None, sd=(_sd(x), _sd(y)))
    if len(x) < 2 or len(y) < 2:
        return out
    out["mde"] = detectable(out["sd"][0], len(x), out["sd"][1], len(y), alpha=1 - confidence)
    if x.std() == 0 and y.std() == 0:  # no spread at all: the interval is the point
        return {**out, "low": out["diff"], "high": out["diff"], "p": float(out["diff"] == 0)}
    test = stats.ttest_ind(x, y, equal_var=False)
    ci = test.confidence_interval(confidence)
    return {**out, "low": float(ci.low), "high": float(ci.high), "p": float(test.pvalue)}


@_quiet
def paired_difference(a: dict[int, float], b: dict[int, float], *, confidence: float = 0.95) -> dict[str, Any] | None:
    """Mean difference ``a - b`` in points over the seeds both arms have (accuracies by seed, 0..1), with the
    paired t interval (`scipy.stats.ttest_rel`), its detectable effect ``mde`` (80% power, the same rule as
    `detectable` with the std of the per-seed differences and ``n - 1`` degrees of freedom), and the Pearson
    correlation ``r`` of the two arms over seeds. Runs that share a seed index share their data order and
    augmentation (`guided.training.loader.DeviceLoader` is seeded by it, whatever the architecture), so their noise is
    partly common; ``r`` says how much, and the paired interval is narrower by about ``sqrt(1 - r)``.
    ``None`` when fewer than three seeds are common.

    Example:
        >>> d = paired_difference({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.70, 1: 0.73, 2: 0.71})
        >>> round(d["diff"], 2), round(d["low"], 2), round(d["high"], 2), round(d["r"], 2)
        (9.67, 8.23, 11.1, 0.98)
    """
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 3:
        return None
    x = 100 * np.array([a[s] for s in seeds], dtype=float)
    y = 100 * np.array([b[s] for s in seeds], dtype=float)
    d, n = x - y, len(seeds)
    out = {"diff": float(d.mean()), "n": n, "seeds": seeds, "alpha": 1 - confidence}
    out["r"] = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else None
    sd = float(d.std(ddof=1))
    if sd == 0:
        return {**out, "low": out["diff"], "high": out["diff"], "p": float(out["diff"] == 0), "mde": 0.0, "sd": 0.0}
    test = stats.ttest_rel(x, y)
    ci = test.confidence_interval(confidence)
    mde = _smallest_found(sd / n**0.5, n - 1, alpha=1 - confidence, power=POWER)
    return {**out, "low": float(ci.low), "high": float(ci.high), "p": float(test.pvalue), "mde": mde, "sd": sd}


def interval_cell(d: dict[str, Any]) -> str:
    """``+2.90 [+1.10, +4.70]`` (or just the difference when there is no interval)."""
    if d["low"] is None:
        return f"{d['diff']:+.2f}"
    return f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def compare(a: Sequence[float], b: Sequence[float], *, names: tuple[str, str] = ("A", "B")) -> str:
    """A plain-words verdict on two sets of accuracies (0..1) over seeds, from `difference`.

    "beats"/"trails" only when the 95% confidence interval of the difference excludes 0; otherwise "no
    detectable difference"; with one seed on a side, no verdict at all.

    Example:
        >>> compare([0.80, 0.82, 0.81], [0.70, 0.71, 0.69], names=("guided", "uniform"))
        'guided beats uniform: +11.00 points [+8.73, +13.27] (95% CI, Welch, n=3 vs 3)'
        >>> compare([0.80, 0.82], [0.805, 0.81], names=("guided", "uniform")).split("; ")[1]
        'this comparison could only detect 13.06 points or more'
    """
    d = difference(a, b)
    n = f"n={d['n'][0]} vs {d['n'][1]}"
    if d["low"] is None:
        return f"{names[0]} vs {names[1]}: {d['diff']:+.2f} points; one seed, so no verdict ({n})"
    return _words(d, names, f"Welch, {n}")


def _words(d: dict[str, Any], names: tuple[str, str], test: str) -> str:
    """A verdict in words from an interval ``d`` (``diff``, ``low``, ``high``, ``mde``), ``test`` naming it."""
    cell = f"{d['diff']:+.2f} points [{d['low']:+.2f}, {d['high']:+.2f}] (95% CI, {test})"
    if d["low"] > 0 or d["high"] < 0:
        return f"{names[0]} {'beats' if d['diff'] > 0 else 'trails'} {names[1]}: {cell}"
    return (
        f"no detectable difference between {names[0]} and {names[1]}: {cell}; this comparison could only "
        f"detect {d['mde']:.2f} points or more"
    )


def verdict(
    a: Sequence[float],
    b: Sequence[float],
    *,
    names: tuple[str, str],
    where: str,
    seeds: tuple[Sequence[int], Sequence[int]] | None = None,
    pairing: str = "welch",
) -> dict[str, Any]:
    """One verdict as a record: where it was made, the words of `compare`, and its numbers (points): ``diff``,
    ``low``, ``high``, ``p``, ``mde``, ``alpha``, ``n``, ``sd`` (each arm's std over seeds), and ``pairing``,
    the interval these numbers come from.

    With ``seeds`` (each accuracy's seed), the record also holds ``welch`` and ``paired``
    (`paired_difference`, with the correlation ``r``) side by side. The rule is fixed before a study runs,
    by ``pairing``: ``welch`` (the default) always reports Welch's interval; ``paired`` reports the paired
    interval where at least three seeds are common to both arms, and Welch's elsewhere.
    """
    d = difference(a, b)
    numbers = {k: d[k] for k in ("diff", "low", "high", "p", "mde", "alpha")}
    record = {"where": where, "arms": list(names), "text": compare(a, b, names=names), **numbers}
    record.update(n=list(d["n"]), sd=list(d["sd"]), pairing="welch")
    if seeds is not None:
        pd_ = paired_difference(dict(zip(seeds[0], a)), dict(zip(seeds[1], b)))
        record["welch"] = dict(numbers)
        record["paired"] = pd_
        if pairing == "paired" and pd_ is not None and pd_["low"] is not None:
            record.update({k: pd_[k] for k in ("diff", "low", "high", "p", "mde")}, pairing="paired")
            record["text"] = _words(pd_, names, f"paired by seed, n={pd_['n']}")
    return record


def holm(verdicts: list[dict[str, Any]]) -> None:
    """Holm's step-down adjustment over one family of verdicts (`verdict` records), in place: ``p_holm`` (``None``
    without a p-value) and ``survives`` (adjusted p below the verdict's alpha), via
    `statsmodels.stats.multitest.multipletests`.

    Example:
        >>> family = [{"p": 0.01, "alpha": 0.05}, {"p": 0.04, "alpha": 0.05}, {"p": None, "alpha": 0.05}]
        >>> holm(family)
        >>> [(v["p_holm"], v["survives"]) for v in family]
        [(0.02, True), (0.04, True), (None, False)]
    """
    tested = [v for v in verdicts if v.get("p") is not None]
    for v in verdicts:
        v.update(p_holm=None, survives=False)
    if not tested:
        return
    from statsmodels.stats.multitest import multipletests

    reject, adjusted, _, _ = multipletests([v["p"] for v in tested], alpha=tested[0]["alpha"], method="holm")
    for v, ok, p in zip(tested, reject, adjusted):
        v.update(p_holm=float(p), survives=bool(ok))


def _sd(values: np.ndarray) -> float | None:
    return float(values.std(ddof=1)) if len(values) > 1 else None
