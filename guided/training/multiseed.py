"""Several seeds of one architecture trained together, in one process, as one batched network.

A small network leaves a big GPU waiting on kernel launches: VGG-16 x0.25 at batch 128 is a few dozen
small kernels per step. `torch.func.stack_module_state` stacks the parameters and buffers of K
separately initialised copies, and `torch.vmap` runs their K forward and backward passes as one (each
convolution becomes one grouped convolution over the K seeds), so one launch does the work of K.

Each seed keeps what makes it its own run: its initialisation (built with its own seed), its data order
and augmentation (its own `DeviceLoader` generator, seeded as `guided.training.train.train` seeds it), its
BatchNorm statistics, and its optimiser state (SGD with momentum, Nesterov and weight decay is
elementwise, so one optimiser over the stacked tensors updates each seed as its own would). Summing the
K seeds' mean losses gives each seed exactly its own gradient. So each seed is its own `train` run as computed
in the contiguous memory layout, to float rounding; `guided.training.train` trains channels-last
(`guided.training.train.MEMORY_FORMAT`), and training amplifies that rounding difference, so a grouped seed and its
separate channels-last run agree in distribution, not seed for seed (``tests/guided/test_multiseed.py``
measures both gaps on the tiny study). Each writes the same run folder (``spec.json``, ``config.json``,
``metrics.jsonl``, ``model.pt``, ``result.json``; ``result.json`` says ``"group_size"``).

Not covered, and refused: training hooks (sparsity penalties, fixed masks, gates: they act on one
module) and `torch.compile`. A group has no checkpoints: a group stopped midway leaves no run behind and
starts again (its runs appear, complete, when it finishes). Times: each seed's ``wall_time_s`` is its
share of the group's (the group's over K), so the runs' times add up to the time spent, and its
``train_images_per_s`` is its images over that share.

Example:
    >>> from guided.training.data import load_dataset
    >>> from guided.training.recipes import get_recipe
    >>> from models import build, create_spec
    >>> spec = create_spec("vgg-tiny", in_channels=1)
    >>> models = [build(spec, seed=s) for s in (0, 1, 2)]
    >>> recipe = get_recipe("quick").override(epochs=1)
    >>> results = train_together(models, load_dataset("digits"), recipe, seeds=[0, 1, 2],
    ...                          out_dirs=["/tmp/g0", "/tmp/g1", "/tmp/g2"])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from guided.errors import UserError
from guided.storage.folders import RunFolder
from guided.storage.io import atomic_write_text, write_json, write_spec
from guided.timing import threads
from guided.training.data import ImageData
from guided.training.loader import DeviceLoader
from guided.training.recipes import Recipe
from guided.training.train import (
    TrainingDiverged,
    check_fits,
    make_loaders,
    recipe_sgd,
    record_epoch,
    resolve_precision,
    run_result,
    save_weights,
)

__all__ = ["SeedGroup", "train_together"]


class SeedGroup:
    """K copies of one architecture as one batched network: ``group(x)`` maps (K, B, ...) to (K, B, classes).

    The stacked parameters (``params``) are leaf tensors: give them to an optimiser. ``state_dicts()``
    splits them back into one state_dict per seed.
    """

    def __init__(self, models: Sequence[nn.Module], device: torch.device | str = "cpu") -> None:
        if not models:
            raise UserError("a seed group needs at least one model")
        specs = {getattr(m, "spec", None) for m in models}
        if len(specs) != 1:
            raise UserError("the seeds of a group must share one architecture; train other specs in other groups")
        self.k = len(models)
        self.spec = specs.pop()
        self._keys = list(models[0].state_dict())
        self.params, self.buffers = stack_module_state([m.to(device) for m in models])
        self.base = copy.deepcopy(models[0]).to("meta")

    def _one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def __call__(self, x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        """Logits (K, B, classes); ``shared``: ``x`` is one batch (B, ...) that every seed sees."""
        return torch.vmap(self._one, in_dims=(0, 0, None if shared else 0))(self.params, self.buffers, x)

    def train(self, mode: bool = True) -> None:
        """Training or evaluation mode (BatchNorm batch statistics or running ones)."""
        self.base.train(mode)

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """One state_dict per seed, on the CPU, keys in the order of the module's own state_dict."""
        stacked = {**self.params, **self.buffers}
        return [{key: stacked[key][i].detach().to("cpu").contiguous() for key in self._keys} for i in range(self.k)]


