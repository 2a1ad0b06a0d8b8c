"""Search figures: optimisation history and Pareto front (data functions tested, drawing thin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guided.reporting.plots import arm_colours, finish, subplots

__all__ = ["history_data", "draw_history", "pareto_data", "draw_pareto"]


def history_data(history: list[dict[str, Any]]) -> dict[str, list]:
    """Completed trials of a search history (``search.json``'s ``history`` rows): their numbers, values,
    the running best, and which were seeded designs."""
    done = sorted((t for t in history if t.get("value") is not None), key=lambda t: t["number"])
    best, running = [], float("-inf")
    for t in done:
        running = max(running, t["value"])
        best.append(running)
    return {
        "number": [t["number"] for t in done],
        "value": [t["value"] for t in done],
        "best": best,
        "seed_design": [t.get("seed_design") is not None for t in done],
    }


def draw_history(
    histories: dict[str, list[dict[str, Any]]],
    path: str | Path,
    *,
    reference: float | None = None,
    colours: dict[str, str] | None = None,
) -> list[Path]:
    """Validation accuracy per trial and the best so far, one colour per search (``colours``: name ->
    colour, default `guided.reporting.plots.arm_colours`); seeded designs boxed; ``reference`` (e.g. the guided
    design's validation accuracy) as a dashed line."""

    colours = colours or arm_colours(histories)
    fig, ax = subplots(figsize=(5.5, 3.2))
    for name, history in histories.items():
        data = history_data(history)
        xs = [n + 1 for n in data["number"]]
        best = [100 * v for v in data["best"]]
        (line,) = ax.plot(xs, best, "-", label=f"{name}: best so far", color=colours[name])
        ax.plot(xs, [100 * v for v in data["value"]], "o", ms=3, color=line.get_color(), alpha=0.5)
        seeded = [(x, 100 * v) for x, v, s in zip(xs, data["value"], data["seed_design"]) if s]
        if seeded:
            ax.plot(*zip(*seeded), "s", mfc="none", ms=9, color=line.get_color())
    if reference is not None:
        ax.axhline(100 * reference, ls="--", color="k", lw=1, label="guided design")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=8)
    return finish(fig, path)


def pareto_data(trials: list[Any], front: list[int]) -> dict[str, list]:
    """MACs and accuracy of every trial, and which are on the Pareto front."""
    return {
        "macs": [t.values[1] for t in trials],
        "acc": [t.values[0] for t in trials],
        "front": [t.number in front for t in trials],
    }


def draw_pareto(trials: list[Any], front: list[int], path: str | Path) -> list[Path]:
    """Accuracy against MACs, the Pareto front highlighted."""

    data = pareto_data(trials, front)
    fig, ax = subplots(figsize=(5, 3.2))
    ax.scatter([m / 1e6 for m in data["macs"]], [100 * a for a in data["acc"]], s=14, c="0.6", label="trial")
    on = [(m / 1e6, 100 * a) for m, a, f in zip(data["macs"], data["acc"], data["front"]) if f]
    if on:
        xs, ys = zip(*sorted(on))
        ax.plot(xs, ys, "o-", color="#cc3311", label="Pareto front")
    ax.set_xlabel("MACs (M)")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=8)
    return finish(fig, path)
