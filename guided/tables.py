"""Numbers for reports: mean ± std cells, Markdown tables, and plain-words verdicts over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["mean_std", "markdown_table", "difference", "interval_cell", "compare"]


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


def difference(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict[str, Any]:
    """Mean difference ``a - b`` in points (accuracies given in 0..1) with its confidence interval from
    Welch's t-test (`scipy.stats.ttest_ind` with unequal variances); ``low``/``high`` are ``None`` when a
    side has fewer than two seeds.

    Example:
        >>> d = difference([0.80, 0.82, 0.81], [0.70, 0.71, 0.69])
        >>> round(d["diff"], 2), round(d["low"], 2), round(d["high"], 2)
        (11.0, 8.73, 13.27)
    """
    from scipy import stats

    x, y = 100 * np.asarray(a, dtype=float), 100 * np.asarray(b, dtype=float)
    out = {"diff": float(x.mean() - y.mean()), "low": None, "high": None, "p": None, "n": (len(x), len(y))}
    if len(x) < 2 or len(y) < 2:
        return out
    if x.std() == 0 and y.std() == 0:  # no spread at all: the interval is the point
        return {**out, "low": out["diff"], "high": out["diff"], "p": float(out["diff"] == 0)}
    test = stats.ttest_ind(x, y, equal_var=False)
    ci = test.confidence_interval(confidence)
    return {**out, "low": float(ci.low), "high": float(ci.high), "p": float(test.pvalue)}


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
        >>> compare([0.80, 0.82], [0.805, 0.81], names=("guided", "uniform"))
        'no detectable difference between guided and uniform: +0.25 points [-9.87, +10.37] (95% CI, Welch, n=2 vs 2)'
    """
    d = difference(a, b)
    n = f"n={d['n'][0]} vs {d['n'][1]}"
    if d["low"] is None:
        return f"{names[0]} vs {names[1]}: {d['diff']:+.2f} points; one seed, so no verdict ({n})"
    cell = f"{d['diff']:+.2f} points [{d['low']:+.2f}, {d['high']:+.2f}] (95% CI, Welch, {n})"
    if d["low"] > 0 or d["high"] < 0:
        return f"{names[0]} {'beats' if d['diff'] > 0 else 'trails'} {names[1]}: {cell}"
    return f"no detectable difference between {names[0]} and {names[1]}: {cell}"
