"""Training recipes as data, and the epoch budgets of Scratch-E and Scratch-B.

``paper`` is the CIFAR recipe of the paper's public code; ``quick`` is a short one-cycle recipe for CPU
protocols. Every field can be overridden (`Recipe.override`, the CLI's flags, TOML).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from guided.errors import UserError

__all__ = ["Recipe", "RECIPES", "get_recipe", "scratch_epochs", "SCHEDULES", "EVALS"]

SCHEDULES = ("step", "cosine", "onecycle", "constant")
EVALS = ("every", "last")
#: Fields added after studies were committed: left out of `Recipe.to_dict` at these values.
OPTIONAL_DEFAULTS = {"ema": 0.0, "test_flip": False, "eval": "every"}


#: The largest learning rate a user may give (``--lr``, ``[train] lr``): SGD on these networks diverges far
#: below it, and a value near the float limit overflows to inf in the first step (a traceback, not a
#: training run). Recipes built in code may go beyond it (the divergence tests do).
MAX_LR = 100.0


def check_lrs(lrs: dict[str, float | None]) -> None:
    """Refuse, in one line, a user's learning rate outside (0, `MAX_LR`]; ``None`` is not given."""
    for where, value in lrs.items():
        if value is not None and not 0 < value <= MAX_LR:
            raise UserError(f"learning rates must lie in (0, {MAX_LR:g}], got {where} = {value}")


@dataclass(frozen=True)
class Recipe:
    """How to train (and fine-tune) a network.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per step.
        lr: peak learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty on every parameter (as in the paper's code).
        schedule: ``step`` (lr x gamma at each milestone), ``cosine``, ``onecycle`` (linear warm-up to
            ``lr`` for ``warmup`` of training, then linear decay to 0) or ``constant``.
        milestones: ``step`` schedule: fractions of training where the lr drops.
        gamma: ``step`` schedule: factor at each milestone.
        warmup: ``onecycle``: fraction of training spent warming up.
        label_smoothing: cross-entropy label smoothing.
        finetune_epochs: epochs of fine-tuning a pruned model.
        finetune_lr: constant-schedule learning rate of fine-tuning.
        finetune_schedule: schedule of fine-tuning (``constant`` in the paper).
        ema: decay of an exponential moving average of the weights, per optimiser step (0: none). With it,
            the averaged network is the one evaluated and saved; the decay warms up as ``(1 + t) / (10 + t)``
            over the first steps (as in TensorFlow's and timm's EMA), and BatchNorm statistics are averaged too.
        test_flip: evaluate on each test image and its mirror image, averaging the two softmax outputs.
        eval: ``every`` epoch on the test split (per-epoch curves), or only after the ``last``.

    ``ema``, ``test_flip`` and ``eval`` are written by `to_dict` only when they differ from their defaults, so a
    run configured before they existed keeps its configuration (and a study stage its fingerprint).
    """

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup: float = 0.0
    label_smoothing: float = 0.0
    finetune_epochs: int = 40
    finetune_lr: float = 0.001
    finetune_schedule: str = "constant"
    ema: float = 0.0
    test_flip: bool = False
    eval: str = "every"

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(self.milestones))
        if self.epochs < 1 or self.batch_size < 1 or self.finetune_epochs < 1:
            raise UserError("epochs, batch_size and finetune_epochs must be at least 1")
        if not 0 < self.lr < math.inf or not 0 < self.finetune_lr < math.inf:
            raise UserError(f"learning rates must be positive, got lr={self.lr}, finetune_lr={self.finetune_lr}")
        if not 0 <= self.momentum < 1:
            raise UserError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not 0 <= self.weight_decay < math.inf:
            raise UserError(f"weight_decay must be 0 or more, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if not 0 < self.gamma < math.inf:
            raise UserError(f"gamma must be positive, got {self.gamma}")
        if self.nesterov and self.momentum == 0:
            raise UserError("Nesterov momentum needs momentum above 0")
        for sched in (self.schedule, self.finetune_schedule):
            if sched not in SCHEDULES:
                raise UserError(f"unknown schedule {sched!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup < 1:
            raise UserError(f"warmup is a fraction of training in [0, 1), got {self.warmup}")
        if not 0 <= self.ema < 1:
            raise UserError(f"ema is a decay per step in [0, 1) (0: off; 0.999 is typical), got {self.ema}")
        if self.eval not in EVALS:
            raise UserError(f"eval must be one of {', '.join(EVALS)}, got {self.eval!r}")
        if any(not 0 < m < 1 for m in self.milestones):
            raise UserError(f"milestones are fractions of training in (0, 1), got {list(self.milestones)}")

    def lr_at(self, progress: float) -> float:
        """Learning rate at ``progress`` (0 at the first step, 1 at the end of training)."""
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "step":
            return self.lr * self.gamma ** sum(progress >= m for m in self.milestones)
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * progress))
        if progress < self.warmup:  # onecycle
            return self.lr * progress / self.warmup
        return self.lr * max(0.0, 1 - progress) / (1 - self.warmup)

    def finetune(self) -> Recipe:
        """The recipe that fine-tunes a pruned network (its epochs, lr and schedule)."""
        return dataclasses.replace(
            self, epochs=self.finetune_epochs, lr=self.finetune_lr, schedule=self.finetune_schedule, warmup=0.0
        )

    def override(self, **changes: Any) -> Recipe:
        """A copy with the given fields changed; ``None`` values are ignored, unknown names refused."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UserError(f"unknown recipe field(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        for name, default in OPTIONAL_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """The recipe `to_dict` wrote; unknown fields refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown recipe field(s) {unknown}; known: {sorted(known)}")
        return cls(**{**data, "milestones": tuple(data.get("milestones", (0.5, 0.75)))})


RECIPES: dict[str, Recipe] = {
    # ../shared/PAPER.md: 160 epochs, batch 64, SGD 0.1 momentum 0.9, wd 1e-4, /10 at 50% and 75%;
    # fine-tuning 40 epochs at 0.001.
    "paper": Recipe(epochs=160, batch_size=64, lr=0.1, weight_decay=1e-4, schedule="step"),
    # CPU protocols: few epochs, one-cycle with Nesterov momentum and label smoothing converge far faster.
    "quick": Recipe(
        epochs=10,
        batch_size=128,
        lr=0.1,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        warmup=0.15,
        label_smoothing=0.1,
        finetune_epochs=4,
        finetune_lr=0.01,
        finetune_schedule="cosine",
    ),
}


def get_recipe(name: str) -> Recipe:
    """A recipe by name."""
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def scratch_epochs(mode: str, epochs: int, macs_full: float, macs_pruned: float) -> int:
    """Epochs for training a pruned architecture from scratch.

    Args:
        mode: ``scratch-e`` (as many epochs as the large model) or ``scratch-b`` (as much compute:
            ``int(epochs * macs_full / macs_pruned)``, no cap, as in the paper's CIFAR runs).
        epochs: epochs of the large model.
        macs_full: MACs of the large model per image.
        macs_pruned: MACs of the pruned model per image (non-zero MACs for sparse models).

    Example:
        >>> scratch_epochs("scratch-b", 160, 313.5e6, 206.3e6)
        243
    """
    if mode == "scratch-e":
        return epochs
    if mode == "scratch-b":
        if not 0 < macs_pruned:
            raise UserError(f"pruned MACs must be positive, got {macs_pruned}")
        return max(1, int(epochs * macs_full / macs_pruned))
    raise UserError(f"unknown scratch mode {mode!r}; choose scratch-e or scratch-b")
