"""The training engine: one loop for CPU and CUDA, checkpointed every epoch, resumable bit for bit.

A run folder holds:

* ``spec.json``: the architecture; ``config.json``: the resolved configuration (written by the caller);
* ``init.pt``: the initial weights, when asked for (lottery tickets);
* ``checkpoint.pt``: written atomically after every epoch: weights, optimiser, step, RNG states, metrics;
* ``metrics.jsonl``: one line per finished epoch;
* ``model.pt`` and ``result.json``: the final weights and the final numbers with their provenance.

A run killed at any moment and resumed ends with the same weights as an uninterrupted run (CPU, same
seed): the learning rate is a pure function of the step, and the data order and augmentation come from
a generator whose state is checkpointed.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import io
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from guided.errors import UserError
from guided.storage.folders import RunFolder
from guided.storage.io import (
    atomic_write_bytes,
    atomic_write_text,
    load_state,
    read_json,
    read_tensors,
    write_json,
    write_spec,
)
from guided.storage.provenance import provenance
from guided.timing import threads
from guided.timing.clock import clock
from guided.training.data import ImageData
from guided.training.hooks import FixedMasks, Hook
from guided.training.loader import DeviceLoader
from guided.training.recipes import Recipe
from models import ArchSpec, build, cost

__all__ = [
    "train",
    "train_epoch",
    "evaluate",
    "resolve_precision",
    "TrainingDiverged",
    "load_weights",
    "save_weights",
    "check_fits",
    "make_loaders",
    "run_result",
    "record_epoch",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "guided.checkpoint/1"

#: The memory layout a run trains in. Channels-last is about 30% faster on CPU (VGG-16 x0.125, fp32, one
#: thread) and what GPU tensor cores want. A seed group (`guided.training.multiseed`) computes in the contiguous
#: layout, so its seeds equal runs trained with ``torch.contiguous_format`` here to float rounding, and differ
#: from channels-last runs as the two layouts' rounding grows apart through training.
MEMORY_FORMAT = torch.channels_last


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def train(
    model: nn.Module,
    data: ImageData,
    recipe: Recipe,
    *,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    seed: int = 0,
    hooks: Sequence[Hook] = (),
    resume: bool = False,
    save_init: bool = False,
    compile: bool = False,
    precision: str = "auto",
    config: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``model`` (built from ``model.spec``) and write a run folder.

    Args:
        model: the network; its ``spec`` is saved beside the weights.
        data: train and test splits (``test`` may be a validation split).
        recipe: optimiser, schedule and epochs.
        out_dir: the run folder.
        device: where to train; the data are moved there once.
        seed: seeds data order and augmentation (initialisation is seeded where the model is built).
        hooks: pruning hooks (L1 on BN scales, fixed masks, ...).
        resume: continue from ``out_dir/checkpoint.pt`` (a finished run with the same epochs is returned as
            is); without it, a folder that already holds a checkpoint is refused rather than overwritten.
        save_init: write the initial weights to ``init.pt`` (for lottery-ticket retraining).
        compile: wrap the model in `torch.compile`.
        precision: ``fp32``, ``bf16`` (autocast) or ``auto``: bf16 where the device computes it natively.
        config: the resolved configuration: written to ``config.json`` when a new run starts, and recorded
            in ``result.json``.
        on_epoch: called with each finished epoch's metrics row, after its checkpoint is written; it may
            raise to stop the run (width search stops unpromising trials this way).
        log: where per-epoch lines go.

    Returns:
        The contents of ``result.json``.

    Example:
        >>> from guided.training.recipes import get_recipe
        >>> from models import build, create_spec
        >>> model = build(create_spec("vgg-tiny", in_channels=1), seed=0)
        >>> train(model, load_dataset("digits"), get_recipe("quick"), out_dir="/tmp/run")  # doctest: +SKIP
    """
    out, device, spec = Path(out_dir), torch.device(device), model.spec
    check_fits(spec, data)
    finished = _check_resume(out, recipe, resume)
    if finished is not None:
        log(f"{out}: already finished; nothing to do")
        return finished
    train_loader, test_loader = make_loaders(data, recipe, device, seed)
    model.to(device=device, memory_format=MEMORY_FORMAT)
    amp = resolve_precision(precision, device) == "bf16"
    optimizer = _optimizer(model, recipe, hooks)
    average = WeightAverage(model.state_dict(), recipe.ema) if recipe.ema else None
    state = {"epoch": 0, "step": 0, "elapsed": 0.0, "metrics": []}
    if resume:
        state = _load_checkpoint(RunFolder(out).checkpoint, model, optimizer, train_loader, spec, average)
        log(f"{out}: resuming after epoch {state['epoch']} of {recipe.epochs}")
    with _removed_on_early_failure(out, keep=resume):
        if not resume:
            _start_run(out, model, recipe, config, save_init)
        step_fn = torch.compile(model) if compile else model
        loop = _Loop(step_fn, model, optimizer, recipe, [*hooks, *([average] if average else [])], amp, log)
        loop.average = average
        for _ in range(state["epoch"], recipe.epochs):
            row = loop.epoch(train_loader, test_loader, state)
            _save_checkpoint(RunFolder(out).checkpoint, model, optimizer, train_loader, spec, state, average)
            atomic_write_text(RunFolder(out).metrics, "".join(json.dumps(r) + "\n" for r in state["metrics"]))
            if on_epoch is not None:
                on_epoch(row)
    save_weights(RunFolder(out).weights, _cpu_state(average.averaged(model) if average else model))
    result = run_result(spec, data, recipe, state, seed=seed, amp=amp, config=config, device=device)
    if recipe.ema or recipe.test_flip:
        result["evaluations"] = evaluations_of(model, average, test_loader, amp)
    write_json(RunFolder(out).result, result)
    return result


