"""Reconstruction-based channel selection: ThiNet and regression (LASSO) pruning.

Both look at the layer that *reads* a group's channels (its consumer) and choose the channels whose
removal changes that layer's output least, on activations sampled from training images:

* sampled inputs ``X`` (M, C, k*k): M = images x positions, each the k x k patch the consumer sees at a
  random output position (a linear consumer sees one value per channel);
* per-channel contributions ``Z`` (M, C): ``Z[m, c] = <X[m, c], W[o_m, c]>`` for a random output channel
  ``o_m``, so the sampled output is ``Z.sum(1)``.

ThiNet (Luo et al. 2017) removes channels greedily, each time the one that keeps the removed
contributions' sum smallest, then rescales the kept input channels by least squares. Regression pruning
(He et al. 2017) selects channels with a LASSO on the contributions (scikit-learn's solver), then
refits the consumer's weights on the kept channels by least squares against its full output.
All groups are sampled on the unpruned network in one pass.

A coupled group (a residual width, `models.groups`) is read by several layers: both methods choose its
channels on all of its readers' contributions at once (their sampled rows stacked), then refit each reader
on its own. A coupled group read through channel selections and BatchNorms (pre-activation ResNets), which
no linear refit can follow, is chosen by its producers' filter L1 norms instead (`guided.pruning.methods`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guided.errors import UserError
from guided.pruning.criteria import Context, _eval, _hooks
from models import ChannelGroup

__all__ = [
    "sample_consumer_inputs",
    "sample_reader_inputs",
    "thinet_select",
    "thinet_joint",
    "regression_select",
    "regression_joint",
    "reconstruction_error",
]

Key = tuple[int, int]
POSITIONS_PER_IMAGE = 8


def sample_consumer_inputs(ctx: Context, groups: list[ChannelGroup]) -> dict[Key, torch.Tensor]:
    """Sampled consumer inputs ``X`` (M, C, k*k) per group, from ``ctx.samples`` training images."""
    sampled = _sample(ctx, [(g, g.consumer) for g in groups])
    return {g.key: sampled[(g.key, g.consumer)] for g in groups}


def sample_reader_inputs(ctx: Context, groups: list[ChannelGroup]) -> dict[Key, list[tuple[str, torch.Tensor]]]:
    """Per coupled group, each reader's name and its sampled inputs ``X`` (M, C, k*k), in one pass."""
    pairs = [(g, reader) for g in groups for reader in g.readers]
    sampled = _sample(ctx, pairs)
    return {g.key: [(reader, sampled[(g.key, reader)]) for reader in g.readers] for g in groups}


