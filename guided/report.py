"""Report helpers shared by the quick start and studies: Markdown tables, verdicts, a self-contained HTML page."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["html_page", "compare"]


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


def html_page(markdown: str, base: str | Path, *, title: str) -> str:
    """A self-contained HTML page from a report's Markdown: headings, paragraphs, tables, images.

    Images (``![alt](path.png)`` on their own line, ``path`` relative to ``base``) are inlined as base64.
    """
    base = Path(base)
    body: list[str] = []
    table: list[str] = []

    def flush_table() -> None:
        if table:
            cells = [[c.strip() for c in line.strip("|").split("|")] for line in table if not set(line) <= set("|- ")]
            head, *rest = cells
            body.append(
                "<table><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rest)
                + "</table>"
            )
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](")
            data = base64.b64encode((base / src.rstrip(")")).read_bytes()).decode()
            body.append(
                f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%"></p>'
            )
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush_table()
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