class WeightAverage(Hook):
    """An exponential moving average of a network's state, updated after every optimiser step.

    Floating-point entries (weights and BatchNorm statistics) move towards the network's by ``1 - d`` each
    step, with ``d = min(decay, (1 + t) / (10 + t))`` at update ``t`` (the warm-up of TensorFlow's and timm's
    EMA, so early steps are not averaged with the random initialisation for long); integer entries (BatchNorm
    step counts) are copied. ``state`` is any mapping of tensors: a module's ``state_dict()``, or the stacked
    tensors of a seed group (`guided.training.multiseed`), which are averaged elementwise alike.

    Example:
        >>> import torch
        >>> w = {"w": torch.zeros(2)}
        >>> avg = WeightAverage(w, 0.5)
        >>> avg.update({"w": torch.ones(2)})
        >>> avg.shadow["w"].tolist()  # the first update: d = min(0.5, 2/11)
        [0.8181818127632141, 0.8181818127632141]
    """

    def __init__(self, state: dict[str, torch.Tensor], decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in state.items()}

    @torch.no_grad()
    def update(self, state: dict[str, torch.Tensor]) -> None:
        """Move the average one step towards ``state``."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in state.items():
            shadow = self.shadow[key]
            if shadow.is_floating_point():
                shadow.lerp_(value.detach().to(shadow.dtype), 1 - d)
            else:
                shadow.copy_(value)

    def after_step(self, model: nn.Module, lr: float) -> None:
        self.update(model.state_dict())

    def averaged(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` holding the averaged state."""
        copy = _copy.deepcopy(model)
        copy.load_state_dict(self.shadow)
        return copy

    def to_checkpoint(self) -> dict[str, Any]:
        return {"shadow": {k: v.detach().to("cpu") for k, v in self.shadow.items()}, "updates": self.updates}

    def from_checkpoint(self, payload: dict[str, Any]) -> None:
        for key, value in payload["shadow"].items():
            self.shadow[key].copy_(value)
        self.updates = int(payload["updates"])


def evaluations_of(model, average: WeightAverage | None, loader: DeviceLoader, amp: bool) -> dict[str, float]:
    """Test accuracy of the trained network with and without flip averaging, and of its weight average when
    there is one: what ``result.json`` records as ``evaluations``, so each option is measured on one run."""
    nets = {"plain": model, **({"ema": average.averaged(model)} if average else {})}
    return {
        f"{name}{'_flip' if flip else ''}": evaluate(net, loader, amp=amp, flip=flip)[1]
        for name, net in nets.items()
        for flip in (False, True)
    }


def _optimizer(model: nn.Module, recipe: Recipe, hooks: Sequence[Hook]) -> torch.optim.Optimizer:
    """SGD as the recipe says; fixed-mask hooks are bound to the model (weights zeroed) first."""
    for hook in hooks:
        if isinstance(hook, FixedMasks):
            hook.bind(model)
    return recipe_sgd(model.parameters(), recipe)


