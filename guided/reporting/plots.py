"""Figures: a data function returns the numbers a figure shows (tested); a thin function draws them.

matplotlib is imported inside the drawing functions, with the non-interactive Agg backend, so importing
this module costs nothing and works without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guided.shapes.patterns import Pattern
from guided.shapes.population import edf
from guided.storage.io import atomic_write_bytes
from models import pattern_stages

__all__ = [
    "sparsity_plot_data",
    "draw_sparsity",
    "width_bars_data",
    "draw_width_bars",
    "profile_data",
    "draw_profiles",
    "accuracy_cost_data",
    "draw_accuracy_cost",
    "arm_colours",
    "ARM_COLOURS",
    "cost_note",
    "pareto_front",
    "population_edf_data",
    "draw_population_edf",
    "draw_population_stages",
]


#: The colour of each arm a study compares, the same in every figure (Paul Tol's colour-blind-safe
#: palettes). Arms not named here (per-layer arms, one arm per pattern) take `SPARE_COLOURS` in turn.
ARM_COLOURS = {
    "uniform": "#4477AA",
    "guided": "#EE6677",
    "pruned": "#228833",
    "transferred": "#CCBB44",
}
SPARE_COLOURS = ("#332288", "#117733", "#882255", "#DDCC77", "#44AA99", "#999933", "#88CCEE", "#CC6677", "#000000")


def arm_colours(labels, fixed: dict[str, str] | None = None) -> dict[str, str]:
    """One colour per arm label: the fixed `ARM_COLOURS` for the usual arms and ``fixed`` for more (a
    study's search arms: `guided.pipeline.roles.SearchArm.colour`), spare colours in order for the rest.
    Give every label of a report at once, so each figure draws an arm in the same colour.

    Example:
        >>> arm_colours(["guided", "uniform", "search-cold", "guided-per-layer"], {"search-cold": "#66CCEE"})
        {'guided': '#EE6677', 'uniform': '#4477AA', 'search-cold': '#66CCEE', 'guided-per-layer': '#332288'}
    """
    known, out, spare = {**ARM_COLOURS, **(fixed or {})}, {}, 0
    for label in dict.fromkeys(labels):
        if label in known:
            out[label] = known[label]
        else:
            out[label] = SPARE_COLOURS[spare % len(SPARE_COLOURS)]
            spare += 1
    return out


def sparsity_plot_data(pattern: Pattern) -> dict[str, Any]:
    """What `draw_sparsity` shows: per-stage kept fraction (mean, std) and per-stage 3x3 kernel grids of a
    sparsity pattern."""
    return {
        "stages": [row["stage"] for row in pattern.stages],
        "density": [row["density_mean"] for row in pattern.stages],
        "density_std": [row["density_std"] for row in pattern.stages],
        "kernel_stages": sorted(pattern.kernel),
        "kernel": [pattern.kernel[s] for s in sorted(pattern.kernel)],
        "runs": pattern.runs,
    }


def draw_sparsity(summary: Pattern, path: str | Path, *, title: str = "") -> list[Path]:
    """Bars of per-stage weight density and 3x3 heatmaps of kernel-position density; PNG and SVG.

    Returns:
        The written files.
    """
    data = sparsity_plot_data(summary)
    n = len(data["kernel"])
    fig, axes = subplots(1, n + 1, figsize=(3.2 + 1.9 * n, 3.0), gridspec_kw={"width_ratios": [2.2] + [1] * n})
    ax = axes[0] if n else axes
    ax.bar([f"{s + 1}" for s in data["stages"]], data["density"], yerr=data["density_std"], capsize=3, color="#4477aa")
    ax.set_xlabel("stage")
    ax.set_ylabel("weights kept")
    ax.set_ylim(0, 1)
    ax.set_title(f"density per stage ({data['runs']} runs)", fontsize=9)
    for i, (stage, grid) in enumerate(zip(data["kernel_stages"], data["kernel"], strict=True)):
        a = axes[i + 1]
        im = a.imshow(grid, vmin=0, vmax=max(max(row) for g in data["kernel"] for row in g), cmap="viridis")
        for r in range(3):
            for c in range(3):
                a.text(c, r, f"{grid[r][c]:.2f}", ha="center", va="center", fontsize=7, color="w")
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(f"stage {stage + 1}", fontsize=9)
    if n:
        fig.colorbar(im, ax=list(axes[1:]), shrink=0.8, label="kept at position")
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, path)


def width_bars_data(pattern: Pattern, designs: dict[str, Any]) -> dict[str, Any]:
    """Per-stage channel counts: pruned runs (mean, std over runs) and each design's widths, stage by stage.

    Args:
        pattern: a channel pattern (`guided.shapes.patterns.channel_summary`) of the pruned runs.
        designs: label -> `models.ArchSpec` (guided, uniform, ...), designed for the same stages.
    """
    stages = [row["stage"] for row in pattern.stages]
    layer_counts = {s: sum(1 for r in pattern.layers if r["stage"] == s) for s in stages}
    pruned = []
    for row in pattern.stages:
        per_layer = row["kept_mean"] / max(layer_counts[row["stage"]], 1)
        std = row["keep_ratio_std"] * row["original"] / max(layer_counts[row["stage"]], 1)
        pruned.append((per_layer, std))
    series = {"pruned": {"mean": [m for m, _ in pruned], "std": [sd for _, sd in pruned]}}

    for label, spec in designs.items():
        pairs = [(p, w) for row, widths in zip(pattern_stages(spec), spec.stages) for p, w in zip(row, widths)]
        if 1 + max(p for p, _ in pairs) != len(stages):
            raise ValueError(f"design {label!r} has {1 + max(p for p, _ in pairs)} stages, the pattern {len(stages)}")
        widths = [[w for p, w in pairs if p == s] for s in range(len(stages))]
        means = [sum(ws) / len(ws) for ws in widths]
        series[label] = {"mean": means, "std": [0.0] * len(stages)}
    return {"stages": stages, "series": series}


def draw_width_bars(
    pattern: Pattern,
    designs: dict[str, Any],
    path: str | Path,
    *,
    title: str = "",
    colours: dict[str, str] | None = None,
):
    """Grouped bars: mean channels per layer in each stage, for pruned runs and designs; PNG and SVG.
    ``colours``: label -> colour (`arm_colours`; default: each label's own)."""
    import numpy as np

    data = width_bars_data(pattern, designs)
    labels = list(data["series"])
    x = np.arange(len(data["stages"]))
    width = 0.8 / len(labels)
    colours = colours or arm_colours(labels)
    fig, ax = subplots(figsize=(1.4 + 1.2 * len(x), 3.2))
    for i, label in enumerate(labels):
        ser = data["series"][label]
        shown = label + cost_note(pattern.cost) if label == "pruned" else label
        offset = x + (i - (len(labels) - 1) / 2) * width
        ax.bar(offset, ser["mean"], width, yerr=ser["std"], capsize=2, label=shown, color=colours[label])
    ax.set_xticks(x, [f"stage {s + 1}" for s in data["stages"]])
    ax.set_ylabel("channels per layer")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return finish(fig, path)


def profile_data(patterns: dict[str, Pattern]) -> dict[str, Any]:
    """Per-layer keep ratio (mean, std) of each labelled channel pattern, with stage boundaries."""
    out = {}
    for label, pattern in patterns.items():
        out[label] = {
            "ratio": [r["keep_ratio_mean"] for r in pattern.layers],
            "std": [r["keep_ratio_std"] for r in pattern.layers],
            "stage": [r["stage"] for r in pattern.layers],
        }
    return out


def cost_note(cost: str | None) -> str:
    """How a pattern's channels were ranked (its ``cost``), for a legend: ``" (score per MAC)"``, or ``""``
    for score alone.

    Example:
        >>> cost_note("macs"), cost_note(None)
        (' (score per MAC)', '')
    """
    unit = {"params": "parameter", "macs": "MAC", "latency": "ms of latency"}.get(cost or "")
    return f" (score per {unit})" if unit else ""


def draw_profiles(patterns: dict[str, Pattern], path: str | Path, *, title: str = ""):
    """Lines of per-layer keep ratio, one per pattern (method, and the cost it ranked channels by), stage
    boundaries dotted; PNG and SVG."""
    data = profile_data(patterns)
    fig, ax = subplots(figsize=(6, 3.2))
    for label, ser in data.items():
        xs = list(range(1, len(ser["ratio"]) + 1))
        ax.errorbar(
            xs,
            ser["ratio"],
            yerr=ser["std"],
            marker="o",
            ms=3,
            capsize=2,
            label=label + cost_note(patterns[label].cost),
        )
        for i in range(1, len(ser["stage"])):
            if ser["stage"][i] != ser["stage"][i - 1]:
                ax.axvline(i + 0.5, color="0.8", ls=":", lw=1)
    ax.set_xlabel("layer")
    ax.set_ylabel("channels kept")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return finish(fig, path)


def accuracy_cost_data(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per group (``label``): mean and std test error (%) at each cost point, over seeds.

    Args:
        rows: one per run: ``label``, ``params``, ``macs``, ``test_acc`` (0..1), and optionally ``group``
            (the budget): runs of one label and group make one point. Without ``group``, runs of one label
            whose ``params`` agree within 2% do (designs meet budgets within 1%).

    Returns:
        label -> ``params``, ``macs``, ``error``, ``error_std`` (sample std over seeds), ``runs`` per point;
        ``kinds``: each point's budget kind (``params=25%`` -> ``params``; ``None`` without a group); and
        ``lines``: kind -> the points joined by a line, so that only points matched on the same cost
        kind are ever joined.
    """
    import numpy as np

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
    out = {}
    for label, runs in groups.items():
        runs = sorted(runs, key=lambda r: r["params"])
        points: list[list[dict[str, Any]]] = []
        for r in runs:
            if "group" in r:
                same = [p for p in points if p[0]["group"] == r["group"]]
                if same:
                    same[0].append(r)
                else:
                    points.append([r])
            elif points and abs(r["params"] - points[-1][0]["params"]) <= 0.02 * points[-1][0]["params"]:
                points[-1].append(r)
            else:
                points.append([r])
        kinds = [_budget_kind(p[0].get("group")) for p in points]
        out[label] = {
            "kinds": kinds,
            "lines": {k: [j for j in range(len(points)) if kinds[j] == k] for k in dict.fromkeys(kinds) if k},
            "params": [float(np.mean([r["params"] for r in p])) for p in points],
            "macs": [float(np.mean([r["macs"] for r in p])) for p in points],
            "error": [float(100 * (1 - np.mean([r["test_acc"] for r in p]))) for p in points],
            "error_std": [
                float(100 * np.std([r["test_acc"] for r in p], ddof=1)) if len(p) > 1 else 0.0 for p in points
            ],
            "runs": [len(p) for p in points],
        }
    return out


def _budget_kind(group: Any) -> str | None:
    """``params=25%`` -> ``params``; anything else -> ``None`` (its points are not joined)."""
    return str(group).partition("=")[0] if isinstance(group, str) and "=" in group else None


#: The line joining an arm's points matched on one cost kind.
KIND_LINES = {"params": "-", "macs": ":", "latency": "-."}


def accuracy_cost_legend(kinds: list[str]) -> list[str]:
    """The legend entries `draw_accuracy_cost` adds after the arms: what a line joins, what the bars and the
    circles are.

    Example:
        >>> accuracy_cost_legend(["params", "macs"])
        ['joined: matched on params', 'joined: matched on macs', 'bars: sample std over seeds', 'circled: Pareto front']
    """
    return [f"joined: matched on {k}" for k in kinds] + ["bars: sample std over seeds", "circled: Pareto front"]


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, error) points no other point beats on both (lower or equal cost and lower error), by cost.

    Example:
        >>> pareto_front([(1, 10), (2, 8), (3, 9), (4, 5)])
        [(1, 10), (2, 8), (4, 5)]
    """
    front: list[tuple[float, float]] = []
    for cost, error in sorted(points, key=lambda p: (p[0], p[1])):
        if not front or error < front[-1][1]:
            front.append((cost, error))
    return front


def draw_accuracy_cost(
    rows: list[dict[str, Any]], path: str | Path, *, title: str = "", colours: dict[str, str] | None = None
):
    """Test error against parameters and against MACs: one marker per arm at each budget (bars: sample std
    over seeds), an arm's points joined only among budgets of one cost kind (a line per kind, styled by
    `KIND_LINES`), arms nudged apart sideways so that coinciding points stay visible, and the Pareto front
    over all arms dashed and circled; the legend says all of it. ``colours``: label -> colour
    (`arm_colours`; default: each label's own)."""
    from matplotlib.lines import Line2D

    data = accuracy_cost_data(rows)
    colours = colours or arm_colours(data)
    fig, axes = subplots(1, 2, figsize=(9.5, 3.8), sharey=True)
    markers = "osD^vP*Xh<>"
    kinds = list(dict.fromkeys(k for ser in data.values() for k in ser["lines"]))
    for i, (label, ser) in enumerate(data.items()):
        nudge = 1 + 0.012 * (i - (len(data) - 1) / 2)  # coinciding arms side by side, not on top
        for ax, key in zip(axes, ("params", "macs")):
            xs = [x / 1e6 * nudge for x in ser[key]]
            style = {"color": colours[label], "alpha": 0.85}
            ax.errorbar(
                xs,
                ser["error"],
                yerr=ser["error_std"],
                marker=markers[i % len(markers)],
                linestyle="none",
                capsize=3,
                label=label if key == "params" else None,
                **style,
            )
            for kind, points in ser["lines"].items():
                joined = sorted(points, key=lambda j: xs[j])
                if len(joined) > 1:
                    ax.plot(
                        [xs[j] for j in joined],
                        [ser["error"][j] for j in joined],
                        linestyle=KIND_LINES.get(kind, "-"),
                        linewidth=1,
                        **style,
                    )
    for ax, key in zip(axes, ("params", "macs")):
        points = [(c / 1e6, e) for ser in data.values() for c, e in zip(ser[key], ser["error"])]
        front = pareto_front(points)
        ax.step(*zip(*front), where="post", color="black", linestyle="--", linewidth=1, label=None)
        ax.plot(*zip(*front), "o", markerfacecolor="none", markeredgecolor="black", markersize=10)
    labels = accuracy_cost_legend(kinds)
    extra = [Line2D([], [], color="grey", linestyle=KIND_LINES.get(k, "-")) for k in kinds]
    extra += [Line2D([], [], color="grey", marker="|", markersize=10, linestyle="none")]
    extra += [Line2D([], [], color="black", marker="o", markerfacecolor="none", markersize=10, linestyle="--")]
    handles, names = axes[0].get_legend_handles_labels()
    axes[0].legend(handles + extra, names + labels, fontsize=7)
    axes[0].set_xlabel("parameters (M)")
    axes[1].set_xlabel("MACs (M)")
    axes[0].set_ylabel("test error (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, path)


def population_edf_data(accuracy: list[float], arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What `draw_population_edf` shows, in points: the population's accuracy EDF (`guided.shapes.population.edf`)
    and each arm's mean, interval and percentile (``arms``: `guided.shapes.population.arm_summary` records)."""

    xs, ys = edf([100 * a for a in accuracy])
    marks = {
        arm: {
            "mean": 100 * a["mean"],
            "low": None if a["low"] is None else 100 * a["low"],
            "high": None if a["high"] is None else 100 * a["high"],
            "percentile": a["percentile"],
        }
        for arm, a in arms.items()
    }
    return {"accuracy": xs, "share": ys, "arms": marks}


def draw_population_edf(
    accuracy: list[float],
    arms: dict[str, dict[str, Any]],
    path: str | Path,
    *,
    colours: dict[str, str],
    title: str = "",
) -> list[Path]:
    """The population's accuracy EDF as a step line; each arm's mean a vertical line in its colour, its 95%
    interval a band, its percentile in the legend; PNG and SVG."""
    data = population_edf_data(accuracy, arms)
    fig, ax = subplots(figsize=(6, 3.6))
    ax.step(data["accuracy"], data["share"], where="post", color="0.3", lw=1.5, label=f"population (n={len(accuracy)})")
    for arm, m in data["arms"].items():
        colour = colours.get(arm, "0.5")
        if m["low"] is not None:
            ax.axvspan(m["low"], m["high"], color=colour, alpha=0.15, lw=0)
        ax.axvline(m["mean"], color=colour, lw=1.8, label=f"{arm}: {m['mean']:.2f}% (percentile {m['percentile']:.0f})")
    ax.set_xlabel("test accuracy (%)")
    ax.set_ylabel("share of the population at or below")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    return finish(fig, path)


def draw_population_stages(
    shares: list[list[float]], accuracy: list[float], stages: list[dict[str, Any]], path: str | Path, *, title: str = ""
) -> list[Path]:
    """Per design-pattern stage, each shape's width share against its accuracy, the stage's good range
    shaded and its Spearman correlation in the panel's title; PNG and SVG."""
    columns = list(zip(*shares))
    n = len(columns)
    fig, axes = subplots(1, n, figsize=(2.2 * n + 0.6, 2.6), sharey=True, squeeze=False)
    acc = [100 * a for a in accuracy]
    for s, (ax, column, row) in enumerate(zip(axes[0], columns, stages)):
        if row.get("good"):
            ax.axvspan(row["good"]["low"], row["good"]["high"], color="#CCBB44", alpha=0.3, lw=0)
        ax.scatter(column, acc, s=10, color="#4477AA")
        rho = "n/a" if row.get("rho") is None else f"{row['rho']:+.2f} (p {row['p']:.2g})"
        ax.set_title(f"stage {s + 1}: rho {rho}", fontsize=8)
        ax.set_xlabel("width share", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("test accuracy (%)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return finish(fig, path)


def subplots(*args, **kwargs):
    """``plt.subplots`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def finish(fig, path: str | Path) -> list[Path]:
    """Write the figure as PNG and SVG beside ``path`` and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    written = [_save(fig, path.with_suffix(suffix)) for suffix in (".png", ".svg")]
    plt.close(fig)
    return written


def _save(fig, path: Path) -> Path:
    """Render to memory, then write atomically (no half-written image on disk)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:], dpi=130, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())
