"""Unstructured pruning: binary weight masks, their storage, and the sparsity patterns they show.

Magnitude pruning (Han et al., NIPS 2015) keeps the largest-magnitude weights, with one threshold over
all conv (optionally linear) weights or the same fraction per layer. The spec does not change; the result
is a set of masks, kept beside the spec as packed bits (``masks.npz``, read without pickle) and enforced
during training by `guided.training.hooks.FixedMasks`. Counts are exact: ties are broken by position, so a layer
pruned at ratio r loses exactly ``round(r * n)`` weights.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from guided.errors import UserError
from guided.pruning.result import PruneResult, cost_change
from guided.storage.io import atomic_write_bytes, check_file
from models import ArchSpec, cost, densities_from_masks, layers

__all__ = [
    "prunable_weights",
    "magnitude_masks",
    "random_masks",
    "apply_masks",
    "save_masks",
    "load_masks",
    "sparsity_report",
    "nonzero_cost",
]

Masks = dict[str, torch.Tensor]


def prunable_weights(model: nn.Module, *, include_linear: bool = False) -> dict[str, nn.Parameter]:
    """Conv weights (and linear weights if asked), by parameter name, in forward order."""
    kinds = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    return {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, kinds)}


def magnitude_masks(
    model: nn.Module,
    ratio: float,
    *,
    scope: str = "global",
    include_linear: bool = False,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> Masks:
    """Masks removing the ``ratio`` fraction of smallest-magnitude weights.

    Args:
        model: the trained network.
        ratio: fraction of the prunable weights to remove, in (0, 1).
        scope: ``global`` (one threshold over every prunable weight) or ``layer`` (the same fraction of
            each layer).
        include_linear: prune linear layers too (the paper's CIFAR runs prune convs).
        masks: masks already applied (iterative pruning): weights they removed stay removed and count
            towards ``ratio``.
    """
    if not 0 < ratio < 1:
        raise UserError(f"pruning ratio must lie in (0, 1) (the fraction of weights removed), got {ratio}")
    if scope not in ("global", "layer"):
        raise UserError(f"unknown scope {scope!r}; choose global or layer")
    weights = prunable_weights(model, include_linear=include_linear)
    scores = {}
    for name, w in weights.items():
        s = w.detach().abs().float().cpu().flatten()
        if masks and name in masks:
            s = torch.where(masks[name].flatten().bool(), s, torch.full_like(s, -1.0))  # removed stay removed
        scores[name] = s
    if scope == "layer":
        return {name: _keep_top(s, round((1 - ratio) * s.numel())).view_as(weights[name]) for name, s in scores.items()}
    flat = torch.cat(list(scores.values()))
    keep = _keep_top(flat, round((1 - ratio) * flat.numel()))
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = keep[start : start + s.numel()].view_as(weights[name])
        start += s.numel()
    return out


def _keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest scores (ties broken by position: a stable sort)."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.sort(scores, descending=True, stable=True).indices
        mask[order[:k]] = True
    return mask


def random_masks(like: Mapping[str, torch.Tensor], *, seed: int = 0) -> Masks:
    """Random masks with exactly the same number of kept weights in every layer as ``like``."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in like.items():
        k = int(m.sum())
        mask = torch.zeros(m.numel(), dtype=torch.bool)
        mask[torch.randperm(m.numel(), generator=gen)[:k]] = True
        out[name] = mask.view_as(m)
    return out


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the masked weights in place (after checking names and shapes); returns ``model``."""
    params = dict(model.named_parameters())
    check_masks(model.spec, masks, params)
    for name, m in masks.items():
        params[name].mul_(m.to(params[name].device, params[name].dtype))
    return model


def check_masks(spec: ArchSpec, masks: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> None:
    """Refuse masks that do not belong to this architecture, with the first mismatch named."""
    for name, m in masks.items():
        if name not in params:
            raise UserError(f"mask {name!r} names no weight of {spec.name}; were the masks made for another spec?")
        if tuple(m.shape) != tuple(params[name].shape):
            raise UserError(
                f"mask {name} has shape {tuple(m.shape)} but the weight has {tuple(params[name].shape)}; "
                f"the masks were made for another spec"
            )
    unmasked = [n for n, w in params.items() if w.dim() == 4 and n not in masks]
    if unmasked:
        raise UserError(
            f"the masks leave {len(unmasked)} convolution(s) of {spec.name} without a mask (first: {unmasked[0]}); "
            "they were made for another spec"
        )


def save_masks(path: str | Path, masks: Mapping[str, torch.Tensor]) -> Path:
    """Write masks as packed bits with their shapes (``np.savez_compressed``, no pickle), atomically."""
    arrays = {}
    for i, (_name, m) in enumerate(masks.items()):
        arrays[f"bits{i}"] = np.packbits(m.detach().cpu().numpy().astype(bool).ravel())
        arrays[f"shape{i}"] = np.asarray(m.shape, dtype=np.int64)
    arrays["names"] = np.asarray(list(masks), dtype=np.str_)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_masks(path: str | Path, model: nn.Module | None = None) -> Masks:
    """Read masks written by `save_masks`; with ``model``, check they fit it."""
    path = Path(path)
    check_file(path, "mask file", "a masks.npz from guided prune")
    try:
        with np.load(path, allow_pickle=False) as z:
            masks = {}
            for i, name in enumerate(z["names"]):
                shape = tuple(int(v) for v in z[f"shape{i}"])
                n = int(np.prod(shape))
                bits = np.unpackbits(z[f"bits{i}"])[:n]
                masks[str(name)] = torch.from_numpy(bits.astype(bool).reshape(shape))
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = "it holds pickled objects" if "pickled" in str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a mask file written by guided ({reason}); write it with guided prune") from None
    if model is not None:
        check_masks(model.spec, masks, dict(model.named_parameters()))
    return masks


def nonzero_cost(spec: ArchSpec, masks: Mapping[str, torch.Tensor]):
    """`models.cost` counting only kept weights (their parameters and MACs)."""
    return cost(spec, densities_from_masks(masks))


def sparsity_report(spec: ArchSpec, masks: Mapping[str, torch.Tensor]) -> dict:
    """Per-layer and per-stage density, and per-stage density of each 3x3 kernel position.

    Returns:
        ``layers``: rows (layer, stage, kind, weights, kept, density); ``stages``: rows (stage, weights,
        kept, density); ``kernel``: stage -> 3x3 list of kept fractions (3x3 convs only);
        ``density``: overall kept fraction of the masked weights.
    """
    by_name = {f"{row.name}.weight": row for row in layers(spec)}
    rows, stages, kernels = [], {}, {}
    for name, m in masks.items():
        row = by_name[name]
        kept, total = int(m.sum()), m.numel()
        rows.append(
            {
                "layer": row.name,
                "stage": row.stage,
                "kind": row.kind,
                "weights": total,
                "kept": kept,
                "density": kept / total,
            }
        )
        agg = stages.setdefault(row.stage, [0, 0])
        agg[0] += total
        agg[1] += kept
        if m.ndim == 4 and m.shape[2:] == (3, 3):
            k = kernels.setdefault(row.stage, [torch.zeros(3, 3, dtype=torch.float64), 0])
            k[0] += m.double().sum(dim=(0, 1))
            k[1] += m.shape[0] * m.shape[1]
    total = sum(a[0] for a in stages.values())
    return {
        "layers": rows,
        "stages": [
            {"stage": s, "weights": a[0], "kept": a[1], "density": a[1] / a[0]} for s, a in sorted(stages.items())
        ],
        "kernel": {int(s): (k[0] / k[1]).tolist() for s, k in sorted(kernels.items())},
        "density": sum(a[1] for a in stages.values()) / total if total else 1.0,
    }


def prune_weights(
    model: nn.Module,
    *,
    method: str,
    ratio: float | None = None,
    allocation: str | None = None,
    include_linear: bool = False,
    like: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    **_: object,
):
    """`guided.pruning.prune` for unstructured methods: ``magnitude`` and ``random`` masks.

    ``random`` draws masks with the per-layer sparsity of ``like`` (another pruned model's masks), or with
    ``ratio`` in every layer.
    """
    import copy

    spec = model.spec
    if method == "magnitude":
        if ratio is None or not isinstance(ratio, (int, float)):
            raise UserError("magnitude pruning takes one --ratio (the fraction of weights removed)")
        masks = magnitude_masks(model, ratio, scope=allocation or "global", include_linear=include_linear)
    else:
        if like is None:
            if ratio is None or not isinstance(ratio, (int, float)):
                raise UserError("random masks need --ratio R (per layer) or --like PRUNED_DIR (its sparsity)")
            like = magnitude_masks(model, ratio, scope="layer", include_linear=include_linear)
        masks = random_masks(like, seed=seed)
    new = apply_masks(copy.deepcopy(model).cpu(), masks)
    report = sparsity_report(spec, masks)
    if method == "random" and ratio is None:
        allocation = "like"
    info = {
        "method": method,
        "allocation": allocation or ("global" if method == "magnitude" else "layer"),
        "ratio": ratio,
        "include_linear": include_linear,
        "seed": seed,
        "density": report["density"],
        **cost_change(spec, spec, masks),
        "sparse": True,
    }
    rows = [{k: r[k] for k in ("layer", "stage", "kind", "weights", "kept", "density")} for r in report["layers"]]
    return PruneResult(new, rows, info, masks=masks)
