"""The toolkit's operations, one function each, called alike by a command and by a study stage.

A command (``guided train``, ``prune``, ``summarize``, ``design``) parses its arguments into these calls;
a study stage (`guided.pipeline.stages`) reads its recorded config into the same calls. Neither holds
logic of its own, so a folder written by a command and one written by a study from the same inputs are
the same folder (``tests/guided/test_operations.py`` compares them).

* `training_config` + `train_run`: a training run from its configuration (spec, data, recipe, seeds,
  pruning hooks), which is what ``config.json`` records;
* `prune_run`: a pruned folder from a training run (or fresh weights), to a ratio, preset or budget;
* `guided.shapes.patterns.summarize`: the pattern of some pruned folders;
* `design_to`: a designed architecture written to a spec file;
* `latency_table`: the one place a latency table is made (its caller passes it down).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from guided.errors import UserError
from guided.pruning import PRUNERS, prune, ratio_for_budget
from guided.pruning.unstructured import load_masks
from guided.shapes.design import Budget, design
from guided.shapes.patterns import Pattern
from guided.storage.folders import PrunedFolder, RunFolder, StageFolder
from guided.storage.io import write_spec
from guided.timing.latency import LatencyTable, default_cache
from guided.training.data import DataConfig, ImageData
from guided.training.hooks import BatchNormL1, FixedMasks, GateSparsity
from guided.training.multiseed import train_together
from guided.training.recipes import Recipe
from guided.training.retrain import save_pruned
from guided.training.train import load_weights, train
from models import FAMILIES, ArchSpec, build, cost

__all__ = [
    "training_config",
    "train_run",
    "train_runs_together",
    "SOLO_KEYS",
    "run_config",
    "run_settings",
    "flat_settings",
    "prune_run",
    "design_to",
    "latency_table",
]


def training_config(
    spec: ArchSpec,
    data: DataConfig,
    recipe: Recipe,
    *,
    recipe_name: str,
    seed: int = 0,
    init_seed: int | None = None,
    precision: str = "auto",
    sparsity_l1: float | None = None,
    sparsity_gates: float | None = None,
    masks: str | None = None,
    save_init: bool = False,
) -> dict[str, Any]:
    """Everything that determines a training run, as JSON-able data (what ``config.json`` records and what
    a study fingerprints). ``init_seed`` seeds the initial weights (default ``seed``); ``sparsity_gates``
    gates the residual blocks of ``spec``."""
    if sparsity_gates:
        if "gated" not in FAMILIES[spec.family].options:
            gated = ", ".join(n for n, f in FAMILIES.items() if "gated" in f.options)
            raise UserError(f"--sparsity-gates needs a residual network ({gated}), not {spec.name}")
        spec = spec.replace(gated=True)
    return {
        "spec": spec.to_dict(),
        "data": dataclasses.asdict(data),
        "recipe": recipe.to_dict(),
        "recipe_name": recipe_name,
        "seed": seed,
        "init_seed": seed if init_seed is None else init_seed,
        "precision": precision,
        "sparsity_l1": sparsity_l1,
        "sparsity_gates": sparsity_gates,
        "masks": masks,
        "save_init": save_init,
    }


def train_run(
    config: dict[str, Any],
    out: str | Path,
    *,
    data: ImageData | None = None,
    device: Any = "cpu",
    resume: bool | None = None,
    compile: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the run ``config`` (from `training_config`) into the run folder ``out``.

    ``data``: the configured dataset when the caller has it loaded (else it is loaded here); ``resume``:
    ``None`` continues from a checkpoint when there is one (a study stage), else as `guided.training.train.train`.
    Returns ``result.json``.
    """

    spec = ArchSpec.from_dict(config["spec"])
    recipe = Recipe.from_dict(config["recipe"])
    data = data if data is not None else DataConfig(**config["data"]).load()
    model = build(spec, seed=config["init_seed"])
    hooks: list[Any] = [BatchNormL1(config["sparsity_l1"])] if config.get("sparsity_l1") else []
    if config.get("masks"):
        hooks.append(FixedMasks(load_masks(config["masks"], model)))
    if config.get("sparsity_gates"):
        hooks.append(GateSparsity(config["sparsity_gates"]))
    run = RunFolder(out)
    return train(
        model,
        data,
        recipe,
        out_dir=run.path,
        device=device,
        seed=config["seed"],
        hooks=hooks,
        resume=run.checkpoint.exists() if resume is None else resume,
        save_init=bool(config.get("save_init")),
        compile=compile,
        precision=config["precision"],
        config=config,
        log=log,
    )


#: Config keys that make a run train alone: training hooks, or an initial-weights file to write.
SOLO_KEYS = ("sparsity_l1", "sparsity_gates", "masks", "save_init")


