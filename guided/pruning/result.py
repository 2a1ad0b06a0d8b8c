"""What a pruning method returns, and the cost bookkeeping every method shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models import ArchSpec, cost, densities_from_masks

__all__ = ["PruneResult", "cost_change"]


@dataclass
class PruneResult:
    """A pruned model and what was done.

    Attributes:
        model: the new module (``model.spec`` is the pruned spec).
        rows: per group: layer, stage, original, kept, kept fraction.
        info: method, allocation and costs before and after (non-zero counts for masks).
        masks: unstructured methods: the binary weight masks (the spec is unchanged).
    """

    model: nn.Module
    rows: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] | None = None


def cost_change(before: ArchSpec, after: ArchSpec, masks: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The source spec's name, and parameters and MACs before and after pruning (non-zero ones with masks)."""
    old = cost(before)
    new = cost(after, densities_from_masks(masks) if masks else None)
    return {
        "source_spec": before.name,
        "params_before": old.params,
        "params_after": new.params,
        "macs_before": old.macs,
        "macs_after": new.macs,
    }
