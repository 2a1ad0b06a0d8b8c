"""Training hooks: what pruning methods add to plain training.

A hook may add a loss term, edit gradients after ``backward()``, and edit weights after the optimiser
step. The engine calls them in order; a hook holds no training state of its own, so resuming needs
nothing from it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Hook", "BatchNormL1", "FixedMasks", "GateSparsity"]


class Hook:
    """Base class: every method is optional."""

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the loss before ``backward()``."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Edit gradients before the optimiser step."""

    def after_step(self, model: nn.Module, lr: float) -> None:
        """Edit weights after the optimiser step taken with learning rate ``lr``."""


class BatchNormL1(Hook):
    """Network Slimming's sparsity training: an L1 penalty on every BatchNorm2d scale (Liu et al. 2017).

    Adds ``lam * sign(gamma)`` to each scale's gradient (the subgradient of ``lam * |gamma|``), as the
    paper's code does. The paper uses ``lam = 1e-4`` for VGG and ``1e-5`` for ResNet and DenseNet.
    """

    def __init__(self, lam: float) -> None:
        if lam < 0:
            raise ValueError(f"the L1 coefficient must be non-negative, got {lam}")
        self.lam = lam

    def after_backward(self, model: nn.Module) -> None:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.weight.grad is not None:
                m.weight.grad.add_(torch.sign(m.weight.detach()), alpha=self.lam)


class FixedMasks(Hook):
    """Sparse training: weights outside a fixed binary mask get no gradient and stay exactly zero.

    Args:
        masks: parameter name (as in ``model.named_parameters()``) to a 0/1 tensor of its shape.
    """

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = masks
        self._params: list[tuple[nn.Parameter, torch.Tensor]] | None = None

    def bind(self, model: nn.Module) -> None:
        """Check the masks against the model and zero the masked weights."""
        params = dict(model.named_parameters())
        bound = []
        for name, mask in self.masks.items():
            if name not in params:
                raise ValueError(f"mask for {name!r}, which is not a parameter of this model")
            p = params[name]
            if mask.shape != p.shape:
                raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, the weight {tuple(p.shape)}")
            bound.append((p, mask.to(device=p.device, dtype=p.dtype)))
        self._params = bound
        self.after_step(model, 0.0)

    def _bound(self, model: nn.Module) -> list[tuple[nn.Parameter, torch.Tensor]]:
        if self._params is None:
            self.bind(model)
        return self._params

    def after_backward(self, model: nn.Module) -> None:
        for p, mask in self._bound(model):
            if p.grad is not None:
                p.grad.mul_(mask)

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        for p, mask in self._bound(model):
            p.mul_(mask)


class GateSparsity(Hook):
    """Sparse Structure Selection (Huang & Wang, ECCV 2018): sparse scalar gates on residual blocks.

    After each SGD step every block gate ``g`` (a spec with ``gated=True``) takes the proximal step of an
    L1 penalty ``gamma * |g|``: ``g <- sign(g) * max(|g| - lr * gamma, 0)``. This is the paper's proximal
    gradient update without its Nesterov acceleration (documented simplification); gates that reach 0
    stay there unless the data gradient pushes them back, and `guided.pruning` removes such blocks.
    """

    def __init__(self, gamma: float) -> None:
        if gamma < 0:
            raise ValueError(f"the gate penalty must be non-negative, got {gamma}")
        self.gamma = gamma

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        for name, p in model.named_parameters():
            if name.endswith(".gate"):
                p.copy_(torch.sign(p) * torch.clamp(p.abs() - lr * self.gamma, min=0.0))