def train_runs_together(
    configs: Sequence[dict[str, Any]],
    outs: Sequence[str | Path],
    *,
    data: ImageData | None = None,
    device: Any = "cpu",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train runs that differ only in their seeds as one group (`guided.training.multiseed`): the same folders
    `train_run` writes, each seed's numbers those of its own run up to float rounding.

    The configs must agree on everything but ``seed`` and ``init_seed`` and use no training hooks
    (sparsity penalties, masks, gates) and no initial-weights file. Returns each ``result.json``.
    """

    if not configs:
        return []
    varying = ("seed", "init_seed")
    first = {k: v for k, v in configs[0].items() if k not in varying}
    for config in configs[1:]:
        other = {k: v for k, v in config.items() if k not in varying}
        if other != first:
            differ = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            raise UserError(f"runs trained together may differ only in their seeds; these differ: {', '.join(differ)}")
    hooks = [k for k in SOLO_KEYS if first.get(k)]
    if hooks:
        raise UserError(f"runs with {', '.join(hooks)} train one at a time (a seed group has no hooks)")
    spec = ArchSpec.from_dict(first["spec"])
    data = data if data is not None else DataConfig(**first["data"]).load()
    return train_together(
        [build(spec, seed=c["init_seed"]) for c in configs],
        data,
        Recipe.from_dict(first["recipe"]),
        seeds=[c["seed"] for c in configs],
        out_dirs=[RunFolder(o).path for o in outs],
        device=device,
        precision=first["precision"],
        configs=configs,
        log=log,
    )


def run_config(run: str | Path) -> dict[str, Any]:
    """A training run's recorded configuration: its ``config.json``, or a study stage's ``stage.json`` config
    (stages started before they wrote ``config.json``)."""
    folder, stage = RunFolder(run), StageFolder(run)
    if folder.config.is_file() or not stage.is_stage():
        return folder.read_config()
    config = stage.read_started().get("config", {})
    if "spec" not in config or "recipe" not in config:
        raise UserError(f"{run} is a study stage that trained no network of its own; give a training stage")
    return config


def run_settings(run: str | Path) -> dict[str, Any]:
    """The options a training run was trained with, flat (``dataset``, ``data_root``, ..., the recipe's
    fields, ``recipe``, ``seed``, ``precision``): what a command pruning or retraining it inherits."""
    return flat_settings(run_config(run))


def flat_settings(config: Any) -> Any:
    """A training run's configuration (`training_config`) as flat options (see `run_settings`); one written
    before 0.9 (already flat), or anything but a table, is returned as it is."""
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        return config
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    return {
        **config["data"],
        **recipe,
        "recipe": config.get("recipe_name"),
        "seed": config.get("seed"),
        "precision": config.get("precision"),
    }


def prune_run(
    out: str | Path,
    method: str,
    *,
    checkpoint: str | Path | None = None,
    model: Any = None,
    data: ImageData | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    like: str | Path | None = None,
    latency: Any = None,
    device: Any = "cpu",
    source: dict | None = None,
    **options: Any,
):
    """Prune the run ``checkpoint`` (or ``model``, fresh weights) with ``method`` and write the pruned folder
    ``out``; returns the `guided.pruning.PruneResult`.

    Args:
        options: ratio, preset, allocation, min_channels, min_keep, samples, threshold, include_linear, cost,
            coupled, as
            `guided.pruning.prune` takes them.
        budget: instead of a ratio: the smallest ratio whose result fits it.
        like: ``random``: a pruned folder whose per-layer sparsity to copy.
        latency: the `latency_table` that ``cost="latency"`` ranks channels by.
        source: where ``model`` came from, recorded in ``prune.json`` (default: fresh weights).
    """

    if checkpoint is not None:
        run = RunFolder(checkpoint)
        model = load_weights(run.path)
        recorded = run.config.is_file() or StageFolder(run.path).is_stage()
        source = {"run": str(run.path), "epochs": run.read_result().get("epochs")}
        source["config"] = run_config(run.path) if recorded else {}
    elif source is None:
        source = {"run": None, "epochs": None, "config": {}}
    model = model.to(device).eval()
    options = {k: v for k, v in options.items() if v is not None}
    if budget is not None:
        if options.get("ratio") is not None or options.get("preset"):
            raise UserError("give a budget, or a ratio/preset, not both")
        keys = ("allocation", "min_channels", "min_keep", "samples", "cost", "coupled")
        kw = {k: options[k] for k in keys if k in options}
        options["ratio"] = ratio_for_budget(model, method, budget, data=data, seed=seed, latency=latency, **kw)
    masks = load_masks(PrunedFolder(like).masks, model) if like is not None else None
    result = prune(model, method, data=data, seed=seed, like=masks, latency=latency, **options)
    unchanged = result.info["params_after"] == result.info["params_before"]
    if result.masks is None and unchanged and PRUNERS[method].unit != "blocks":
        floors = f"min_channels {options.get('min_channels', 1)}"
        if options.get("min_keep"):
            floors += f" and min_keep {options['min_keep']:g} of its channels"
        raise UserError(
            f"{method} removed nothing (every layer keeps at least {floors}, or the ratio rounds to zero "
            "channels); lower those floors or raise the ratio"
        )
    save_pruned(result, out, source=source)
    return result


def design_to(
    path: str | Path,
    target: ArchSpec,
    budget: Budget,
    *,
    pattern: Pattern | None = None,
    **options: Any,
) -> tuple[ArchSpec, dict[str, Any]]:
    """Design ``target`` at ``budget`` (uniform, or following ``pattern``; ``options``: `guided.shapes.design.design`'s
    ``per_layer``, ``stage_map``, ``multiple_of``, ``allow_wider``), write its spec to ``path``; returns the
    spec and a record of its params, MACs, widths (and predicted step, at a latency budget)."""

    spec = design(target, budget, pattern=pattern, **options)
    write_spec(path, spec)
    c = cost(spec)
    record: dict[str, Any] = {"params": c.params, "macs": c.macs, "stages": [list(s) for s in spec.stages]}
    if budget.kind == "latency":
        record["predicted_s"] = budget.of(spec)
    return spec, record


def latency_table(device: Any, *, batch_size: int = 128, threads: int | None = None, folder: Path | None = None):
    """This device's per-layer latency table at ``batch_size`` (`guided.timing.latency.LatencyTable`), kept in
    ``folder`` (default: the user's cache). The one place a table is made: callers pass it down, so what
    ranks channels and what solves a latency budget read the same numbers."""

    return LatencyTable(device, batch_size=batch_size, cache=folder or default_cache(), threads=threads)
