"""Numbers for reports: mean ± std cells, Markdown tables, and plain-words verdicts over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["mean_std", "markdown_table", "compare"]


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


def compare(a: Sequence[float], b: Sequence[float], *, names: tuple[str, str] = ("A", "B")) -> str:
    """A plain-words comparison of two sets of accuracies (0..1) over seeds.

    The difference counts as real only when it exceeds the larger of the two sample standard deviations
    (with one run each, it never does).

    Example:
        >>> compare([0.80, 0.82], [0.70, 0.71], names=("guided", "uniform"))
        'guided beats uniform by 10.50 points (81.00% vs 70.50%)'
        >>> compare([0.80, 0.82], [0.805, 0.81], names=("guided", "uniform"))
        'guided and uniform are within seed noise (81.00% vs 80.75%, +0.25 points)'
    """
    ma, mb = 100 * float(np.mean(a)), 100 * float(np.mean(b))
    noise = max([100 * float(np.std(x, ddof=1)) for x in (a, b) if len(x) > 1] or [float("inf")])
    diff = ma - mb
    if abs(diff) <= noise:
        return f"{names[0]} and {names[1]} are within seed noise ({ma:.2f}% vs {mb:.2f}%, {diff:+.2f} points)"
    word = "beats" if diff > 0 else "trails"
    return f"{names[0]} {word} {names[1]} by {abs(diff):.2f} points ({ma:.2f}% vs {mb:.2f}%)"