def _sample(ctx: Context, pairs: list[tuple[ChannelGroup, str]]) -> dict[tuple[Key, str], torch.Tensor]:
    modules = dict(ctx.model.named_modules())
    gen = torch.Generator().manual_seed(ctx.seed)
    out: dict[tuple[Key, str], list[torch.Tensor]] = {(g.key, name): [] for g, name in pairs}

    def hook(group, name, module):
        key = (group.key, name)

        def fn(_module, args):
            x = args[0].detach().float().cpu()
            if isinstance(module, nn.Linear):
                if x.shape[1] != group.width:
                    raise UserError(
                        f"{name} reads {x.shape[1] // group.width} values per channel of {group.name}: "
                        "reconstruction methods rewrite consumers that read one; prune with l1-norm or slimming"
                    )
                out[key].append(x.unsqueeze(-1))
                return
            cols = F.unfold(
                x, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride
            )  # (N, C*k*k, L)
            n, ckk, positions = cols.shape
            pick = torch.randint(positions, (n, POSITIONS_PER_IMAGE), generator=gen)
            cols = cols.gather(2, pick.unsqueeze(1).expand(n, ckk, POSITIONS_PER_IMAGE))
            c = x.shape[1]
            out[key].append(cols.permute(0, 2, 1).reshape(n * POSITIONS_PER_IMAGE, c, ckk // c))

        return fn

    by_module: dict[str, list] = {}
    for g, name in pairs:
        by_module.setdefault(name, []).append(hook(g, name, modules[name]))

    def fan_out(fns):
        def fn(module, args):
            for f in fns:
                f(module, args)

        return fn

    hooks = {name: fan_out(fns) for name, fns in by_module.items()}
    with _hooks(ctx.model, hooks, pre=True), torch.no_grad(), _eval(ctx.model):
        for x, _ in ctx.batches():
            ctx.model(x)
    return {k: torch.cat(v) for k, v in out.items()}


def _weight(module: nn.Module) -> torch.Tensor:
    """The consumer's weight as (n, C, k*k)."""
    w = module.weight.detach().float().cpu()
    return w.reshape(w.shape[0], w.shape[1], -1)


def _contributions(x: torch.Tensor, w: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    o = torch.randint(w.shape[0], (x.shape[0],), generator=gen)
    return torch.einsum("mck,mck->mc", x.double(), w[o].double())


def thinet_select(
    x: torch.Tensor, module: nn.Module, k: int, *, seed: int = 0, rescale: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """ThiNet: keep ``k`` channels; returns (kept positions, the consumer's new weight).

    Args:
        x: sampled consumer inputs (M, C, k*k) from `sample_consumer_inputs`.
        module: the consumer (conv or linear).
        k: channels to keep.
        seed: which output channel each sample row reads.
        rescale: least-squares scale of each kept input channel, as in the paper.
    """
    kept, (new_w,) = thinet_joint([(x, module)], k, seed=seed, rescale=rescale)
    return kept, new_w


def thinet_joint(
    readers: list[tuple[torch.Tensor, nn.Module]], k: int, *, seed: int = 0, rescale: bool = True
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """ThiNet over several readers of the same channels: the greedy removal runs on all their sampled
    contributions at once; each reader's kept inputs are then rescaled on its own. Returns (kept positions,
    each reader's new weight)."""
    zs = [_contributions(x, _weight(module), seed) for x, module in readers]
    z = torch.cat(zs)  # (M, C)
    c = z.shape[1]
    running = torch.zeros(z.shape[0], dtype=z.dtype)
    sq = (z * z).sum(0)
    available = torch.ones(c, dtype=torch.bool)
    for _ in range(c - k):
        # ||running + z_j||^2 = ||running||^2 + 2 running.z_j + ||z_j||^2, for every candidate j at once
        cost = 2 * running @ z + sq
        cost[~available] = float("inf")
        j = int(cost.argmin())
        available[j] = False
        running += z[:, j]
    kept = torch.nonzero(available).flatten()
    weights = []
    for zi, (_, module) in zip(zs, readers):
        new_w = module.weight.detach().cpu().index_select(1, kept).clone()
        if rescale:
            scale = torch.linalg.lstsq(zi[:, kept], zi.sum(1, keepdim=True)).solution.flatten().float()
            new_w *= scale.view(1, -1, *([1] * (new_w.ndim - 2)))
        weights.append(new_w)
    return kept, weights


def regression_select(
    x: torch.Tensor, module: nn.Module, k: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression pruning: LASSO channel selection, then least-squares reconstruction of the consumer.

    The LASSO penalty is searched (bisection on a log scale) until at most ``k`` coefficients are
    non-zero; the ``k`` largest |coefficients| are kept (ties with zero filled by contribution energy).
    Returns (kept positions, the consumer's new weight).
    """
    kept, (new_w,) = regression_joint([(x, module)], k, seed=seed)
    return kept, new_w


def regression_joint(
    readers: list[tuple[torch.Tensor, nn.Module]], k: int, *, seed: int = 0
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Regression pruning over several readers of the same channels: one LASSO on all their sampled
    contributions, then each reader refit by least squares on the kept channels. Returns (kept positions,
    each reader's new weight)."""
    from sklearn.linear_model import Lasso

    z = torch.cat([_contributions(x, _weight(module), seed) for x, module in readers]).numpy()
    y = z.sum(1)
    norms = np.linalg.norm(z, axis=0) + 1e-12
    zn = z / norms
    alpha_hi = np.abs(zn.T @ y).max() / len(y)
    lo, hi = np.log(alpha_hi) - 12, np.log(alpha_hi)
    best = None
    for _ in range(30):
        mid = (lo + hi) / 2
        coef = Lasso(alpha=float(np.exp(mid)), fit_intercept=False, max_iter=5000, tol=1e-4).fit(zn, y).coef_
        nnz = int((coef != 0).sum())
        if nnz <= k:
            best, hi = coef, mid
            if nnz == k:
                break
        else:
            lo = mid
    coef = best if best is not None else np.zeros(z.shape[1])
    order = np.lexsort((-norms, -np.abs(coef)))  # by |coef|, then by energy
    kept = torch.from_numpy(np.sort(order[:k])).long()
    return kept, [_refit(x, module, kept) for x, module in readers]


def _refit(x: torch.Tensor, module: nn.Module, kept: torch.Tensor) -> torch.Tensor:
    """Least squares: the kept channels' patches must reproduce the consumer's full output."""
    w = _weight(module)
    m = x.shape[0]
    full = x.reshape(m, -1).double() @ w.reshape(w.shape[0], -1).double().T  # (M, n)
    xk = x.index_select(1, kept).reshape(m, -1).double()
    ridge = 1e-6 * (xk * xk).sum() / xk.shape[1]
    gram = xk.T @ xk + ridge * torch.eye(xk.shape[1], dtype=xk.dtype)
    sol = torch.linalg.solve(gram, xk.T @ full)  # (k*kk, n)
    shape = module.weight.shape
    return sol.T.reshape(shape[0], len(kept), *shape[2:]).float()


def reconstruction_error(x: torch.Tensor, module: nn.Module, kept: torch.Tensor, new_weight: torch.Tensor) -> float:
    """Relative squared error of the consumer's output when only ``kept`` inputs remain, weights ``new_weight``.

    ``||X W^T - X_kept W_new^T||^2 / ||X W^T||^2`` over the sampled patches ``x`` (M, C, k*k).
    """
    m = x.shape[0]
    w = _weight(module)
    full = x.reshape(m, -1).double() @ w.reshape(w.shape[0], -1).double().T
    nw = new_weight.detach().float().reshape(new_weight.shape[0], -1).double()
    approx = x.index_select(1, kept).reshape(m, -1).double() @ nw.T
    return float(((full - approx) ** 2).sum() / (full**2).sum())
