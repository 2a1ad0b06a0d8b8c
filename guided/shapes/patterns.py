"""Design patterns in pruned models: what pruning kept, per layer and per stage, over several runs.

Pure functions of pruned folders' records (specs, masks): no model is run. A sparsity summary averages,
over runs, each stage's density of kept weights and each stage's density at every 3x3 kernel position
(the paper observes that centres and crosses survive more than corners).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guided.errors import UserError
from guided.pruning.unstructured import load_masks, sparsity_report
from guided.storage.folders import PrunedFolder
from guided.storage.io import read_json, write_json

__all__ = [
    "Pattern",
    "summarize",
    "sparsity_summary",
    "load_sparsity_reports",
    "channel_summary",
    "load_channel_rows",
    "check_pattern",
    "pattern_cost",
]

#: Per kind of pattern: the per-stage and per-layer fields every row must have (fractions in [0, 1]).
PATTERN_FIELDS = {"channels": "keep_ratio_mean", "sparsity": "density_mean"}


@dataclass(frozen=True)
class Pattern:
    """What pruning kept in some runs of one architecture, per stage and per layer: the data a guided design
    follows. Validated when built (`check_pattern`), so a pattern that exists can be designed from.

    Attributes:
        kind: ``channels`` (kept share of channels: ``keep_ratio_mean``/``_std`` per row) or ``sparsity``
            (kept share of weights: ``density_mean``/``_std``).
        stages: one row per stage, numbered 0, 1, ... in order.
        layers: one row per layer (with its ``layer`` name and ``stage``).
        runs: how many pruned runs were averaged.
        sources: where each run came from (folder, method, ratio, cost, architecture, dataset).
        cost: the cost channels were ranked by per unit of (``params``, ``macs``, ``latency``), or ``None``
            (importance alone).
        kernel, kernel_std: ``sparsity``: per stage, the mean (and std) kept share at each 3x3 position.
        density: ``sparsity``: the kept share of all weights.
    """

    kind: str
    stages: tuple[dict[str, Any], ...]
    layers: tuple[dict[str, Any], ...] = ()
    runs: int = 1
    sources: tuple[dict[str, Any], ...] = ()
    cost: str | None = None
    kernel: dict[int, Any] = field(default_factory=dict)
    kernel_std: dict[int, Any] = field(default_factory=dict)
    density: float | None = None

    def __post_init__(self) -> None:
        check_pattern(self.to_dict())

    @property
    def ratio_key(self) -> str:
        """The per-row fraction: ``keep_ratio_mean`` or ``density_mean``."""
        return PATTERN_FIELDS[self.kind]

    def stage_ratios(self) -> list[float]:
        """Each stage's kept share, in stage order."""
        return [row[self.ratio_key] for row in self.stages]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what ``guided summarize --out`` writes."""
        out = {"kind": self.kind, "stages": list(self.stages), "layers": list(self.layers), "runs": self.runs}
        if self.kind == "sparsity":
            out.update(kernel=dict(self.kernel), kernel_std=dict(self.kernel_std), density=self.density)
        return {**out, "sources": list(self.sources), "cost": self.cost}

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "pattern") -> Pattern:
        """A pattern from its JSON form; refuses (one line naming ``source``) anything else."""
        check_pattern(data, source)
        grids = {key: {int(s): g for s, g in (data.get(key) or {}).items()} for key in ("kernel", "kernel_std")}
        return cls(
            kind=data.get("kind", "channels"),
            stages=tuple(data["stages"]),
            layers=tuple(data.get("layers", [])),
            runs=int(data.get("runs", 1)),
            sources=tuple(s for s in data.get("sources", []) if isinstance(s, dict)),
            cost=data.get("cost"),
            density=data.get("density"),
            **grids,
        )

    @classmethod
    def read(cls, path: str | Path) -> Pattern:
        """The pattern in a JSON file (``guided summarize --out``, a study's ``pattern.json``)."""

        return cls.from_dict(read_json(path, "pattern"), path)

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    def methods(self) -> list[str]:
        """The pruning methods of its sources."""
        return sorted({s.get("method") or "?" for s in self.sources})


def summarize(pruned_dirs: Sequence[str | Path], *, relative_to: Path | None = None) -> Pattern:
    """The pattern of some pruned folders of one architecture: kept channels per stage and layer, or (masked
    folders) weight density per stage, layer and 3x3 position, with each folder's provenance (folders
    named relative to ``relative_to`` when given)."""
    folders = [PrunedFolder(d) for d in pruned_dirs]
    masked = [f.masked() for f in folders]
    if any(masked) and not all(masked):
        raise UserError("mix of masked (unstructured) and structured pruned folders; summarise them separately")
    if all(masked):
        summary = {"kind": "sparsity", **sparsity_summary(load_sparsity_reports(pruned_dirs))}
    else:
        summary = {"kind": "channels", **channel_summary(load_channel_rows(pruned_dirs))}
    summary["sources"] = [_provenance(f, relative_to) for f in folders]
    summary["cost"] = pattern_cost(summary["sources"])
    return Pattern.from_dict(summary)


def _provenance(folder: PrunedFolder, relative_to: Path | None) -> dict[str, Any]:
    """Where one pruned folder came from: method, ratio, cost, architecture, dataset, source run."""
    info = folder.read_record()
    spec = folder.read_spec()
    source = info.get("source") or {}
    config = source.get("config") or {}
    data = config.get("data") if isinstance(config.get("data"), dict) else config  # before 0.9: flat
    where = folder.path.relative_to(relative_to) if relative_to is not None else folder.path
    return {
        "dir": str(where),
        "method": info.get("method"),
        "ratio": info.get("ratio"),
        "preset": info.get("preset"),
        "cost": info.get("cost"),
        "source_spec": info.get("source_spec"),
        "family": spec.family,
        "dataset": data.get("dataset"),
        "source_run": source.get("run"),
    }


def load_sparsity_reports(pruned_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """`sparsity_report` of each pruned folder with masks (``guided prune --method magnitude``)."""

    reports = []
    for d in map(PrunedFolder, pruned_dirs):
        if not d.masked():
            raise UserError(f"{d} has no {d.masks.name}: it is not an unstructured (masked) pruned folder")
        report = sparsity_report(d.read_spec(), load_masks(d.masks))
        report["source"] = str(d)
        report["method"] = d.read_record().get("method")
        reports.append(report)
    return reports


def sparsity_summary(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over runs of per-stage density and per-stage 3x3 kernel-position density.

    Args:
        reports: `guided.pruning.unstructured.sparsity_report` outputs of runs of one architecture.

    Returns:
        ``stages``: rows (stage, density_mean, density_std); ``kernel``: stage -> mean 3x3 grid;
        ``kernel_std``: stage -> std grid; ``layers``: rows (layer, stage, density_mean, density_std);
        ``density``: mean overall density; ``runs``: how many.

    Example:
        >>> r = {"stages": [{"stage": 0, "density": 0.5}], "kernel": {0: [[0.4] * 3] * 3},
        ...      "layers": [{"layer": "c", "stage": 0, "density": 0.5}], "density": 0.5}
        >>> sparsity_summary([r, r])["stages"][0]["density_mean"]
        0.5
    """
    if not reports:
        raise UserError("no runs to summarise")
    stages = sorted({s["stage"] for r in reports for s in r["stages"]})
    out_stages = []
    for s in stages:
        vals = [row["density"] for r in reports for row in r["stages"] if row["stage"] == s]
        out_stages.append({"stage": s, "density_mean": float(np.mean(vals)), "density_std": _std(vals)})
    kernel, kernel_std = {}, {}
    for s in sorted({int(k) for r in reports for k in r["kernel"]}):
        grids = np.array([r["kernel"][s] if s in r["kernel"] else r["kernel"][str(s)] for r in reports])
        kernel[s] = grids.mean(0).tolist()
        kernel_std[s] = (grids.std(0, ddof=1) if len(grids) > 1 else np.zeros((3, 3))).tolist()
    names = [row["layer"] for row in reports[0]["layers"]]
    layers = []
    for name in names:
        vals = [row["density"] for r in reports for row in r["layers"] if row["layer"] == name]
        stage = next(row["stage"] for row in reports[0]["layers"] if row["layer"] == name)
        layers.append({"layer": name, "stage": stage, "density_mean": float(np.mean(vals)), "density_std": _std(vals)})
    return {
        "stages": out_stages,
        "kernel": kernel,
        "kernel_std": kernel_std,
        "layers": layers,
        "density": float(np.mean([r["density"] for r in reports])),
        "runs": len(reports),
    }


def _std(vals: Sequence[float]) -> float:
    return float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def load_channel_rows(pruned_dirs: Sequence[str | Path]) -> list[list[dict[str, Any]]]:
    """The per-layer rows (layer, stage, original, kept) of structured pruned folders' ``layers.csv``."""
    import csv

    runs = []
    for d in pruned_dirs:
        path = PrunedFolder(d).layers
        if not path.is_file():
            raise UserError(f"{d} has no {path.name}: it is not a pruned folder (see `guided prune`)")
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"{path} is not a CSV text table ({exc})") from None
        if not rows or not {"layer", "stage", "original", "kept"} <= set(rows[0]):
            raise UserError(f"{path} is not a structured-pruning layer table (layer, stage, original, kept)")
        runs.append([_layer_row(r, path, i) for i, r in enumerate(rows)])
    return runs


def _layer_row(row: dict[str, str], path: Path, i: int) -> dict[str, Any]:
    """One ``layers.csv`` row with whole numbers, 0 <= stage and 1 <= kept <= original; else one line."""
    try:
        stage, original, kept = (int(row[k]) for k in ("stage", "original", "kept"))
    except (TypeError, ValueError):
        raise UserError(f"{path}, row {i + 1}: stage, original and kept must be whole numbers, got {row}") from None
    if stage < 0 or not 1 <= kept <= original:
        raise UserError(f"{path}, row {i + 1}: needs stage >= 0 and 1 <= kept <= original, got {row}")
    out = {"layer": row["layer"], "stage": stage, "original": original, "kept": kept}
    return {**out, "kind": row["kind"]} if row.get("kind") == "coupled" else out


def pattern_cost(sources: Sequence[dict[str, Any]]) -> str | None:
    """The cost a pattern was discovered under (``params``, ``macs``; ``None``: importance alone), from its
    sources; refuses sources pruned under different costs, whose mean would describe neither."""
    costs = {s.get("cost") for s in sources}
    if len(costs) > 1:
        raise UserError(
            f"the pruned runs ranked channels under different costs ({sorted(map(str, costs))}); "
            "summarise runs of one cost at a time"
        )
    return next(iter(costs), None)


def channel_summary(runs: Sequence[Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """Mean and std over runs of the kept fraction of channels, per stage and per layer.

    Args:
        runs: per run, rows with ``layer``, ``stage``, ``original``, ``kept`` (same layers in every run).
    """
    if not runs:
        raise UserError("no runs to summarise")
    layer_names = [r["layer"] for r in runs[0]]
    if any([r["layer"] for r in run] != layer_names for run in runs):
        raise UserError("the pruned runs have different layers: summarise runs of one architecture at a time")
    stages = sorted({r["stage"] for r in runs[0]})
    shared = [[r for r in run if r.get("kind") == "coupled"] for run in runs]
    runs = [[r for r in run if r.get("kind") != "coupled"] for run in runs]
    out_stages = []
    for s in stages:
        fracs = [
            sum(r["kept"] for r in run if r["stage"] == s) / sum(r["original"] for r in run if r["stage"] == s)
            for run in runs
        ]
        kept = [sum(r["kept"] for r in run if r["stage"] == s) for run in runs]
        out_stages.append(
            {
                "stage": s,
                "original": sum(r["original"] for r in runs[0] if r["stage"] == s),
                "kept_mean": float(np.mean(kept)),
                "keep_ratio_mean": float(np.mean(fracs)),
                "keep_ratio_std": _std(fracs),
                **_shared_ratios(shared, s),
            }
        )
    layers = []
    for j, row in enumerate(runs[0]):
        fracs = [run[j]["kept"] / run[j]["original"] for run in runs]
        layers.append(
            {
                "layer": row["layer"],
                "stage": row["stage"],
                "original": row["original"],
                "keep_ratio_mean": float(np.mean(fracs)),
                "keep_ratio_std": _std(fracs),
            }
        )
    return {"stages": out_stages, "layers": layers, "runs": len(runs)}


def _shared_ratios(shared: Sequence[Sequence[dict[str, Any]]], stage: int) -> dict[str, float]:
    """Stage ``stage``'s residual width (``stage_width_ratio``) and, in stage 0, the stem's (``stem_ratio``)
    kept shares, mean and std over runs, from the coupled rows of runs pruned with ``coupled`` (none: {})."""
    out = {}
    for name, key in ((f"stages.{stage}", "stage_width_ratio"), ("stem", "stem_ratio")):
        fracs = [r["kept"] / r["original"] for run in shared for r in run if r["layer"] == name and r["stage"] == stage]
        if fracs:
            out |= {f"{key}_mean": float(np.mean(fracs)), f"{key}_std": _std(fracs)}
    return out


def check_pattern(pattern: Any, source: str | Path = "pattern") -> dict[str, Any]:
    """Refuse a pattern that `channel_summary` or `sparsity_summary` (``guided summarize --out``) did not write.

    Checks the structure the designers read: a ``kind``, ``stages`` and ``layers`` rows with integer
    ``stage`` and a fraction in [0, 1]. Returns ``pattern`` unchanged.
    """
    if not isinstance(pattern, dict):
        raise UserError(
            f"{source} holds a {type(pattern).__name__}, not a pattern (write one with guided summarize --out)"
        )
    kind = pattern.get("kind", "channels")
    if kind not in PATTERN_FIELDS:
        raise UserError(f"{source}: pattern kind {kind!r} is unknown; expected channels or sparsity")
    field = PATTERN_FIELDS[kind]
    for part in ("stages", "layers"):
        rows = pattern.get(part, [] if part == "layers" else None)
        if not isinstance(rows, list) or (part == "stages" and not rows):
            raise UserError(f"{source}: a {kind} pattern needs a non-empty list {part!r} (see guided summarize --out)")
        for i, row in enumerate(rows):
            ok = isinstance(row, dict) and isinstance(row.get("stage"), int) and not isinstance(row["stage"], bool)
            value = row.get(field) if isinstance(row, dict) else None
            if not ok or not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise UserError(f"{source}: {part}[{i}] needs an integer 'stage' and {field!r} in [0, 1], got {row!r}")
    stages = [row["stage"] for row in pattern["stages"]]
    if stages != list(range(len(stages))):
        raise UserError(f"{source}: stages must be numbered 0, 1, 2, ... once each, in order; got {stages}")
    for i, row in enumerate(pattern["stages"]):
        for extra in ("stage_width_ratio_mean", "stem_ratio_mean"):
            value = row.get(extra, 0.5)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1:
                raise UserError(f"{source}: stages[{i}].{extra} must be a share in (0, 1], got {value!r}")
    if any(row["stage"] not in stages for row in pattern.get("layers", [])):
        raise UserError(f"{source}: a layer names a stage the pattern does not have (its stages: {stages})")
    if kind == "channels" and any(row[field] <= 0 for row in (*pattern["stages"], *pattern.get("layers", []))):
        raise UserError(
            f"{source}: a keep_ratio of 0 would remove a whole stage or layer; every ratio of a channel pattern "
            "lies in (0, 1]"
        )
    if kind == "sparsity" and not any(row[field] > 0 for row in pattern["stages"]):
        raise UserError(f"{source}: every stage has density 0; a network with no weights cannot be designed")
    if kind == "sparsity" and not isinstance(pattern.get("kernel", {}), dict):
        raise UserError(f"{source}: 'kernel' must map stages to 3x3 grids")
    return pattern