def recipe_sgd(params, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD with the recipe's learning rate, momentum, Nesterov and weight decay (every trainer's optimizer)."""
    return torch.optim.SGD(
        params, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov, weight_decay=recipe.weight_decay
    )


def _start_run(out: Path, model: nn.Module, recipe: Recipe, config: dict[str, Any] | None, save_init: bool) -> None:
    """The files a new run writes before its first epoch: spec, resolved configuration, initial weights."""
    write_spec(RunFolder(out).spec, model.spec)
    if config is not None:
        write_json(RunFolder(out).config, {**config, "recipe_resolved": recipe.to_dict()})
    if save_init:
        _save_state_dict(RunFolder(out).init, model)


def run_result(spec: ArchSpec, data: ImageData, recipe: Recipe, state: dict, **run: Any) -> dict[str, Any]:
    """``result.json``: the last epoch's numbers, the costs, and the run's provenance."""
    last, c = state["metrics"][-1], cost(spec)
    return {
        "spec": spec.name,
        "dataset": data.name,
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "train_acc": last["train_acc"],
        "epochs": recipe.epochs,
        "params": c.params,
        "macs": c.macs,
        "wall_time_s": round(state["elapsed"], 2),
        "train_images_per_s": round(state["train_images"] / state["train_seconds"], 1)
        if state.get("train_seconds")
        else None,
        "seed": run["seed"],
        "precision": "bf16" if run["amp"] else "fp32",
        "recipe": recipe.to_dict(),
        "config": run["config"] or {},
        "provenance": provenance(run["device"]),
    }


def make_loaders(data: ImageData, recipe: Recipe, device: torch.device, seed: int) -> tuple[DeviceLoader, DeviceLoader]:
    """The shuffled, augmented training loader and the test loader, on ``device``."""
    if recipe.batch_size > len(data.train):
        raise UserError(f"batch size {recipe.batch_size} exceeds the {len(data.train)} training images")
    train_loader = DeviceLoader(
        data.train,
        data.mean,
        data.std,
        batch_size=recipe.batch_size,
        train=True,
        device=device,
        seed=seed,
        crop_padding=data.crop_padding,
        flip=data.flip,
        channels_last=MEMORY_FORMAT == torch.channels_last,
    )
    test_loader = DeviceLoader(
        data.test,
        data.mean,
        data.std,
        batch_size=max(256, recipe.batch_size),
        train=False,
        device=device,
        channels_last=MEMORY_FORMAT == torch.channels_last,
    )
    return train_loader, test_loader


@contextlib.contextmanager
def _removed_on_early_failure(out: Path, *, keep: bool):
    """Run a new training in ``out``; if it fails before its first checkpoint, remove what it wrote.

    A run that stops before finishing one epoch has nothing to resume, so its folder goes back to how it
    was: removed if this call created it, else emptied of the files this call wrote.
    """
    created = not out.exists()
    before = set() if created else set(out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if not keep and not (RunFolder(out).checkpoint).exists():
            if created:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for path in set(out.iterdir()) - before:
                    path.unlink(missing_ok=True)
        raise


class _Loop:
    """One epoch of training and evaluation at a time, with the per-epoch log line."""

    def __init__(self, step_fn, model, optimizer, recipe: Recipe, hooks, amp: bool, log):
        self.step_fn, self.model, self.optimizer, self.recipe = step_fn, model, optimizer, recipe
        self.hooks, self.amp, self.log = hooks, amp, log
        self.average: WeightAverage | None = None

    def evaluated(self) -> nn.Module:
        """The network the recipe evaluates and saves: the weight average when it keeps one."""
        return self.average.averaged(self.model) if self.average else self.step_fn

    def epoch(self, train_loader: DeviceLoader, test_loader: DeviceLoader, state: dict) -> dict[str, Any]:
        """Train one epoch and evaluate; updates ``state`` (epoch, step, elapsed, metrics) and returns the row."""
        recipe, epochs = self.recipe, self.recipe.epochs
        total_steps = epochs * len(train_loader)
        threads.rebalance()  # another guided process may have started since the last epoch
        start = time.perf_counter()
        train_loss, train_acc = train_epoch(
            self.step_fn,
            self.model,
            train_loader,
            self.optimizer,
            recipe,
            self.hooks,
            state,
            total_steps,
            self.amp,
            desc=f"epoch {state['epoch'] + 1}/{epochs}",
        )
        trained = time.perf_counter() - start
        test = (None, None)
        if recipe.eval == "every" or state["epoch"] + 1 == epochs:
            test = evaluate(self.evaluated(), test_loader, amp=self.amp, flip=recipe.test_flip)
        seconds = time.perf_counter() - start
        row = record_epoch(state, recipe, len(train_loader), trained, seconds, (train_loss, train_acc), test)
        left = epochs - state["epoch"]
        eta = f"  eta {clock(left * state['elapsed'] / state['epoch'])}" if left else ""
        tested = f"test loss {test[0]:.4f} acc {test[1]:6.2%}" if test[1] is not None else "(tested after the last)"
        self.log(
            f"epoch {state['epoch']:>3}/{epochs}  train loss {train_loss:.4f} acc {train_acc:6.2%}  "
            f"{tested}  {seconds:6.1f}s  {row['images_per_s']:.0f} img/s{eta}"
        )
        return row


def record_epoch(state: dict, recipe: Recipe, steps: int, trained: float, seconds: float, train, test) -> dict:
    """Count a finished epoch of ``steps`` optimiser steps in ``state`` (after they advanced ``state["step"]``)
    and append its metrics row: ``train`` and ``test`` are (loss, accuracy); ``trained`` and ``seconds`` the
    training and the whole epoch's seconds. Returns the row (one line of ``metrics.jsonl``)."""
    images = steps * recipe.batch_size
    state["elapsed"] += seconds
    state["train_seconds"] = state.get("train_seconds", 0.0) + trained  # absent in older checkpoints
    state["train_images"] = state.get("train_images", 0) + images
    state["epoch"] += 1
    row = {
        "epoch": state["epoch"],
        "train_loss": train[0],
        "train_acc": train[1],
        "test_loss": test[0],
        "test_acc": test[1],
        "lr": recipe.lr_at(state["step"] / (recipe.epochs * steps)),
        "seconds": round(seconds, 3),
        "images_per_s": round(images / seconds, 1),
    }
    state["metrics"].append(row)
    return row


