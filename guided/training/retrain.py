"""Pruned-model folders, and retraining them: fine-tuning versus training from scratch.

A pruned folder (written by `save_pruned`, i.e. ``guided prune``) holds ``spec.json``, the inherited
weights ``model.pt``, ``prune.json`` (method, allocation, costs, the source run) and ``layers.csv``
(per layer: original and kept channels). `retrain` turns it into a training run:

* ``finetune``: start from the inherited weights, train with the recipe's fine-tuning settings
  (paper: 40 epochs at lr 0.001);
* ``scratch-e``: re-initialise (with a seed distinct from the source's initialisation), train as many epochs
  as the source model was trained;
* ``scratch-b``: re-initialise, train for the same compute: ``epochs x MACs_full / MACs_pruned``;
* ``lottery`` (sparse models only): restart from the source run's *initial* weights (``init.pt``, saved
  with ``--save-init``) under the same masks, for the source's epochs (Frankle & Carbin's winning ticket).

Unstructured (masked) models keep their masks in every mode: ``masks.npz`` sits beside the spec, and
`guided.training.hooks.FixedMasks` keeps masked weights at exactly zero; Scratch-B counts non-zero MACs only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from guided.errors import UserError
from guided.pruning import PruneResult
from guided.pruning.unstructured import load_masks, save_masks
from guided.storage.folders import PrunedFolder, RunFolder
from guided.storage.io import (
    atomic_write_bytes,
    atomic_write_text,
    load_state,
    read_tensors,
    write_json,
)
from guided.training.data import ImageData
from guided.training.hooks import FixedMasks
from guided.training.recipes import Recipe, scratch_epochs
from guided.training.train import train
from models import build

__all__ = ["save_pruned", "load_pruned", "retrain", "MODES"]

MODES = ("finetune", "scratch-e", "scratch-b", "lottery")


def save_pruned(result: PruneResult, out_dir: str | Path, *, source: dict[str, Any]) -> Path:
    """Write a pruned folder: spec, inherited weights, what was done, and the per-layer table.

    Args:
        result: from `guided.pruning.prune`.
        out_dir: the folder.
        source: where the model came from: ``run`` (the training run folder, or ``None`` for fresh
            weights), ``epochs`` (how long it was trained), ``config`` (its resolved configuration).
    """
    out = PrunedFolder(out_dir)
    if out.complete():
        raise UserError(f"{out} already holds a pruned model; choose another --out")
    out.path.mkdir(parents=True, exist_ok=True)
    out.write_spec(result.model.spec)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, buf)
    atomic_write_bytes(out.weights, buf.getvalue())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(result.rows[0]))
    writer.writeheader()
    writer.writerows(result.rows)
    atomic_write_text(out.layers, text.getvalue())
    if result.masks is not None:
        save_masks(out.masks, result.masks)
    write_json(out.record, {**result.info, "source": source})  # last: marks the folder complete
    return out.path


def load_pruned(pruned_dir: str | Path) -> tuple[torch.nn.Module, dict[str, Any], dict[str, torch.Tensor] | None]:
    """The pruned model with its inherited weights, its ``prune.json``, and its masks (``None`` if dense)."""
    folder = PrunedFolder(pruned_dir)
    info = folder.read_record()
    model = build(folder.read_spec())
    load_state(model, read_tensors(folder.weights, "pruned weights"), folder.weights)
    masks = load_masks(folder.masks, model) if folder.masked() else None
    return model, info, masks


def retrain(
    pruned_dir: str | Path,
    mode: str,
    data: ImageData,
    recipe: Recipe,
    *,
    out_dir: str | Path,
    seed: int = 0,
    log: Callable[[str], None] = print,
    **train_kwargs: Any,
) -> dict[str, Any]:
    """Fine-tune a pruned model or train its architecture from scratch.

    Args:
        pruned_dir: a folder from `save_pruned`.
        mode: ``finetune``, ``scratch-e``, ``scratch-b`` or ``lottery``.
        data: the dataset (normally the source run's).
        recipe: the training recipe (its ``finetune_*`` fields drive fine-tuning; ``epochs`` is the
            source's epoch count for the scratch budgets when the source run does not record one).
        out_dir: the run folder.
        seed: data order, and initialisation in the scratch modes.
        train_kwargs: passed to `guided.training.train.train` (device, resume, precision, ...).

    Returns:
        The run's ``result.json``, with ``mode`` and ``epochs`` recorded.
    """
    if mode not in MODES:
        raise UserError(f"unknown retraining mode {mode!r}; choose one of {', '.join(MODES)}")
    inherited, info, masks = load_pruned(pruned_dir)
    base_epochs = info["source"].get("epochs") or recipe.epochs
    if mode == "finetune":
        model, run_recipe = inherited, recipe.finetune()
    elif mode == "lottery":
        model, run_recipe = _winning_ticket(inherited, info, masks), recipe.override(epochs=base_epochs)
    else:
        epochs = scratch_epochs(mode, base_epochs, info["macs_before"], info["macs_after"])
        model, run_recipe = build(inherited.spec, seed=fresh_init_seed(seed)), recipe.override(epochs=epochs)
    hooks = list(train_kwargs.pop("hooks", []))
    if masks is not None:
        hooks.append(FixedMasks(masks))
    config = {**train_kwargs.pop("config", {}), "mode": mode, "pruned": str(pruned_dir), "base_epochs": base_epochs}
    result = train(
        model, data, run_recipe, out_dir=out_dir, seed=seed, log=log, config=config, hooks=hooks, **train_kwargs
    )
    result.update({"mode": mode, "method": info["method"], "base_epochs": base_epochs})
    if masks is not None:
        result.update(
            {"density": info["density"], "nonzero_params": info["params_after"], "nonzero_macs": info["macs_after"]}
        )
    write_json(RunFolder(out_dir).result, result)
    return result


#: Scratch modes initialise with ``seed + FRESH_INIT_OFFSET``: a base trained with the same ``seed`` must
#: not hand its own initial weights to an unchanged (masked) spec, or Scratch-E would be the lottery ticket.
FRESH_INIT_OFFSET = 1_000_003


def fresh_init_seed(seed: int) -> int:
    """The initialisation seed of the scratch modes for a run seeded ``seed``."""
    return seed + FRESH_INIT_OFFSET


def _winning_ticket(inherited: torch.nn.Module, info: dict[str, Any], masks) -> torch.nn.Module:
    """The source run's initial weights, for the lottery-ticket mode."""
    if masks is None:
        raise UserError("the lottery mode retrains an unstructured (masked) model; this folder has no masks.npz")
    run = info["source"].get("run")
    init = RunFolder(run).init if run else None
    if init is None or not init.is_file():
        raise UserError(
            f"the lottery mode needs the source run's initial weights ({init}); train the source with --save-init"
        )
    model = build(inherited.spec)
    load_state(model, read_tensors(init, "initial weights"), init)
    return model
