"""Search figures: optimisation history and Pareto front (data functions tested, drawing thin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["history_data", "draw_history", "pareto_data", "draw_pareto"]


def history_data(trials: list[Any]) -> dict[str, list]:
    """Trial numbers, first objective values, the running best, and which trials were seeded designs."""
    trials = sorted(trials, key=lambda t: t.number)
    values = [t.values[0] for t in trials]
    best, running = [], float("-inf")
    for v in values:
        running = max(running, v)
        best.append(running)
    return {
        "number": [t.number for t in trials],
        "value": values,
        "best": best,
        "seeded": ["seed_design" in t.user_attrs for t in trials],
    }


def draw_history(trials: list[Any], path: str | Path, *, seeded: bool = True) -> list[Path]:
    """Validation accuracy per trial and the best so far; seeded designs marked."""
    from guided.plots import finish, subplots

    data = history_data(trials)
    fig, ax = subplots(figsize=(5.5, 3.2))
    ax.plot(data["number"], [100 * v for v in data["value"]], "o", ms=4, label="trial")
    ax.plot(data["number"], [100 * v for v in data["best"]], "-", label="best so far")
    if seeded:
        xs = [n for n, s in zip(data["number"], data["seeded"]) if s]
        ys = [100 * v for v, s in zip(data["value"], data["seeded"]) if s]
        ax.plot(xs, ys, "s", mfc="none", ms=9, label="seeded design")
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
    from guided.plots import finish, subplots

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