def _check_resume(out: Path, recipe: Recipe, resume: bool) -> dict[str, Any] | None:
    """A finished run's result when resuming one; refuses resuming nothing, and starting over a run."""
    finished = _finished_run(out, recipe) if resume else None
    if finished is None and resume != (RunFolder(out).checkpoint).exists():
        raise UserError(
            f"nothing to resume in {out} (no checkpoint.pt); drop --resume to start the run"
            if resume
            else f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    return finished


def _finished_run(out: Path, recipe: Recipe) -> dict[str, Any] | None:
    """A finished run's result (``None`` if unfinished); refuses to extend it to more epochs."""

    if not (RunFolder(out).result).exists():
        return None
    result = read_json(RunFolder(out).result, "run result")
    if result.get("epochs") != recipe.epochs:
        raise UserError(
            f"{out} finished its {result.get('epochs')} epochs; {recipe.epochs} epochs is another run (the learning "
            "rate follows the step through the whole schedule), so train it in a new --out"
        )
    return result


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for a ``precision`` option (``auto``, ``fp32``, ``bf16``) on ``device``."""
    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"unknown precision {precision!r}; choose auto, fp32 or bf16")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    native = device.type == "cpu" and torch.backends.mkldnn.is_available() and _cpu_has_bf16()
    return "bf16" if native else "fp32"


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_fits(spec: ArchSpec, data: ImageData) -> None:
    """Refuse ``data`` when its classes, input channels or image size differ from ``spec``'s."""
    for what, s, d in [
        ("classes", spec.num_classes, data.num_classes),
        ("input channels", spec.in_channels, data.in_channels),
        ("input size", spec.input_size, data.input_size),
    ]:
        if s != d:
            raise UserError(
                f"the architecture expects {s} {what} but {data.name} has {d}; "
                f"rebuild the spec for this dataset (or resize images with --image-size)"
            )


def train_epoch(step_fn, model, loader, optimizer, recipe, hooks, state, total_steps, amp, desc):
    """One pass over ``loader``: returns (mean loss, accuracy) of the training batches.

    ``step_fn`` is ``model`` or its compiled wrapper; hooks see ``model``. ``state["step"]`` counts
    optimiser steps across epochs; the learning rate is ``recipe.lr_at(step / total_steps)``.
    Raises `TrainingDiverged` when the running loss is not finite.
    """
    from tqdm import tqdm

    model.train()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=None, file=sys.stderr, mininterval=1.0)
    for i, (x, y) in enumerate(bar):
        lr = recipe.lr_at(state["step"] / total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = step_fn(x)
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        for hook in hooks:
            extra = hook.extra_loss(model)
            if extra is not None:
                loss = loss + extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for hook in hooks:
            hook.after_backward(model)
        optimizer.step()
        for hook in hooks:
            hook.after_step(model, lr)
        state["step"] += 1
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if i % 25 == 0 or i == len(loader) - 1:  # a sync: cheap on CPU, rare enough on GPU
            mean_loss = loss_sum.item() / seen
            if not math.isfinite(mean_loss):
                kept = (
                    f"the last good checkpoint (epoch {state['epoch']}) is kept"
                    if state["epoch"]
                    else "no epoch had finished, so nothing is kept"
                )
                raise TrainingDiverged(
                    f"loss became {mean_loss} at step {state['step']}; stopped ({kept}). "
                    f"Lower the learning rate (now {lr:g})"
                )
            bar.set_postfix(loss=f"{mean_loss:.3f}", refresh=False)
    return loss_sum.item() / seen, correct.item() / seen


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, amp: bool = False, flip: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over a loader (eval mode). ``flip``: average the softmax
    of each image and of its mirror image (test-time augmentation); the loss is that average's."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    n = 0
    for x, y in loader:
        with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
            mirrored = model(x.flip(3)) if flip else None
        log_p = F.log_softmax(logits.float(), 1)
        if mirrored is not None:
            log_p = torch.logsumexp(torch.stack([log_p, F.log_softmax(mirrored.float(), 1)]), 0) - math.log(2)
        loss_sum += F.nll_loss(log_p, y, reduction="sum")
        correct += (log_p.argmax(1) == y).sum()
        n += len(y)
    model.train(was_training)
    return loss_sum.item() / n, correct.item() / n


# ---------------------------------------------------------------------- checkpoints
def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def _save_state_dict(path: Path, model: nn.Module) -> None:
    save_weights(path, _cpu_state(model))


def save_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Write a state_dict (CPU tensors) atomically: a reader never sees half a file."""
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    atomic_write_bytes(path, buf.getvalue())


def _save_checkpoint(path: Path, model, optimizer, loader: DeviceLoader, spec: ArchSpec, state: dict, average=None):
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": spec.to_json(),
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "loader_rng": loader.state(),
        "epoch": state["epoch"],
        "step": state["step"],
        "elapsed": state["elapsed"],
        "train_seconds": state.get("train_seconds", 0.0),
        "train_images": state.get("train_images", 0),
        "metrics": json.dumps(state["metrics"]),
        **({"average": average.to_checkpoint()} if average else {}),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path, model, optimizer, loader: DeviceLoader, spec: ArchSpec, average=None) -> dict:
    payload = read_tensors(path, "checkpoint")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a guided checkpoint (format {payload.get('format')!r})")
    try:
        same = ArchSpec.from_json(payload["spec"]) == spec
        metrics = json.loads(payload["metrics"])
        counters = {k: payload[k] for k in ("epoch", "step", "elapsed")}
        counters.update({k: payload[k] for k in ("train_seconds", "train_images") if k in payload})
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"checkpoint {path} is incomplete ({exc}); remove it to start the run again") from None
    if not same:
        raise UserError(f"{path} was written for another architecture; use a new --out for this one")
    load_state(model, payload["model"], path)
    try:
        optimizer.load_state_dict(payload["optimizer"])
        loader.set_state(payload["loader_rng"])
        if average is not None:
            average.from_checkpoint(payload["average"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"checkpoint {path} has an unusable optimiser or data-order state ({exc})") from None
    return {**counters, "metrics": metrics}


def load_weights(run_dir: str | Path, *, which: str = "weights") -> nn.Module:
    """Rebuild a trained network from a run folder: ``spec.json`` plus a state_dict (strict, weights only).

    Args:
        run_dir: a folder written by `train`.
        which: ``weights`` (final), ``init`` (initial) or ``checkpoint`` (last epoch): a `RunFolder` file.
    """

    run = RunFolder(run_dir)
    spec = run.read_spec()
    path = getattr(run, which)
    if not path.is_file():
        raise UserError(f"{path} does not exist; is {run} a finished training run?")
    state = read_tensors(path, "weights file")
    if which == "checkpoint":
        state = state.get("model", {})
    model = build(spec)
    load_state(model, state, path)
    return model
