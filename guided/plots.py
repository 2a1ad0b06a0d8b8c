"""Figures: a data function returns the numbers a figure shows (tested); a thin function draws them.

matplotlib is imported inside the drawing functions, with the non-interactive Agg backend, so importing
this module costs nothing and works without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["sparsity_plot_data", "draw_sparsity"]


def sparsity_plot_data(summary: dict[str, Any]) -> dict[str, Any]:
    """What `draw_sparsity` shows: per-stage kept fraction (mean, std) and per-stage 3x3 kernel grids.

    Args:
        summary: from `guided.patterns.sparsity_summary`.
    """
    stages = [row["stage"] for row in summary["stages"]]
    return {
        "stages": stages,
        "density": [row["density_mean"] for row in summary["stages"]],
        "density_std": [row["density_std"] for row in summary["stages"]],
        "kernel_stages": sorted(int(s) for s in summary["kernel"]),
        "kernel": [
            summary["kernel"][s] if s in summary["kernel"] else summary["kernel"][str(s)]
            for s in sorted(int(s) for s in summary["kernel"])
        ],
        "runs": summary["runs"],
    }


def draw_sparsity(summary: dict[str, Any], path: str | Path, *, title: str = "") -> list[Path]:
    """Bars of per-stage weight density and 3x3 heatmaps of kernel-position density; PNG and SVG.

    Returns:
        The written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = sparsity_plot_data(summary)
    n = len(data["kernel"])
    fig, axes = plt.subplots(1, n + 1, figsize=(3.2 + 1.9 * n, 3.0), gridspec_kw={"width_ratios": [2.2] + [1] * n})
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = [_save(fig, path.with_suffix(suffix)) for suffix in (".png", ".svg")]
    plt.close(fig)
    return written


def _save(fig, path: Path) -> Path:
    """Render to memory, then write atomically (no half-written image on disk)."""
    import io

    from guided.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:], dpi=130, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())