def train_together(
    models: Sequence[nn.Module],
    data: ImageData,
    recipe: Recipe,
    *,
    seeds: Sequence[int],
    out_dirs: Sequence[str | Path],
    device: torch.device | str = "cpu",
    precision: str = "auto",
    configs: Sequence[dict[str, Any] | None] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train ``models`` (one architecture, initialised per seed) together; write one run folder each.

    Args:
        models: the networks, each built with its own seed (``build(spec, seed=s)``).
        data: train and test splits.
        recipe: optimiser, schedule and epochs (one for the whole group).
        seeds: each model's data-order seed (what ``seed`` is to `guided.training.train.train`).
        out_dirs: each model's run folder; none may hold a run yet.
        device: where to train.
        precision: ``fp32``, ``bf16`` or ``auto``, as for `guided.training.train.train`.
        configs: each run's resolved configuration (``config.json``), or ``None``.
        log: where per-epoch lines go.

    Returns:
        Each run's ``result.json``, in the order of ``models``.
    """
    outs, device = [Path(o) for o in out_dirs], torch.device(device)
    configs = list(configs) if configs is not None else [None] * len(models)
    if not len(models) == len(seeds) == len(outs) == len(configs):
        raise UserError(f"{len(models)} models need as many seeds, folders and configs")
    for out in outs:
        run = RunFolder(out)
        if any(f.exists() for f in (run.checkpoint, run.weights, run.result)):
            raise UserError(f"{out} already holds a run; a seed group writes only new runs (choose other folders)")
    group = SeedGroup(models, device)
    check_fits(group.spec, data)
    first, test_loader = make_loaders(data, recipe, device, seeds[0])
    loaders = [first, *(_sibling(first, s) for s in seeds[1:])]
    amp = resolve_precision(precision, device) == "bf16"
    optimizer = recipe_sgd(list(group.params.values()), recipe)
    states = [{"epoch": 0, "step": 0, "elapsed": 0.0, "metrics": []} for _ in models]
    total_steps = recipe.epochs * len(first)
    for epoch in range(recipe.epochs):
        threads.rebalance()
        start = time.perf_counter()
        train_rows = group_epoch(group, loaders, optimizer, recipe, states[0]["step"], total_steps, amp, epoch)
        trained = time.perf_counter() - start
        test_rows = evaluate_group(group, test_loader, amp=amp)
        seconds = time.perf_counter() - start
        for state, train, test in zip(states, train_rows, test_rows):
            state["step"] += len(first)
            record_epoch(state, recipe, len(first), trained / group.k, seconds / group.k, train, test)
        accs = " ".join(f"{s['metrics'][-1]['test_acc']:6.2%}" for s in states)
        log(f"epoch {epoch + 1:>3}/{recipe.epochs}  {group.k} seeds, test acc {accs}  {seconds:6.1f}s")
    return _write_runs(group, outs, data, recipe, states, seeds, amp, configs, device)


def _sibling(loader: DeviceLoader, seed: int) -> DeviceLoader:
    """The loader ``loader`` would be with another seed, sharing its images on the device."""
    twin = copy.copy(loader)
    twin.generator = torch.Generator(loader.device).manual_seed(seed)
    return twin


def group_epoch(group, loaders, optimizer, recipe: Recipe, step: int, total_steps: int, amp: bool, epoch: int):
    """One pass of every seed over its own loader; returns each seed's (mean loss, accuracy).

    ``step`` counts optimiser steps before this epoch; the learning rate is ``recipe.lr_at(step /
    total_steps)``, as in `guided.training.train.train_epoch`. Raises `TrainingDiverged` naming the seeds whose
    loss is not finite.
    """
    from tqdm import tqdm

    group.train(True)
    device, k = loaders[0].device, group.k
    loss_sum = torch.zeros(k, device=device)
    correct = torch.zeros(k, device=device, dtype=torch.long)
    seen = 0
    batches = tqdm(zip(*loaders), total=len(loaders[0]), desc=f"epoch {epoch + 1}/{recipe.epochs}, {k} seeds",
                   leave=False, disable=None, file=sys.stderr, mininterval=1.0)  # fmt: skip
    for i, pairs in enumerate(batches):
        x = torch.stack([p[0] for p in pairs])
        y = torch.stack([p[1] for p in pairs])
        for param_group in optimizer.param_groups:
            param_group["lr"] = recipe.lr_at((step + i) / total_steps)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = group(x)
            losses = F.cross_entropy(
                logits.flatten(0, 1), y.flatten(), reduction="none", label_smoothing=recipe.label_smoothing
            )
        losses = losses.view(k, -1).mean(1)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        loss_sum += losses.detach() * y.shape[1]
        correct += (logits.argmax(-1) == y).sum(1)
        seen += y.shape[1]
        if i % 25 == 0 or i == len(loaders[0]) - 1:
            finite = torch.isfinite(loss_sum)
            if not bool(finite.all()):
                bad = (~finite).nonzero().flatten().tolist()
                raise TrainingDiverged(
                    f"loss became non-finite for seed(s) at positions {bad} of the group at step {step + i + 1}; "
                    "stopped (a group keeps nothing). Lower the learning rate"
                )
    return [(loss / seen, c / seen) for loss, c in zip(loss_sum.tolist(), correct.tolist())]


@torch.no_grad()
def evaluate_group(group: SeedGroup, loader: DeviceLoader, *, amp: bool = False) -> list[tuple[float, float]]:
    """Each seed's mean cross-entropy and accuracy over ``loader`` (evaluation mode)."""
    group.train(False)
    loss_sum = torch.zeros(group.k, device=loader.device)
    correct = torch.zeros(group.k, device=loader.device, dtype=torch.long)
    n = 0
    for x, y in loader:
        with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = group(x, shared=True)
        loss_sum += F.cross_entropy(logits.float().transpose(1, 2), y.expand(group.k, -1), reduction="none").sum(1)
        correct += (logits.argmax(-1) == y).sum(1)
        n += len(y)
    group.train(True)
    return [(loss / n, c / n) for loss, c in zip(loss_sum.tolist(), correct.tolist())]


def _write_runs(group, outs, data, recipe, states, seeds, amp, configs, device) -> list[dict[str, Any]]:
    """Each seed's run folder, written whole in a temporary sibling and then renamed into place."""
    results = []
    for out, state_dict, state, seed, config in zip(outs, group.state_dicts(), states, seeds, configs):
        with _staged(out) as tmp:
            run = RunFolder(tmp)
            write_spec(run.spec, group.spec)
            if config is not None:
                write_json(run.config, {**config, "recipe_resolved": recipe.to_dict()})
            atomic_write_text(run.metrics, "".join(json.dumps(r) + "\n" for r in state["metrics"]))
            save_weights(run.weights, state_dict)
            result = run_result(group.spec, data, recipe, state, seed=seed, amp=amp, config=config, device=device)
            result["group_size"] = group.k
            write_json(run.result, result)
        results.append(result)
    return results


STAGING = ".group-staging-"


@contextlib.contextmanager
def _staged(out: Path):
    """A temporary folder in ``out`` whose files move into ``out`` when the block succeeds, the run's
    result last (a run folder counts as finished when it has one); removed either way, and by the next
    group that writes ``out`` if a killed process left it."""
    out.mkdir(parents=True, exist_ok=True)
    for left in out.glob(STAGING + "*"):
        shutil.rmtree(left, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=STAGING, dir=out))
    try:
        yield tmp
        result = RunFolder(tmp).result
        for path in sorted(tmp.iterdir(), key=lambda f: f == result):
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
