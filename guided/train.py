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

import io
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from guided.data import ImageData
from guided.errors import UserError
from guided.hooks import FixedMasks, Hook
from guided.io import atomic_write_bytes, atomic_write_text, write_json, write_spec
from guided.loader import DeviceLoader
from guided.provenance import provenance
from guided.recipes import Recipe
from models import ArchSpec, cost

__all__ = [
    "train",
    "train_epoch",
    "evaluate",
    "resolve_precision",
    "TrainingDiverged",
    "load_weights",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "guided.checkpoint/1"


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
        resume: continue from ``out_dir/checkpoint.pt``; without it, a folder that already holds a
            checkpoint is refused rather than overwritten.
        save_init: write the initial weights to ``init.pt`` (for lottery-ticket retraining).
        compile: wrap the model in `torch.compile`.
        precision: ``fp32``, ``bf16`` (autocast: convs and linears in bfloat16, weights and optimiser in
            fp32) or ``auto``: bf16 where the device computes it natively (CUDA; CPUs with AVX512-BF16 or
            AMX), fp32 elsewhere.
        config: the resolved configuration, recorded in ``result.json``.
        on_epoch: called with each finished epoch's metrics row, after its checkpoint is written; it may
            raise to stop the run (width search stops unpromising trials this way).
        log: where per-epoch lines go.

    Returns:
        The contents of ``result.json``.

    Example:
        >>> from guided.data import load_dataset
        >>> from guided.recipes import get_recipe
        >>> from models import build, create_spec
        >>> data = load_dataset("digits")
        >>> model = build(create_spec("vgg-tiny", in_channels=1), seed=0)
        >>> result = train(model, data, get_recipe("quick").override(epochs=1), out_dir="/tmp/run")  # doctest: +SKIP
    """
    out = Path(out_dir)
    device = torch.device(device)
    spec: ArchSpec = model.spec
    _check_fits(spec, data)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if resume and (out / "result.json").exists():
        log(f"{out}: already finished; nothing to do")
        return json.loads((out / "result.json").read_text())

    out.mkdir(parents=True, exist_ok=True)
    model.to(device=device, memory_format=torch.channels_last)
    amp = resolve_precision(precision, device) == "bf16"
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
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
    )
    test_loader = DeviceLoader(
        data.test, data.mean, data.std, batch_size=max(256, recipe.batch_size), train=False, device=device
    )
    if len(train_loader) == 0:
        raise UserError(f"batch size {recipe.batch_size} exceeds the {len(data.train)} training images")
    for hook in hooks:
        if isinstance(hook, FixedMasks):
            hook.bind(model)

    state = {"epoch": 0, "step": 0, "elapsed": 0.0, "metrics": []}
    if resume and ckpt_path.exists():
        state = _load_checkpoint(ckpt_path, model, optimizer, train_loader, spec)
        log(f"{out}: resuming after epoch {state['epoch']} of {recipe.epochs}")
    else:
        write_spec(out / "spec.json", spec)
        if save_init:
            _save_state_dict(out / "init.pt", model)

    step_fn = torch.compile(model) if compile else model
    total_steps = recipe.epochs * len(train_loader)
    c = cost(spec)
    for epoch in range(state["epoch"], recipe.epochs):
        start = time.perf_counter()
        train_loss, train_acc = train_epoch(
            step_fn,
            model,
            train_loader,
            optimizer,
            recipe,
            hooks,
            state,
            total_steps,
            amp,
            desc=f"epoch {epoch + 1}/{recipe.epochs}",
        )
        test_loss, test_acc = evaluate(step_fn, test_loader, amp=amp)
        seconds = time.perf_counter() - start
        state["elapsed"] += seconds
        state["epoch"] = epoch + 1
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": recipe.lr_at(state["step"] / total_steps),
            "seconds": round(seconds, 3),
            "images_per_s": round(len(train_loader) * recipe.batch_size / seconds, 1),
        }
        state["metrics"].append(row)
        _save_checkpoint(ckpt_path, model, optimizer, train_loader, spec, state)
        atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["metrics"]))
        log(
            f"epoch {epoch + 1:>3}/{recipe.epochs}  train loss {train_loss:.4f} acc {train_acc:6.2%}  "
            f"test loss {test_loss:.4f} acc {test_acc:6.2%}  {seconds:6.1f}s  {row['images_per_s']:.0f} img/s"
        )
        if on_epoch is not None:
            on_epoch(row)

    _save_state_dict(out / "model.pt", model)
    last = state["metrics"][-1]
    result = {
        "spec": spec.name,
        "dataset": data.name,
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "train_acc": last["train_acc"],
        "epochs": recipe.epochs,
        "params": c.params,
        "macs": c.macs,
        "wall_time_s": round(state["elapsed"], 2),
        "seed": seed,
        "precision": "bf16" if amp else "fp32",
        "recipe": recipe.to_dict(),
        "config": config or {},
        "provenance": provenance(device),
    }
    write_json(out / "result.json", result)
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


def _check_fits(spec: ArchSpec, data: ImageData) -> None:
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
                raise TrainingDiverged(
                    f"loss became {mean_loss} at step {state['step']}; stopped, the last good checkpoint "
                    f"(epoch {state['epoch']}) is kept. Lower the learning rate (now {lr:g})"
                )
            bar.set_postfix(loss=f"{mean_loss:.3f}", refresh=False)
    return loss_sum.item() / seen, correct.item() / seen


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, amp: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over a loader (eval mode)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    n = 0
    for x, y in loader:
        with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    model.train(was_training)
    return loss_sum.item() / n, correct.item() / n


# ---------------------------------------------------------------------- checkpoints
def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def _save_state_dict(path: Path, model: nn.Module) -> None:
    buf = io.BytesIO()
    torch.save(_cpu_state(model), buf)
    atomic_write_bytes(path, buf.getvalue())


def _save_checkpoint(path: Path, model, optimizer, loader: DeviceLoader, spec: ArchSpec, state: dict) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": spec.to_json(),
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "loader_rng": loader.state(),
        "epoch": state["epoch"],
        "step": state["step"],
        "elapsed": state["elapsed"],
        "metrics": json.dumps(state["metrics"]),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path, model, optimizer, loader: DeviceLoader, spec: ArchSpec) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise UserError(f"cannot read checkpoint {path}: {exc}") from None
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a guided checkpoint (format {payload.get('format')!r})")
    if ArchSpec.from_json(payload["spec"]) != spec:
        raise UserError(f"{path} was written for another architecture; use a new --out for this one")
    model.load_state_dict(payload["model"], strict=True)
    optimizer.load_state_dict(payload["optimizer"])
    loader.set_state(payload["loader_rng"])
    return {
        "epoch": payload["epoch"],
        "step": payload["step"],
        "elapsed": payload["elapsed"],
        "metrics": json.loads(payload["metrics"]),
    }


def load_weights(run_dir: str | Path, *, which: str = "model.pt") -> nn.Module:
    """Rebuild a trained network from a run folder: ``spec.json`` plus a state_dict (strict, weights only).

    Args:
        run_dir: a folder written by `train`.
        which: ``model.pt`` (final), ``init.pt`` (initial) or ``checkpoint.pt`` (last epoch).
    """
    from guided.io import read_spec
    from models import build

    run = Path(run_dir)
    spec = read_spec(run / "spec.json")
    path = run / which
    if not path.is_file():
        raise UserError(f"{path} does not exist; is {run} a finished training run?")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if which == "checkpoint.pt":
        state = state["model"]
    model = build(spec)
    model.load_state_dict(state, strict=True)
    return model
