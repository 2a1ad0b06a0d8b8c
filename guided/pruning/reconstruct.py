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
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guided.errors import UserError
from guided.pruning.criteria import Context, _eval, _hooks
from models import ChannelGroup

__all__ = ["sample_consumer_inputs", "thinet_select", "regression_select", "reconstruction_error"]

Key = tuple[int, int]
POSITIONS_PER_IMAGE = 8


def sample_consumer_inputs(ctx: Context, groups: list[ChannelGroup]) -> dict[Key, torch.Tensor]:
    """Sampled consumer inputs ``X`` (M, C, k*k) per group, from ``ctx.samples`` training images."""
    modules = dict(ctx.model.named_modules())
    gen = torch.Generator().manual_seed(ctx.seed)
    out: dict[Key, list[torch.Tensor]] = {g.key: [] for g in groups}

    def hook(group, module):
        key = group.key

        def fn(_module, args):
            x = args[0].detach().float().cpu()
            if isinstance(module, nn.Linear):
                if x.shape[1] != group.width:
                    raise UserError(
                        f"{group.consumer} reads {x.shape[1] // group.width} values per channel of {group.name}: "
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

    hooks = {g.consumer: hook(g, modules[g.consumer]) for g in groups}
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
    w = _weight(module)
    z = _contributions(x, w, seed)  # (M, C)
    c = z.shape[1]
    removed: list[int] = []
    running = torch.zeros(z.shape[0], dtype=z.dtype)
    sq = (z * z).sum(0)
    available = torch.ones(c, dtype=torch.bool)
    for _ in range(c - k):
        # ||running + z_j||^2 = ||running||^2 + 2 running.z_j + ||z_j||^2, for every candidate j at once
        cost = 2 * running @ z + sq
        cost[~available] = float("inf")
        j = int(cost.argmin())
        removed.append(j)
        available[j] = False
        running += z[:, j]
    kept = torch.nonzero(available).flatten()
    new_w = module.weight.detach().cpu().index_select(1, kept).clone()
    if rescale:
        y = z.sum(1, keepdim=True)
        scale = torch.linalg.lstsq(z[:, kept], y).solution.flatten().float()
        new_w *= scale.view(1, -1, *([1] * (new_w.ndim - 2)))
    return kept, new_w


def regression_select(
    x: torch.Tensor, module: nn.Module, k: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression pruning: LASSO channel selection, then least-squares reconstruction of the consumer.

    The LASSO penalty is searched (bisection on a log scale) until at most ``k`` coefficients are
    non-zero; the ``k`` largest |coefficients| are kept (ties with zero filled by contribution energy).
    Returns (kept positions, the consumer's new weight).
    """
    from sklearn.linear_model import Lasso

    w = _weight(module)
    z = _contributions(x, w, seed).numpy()
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
    # Least squares: the kept channels' patches must reproduce the consumer's full output.
    m = x.shape[0]
    full = x.reshape(m, -1).double() @ w.reshape(w.shape[0], -1).double().T  # (M, n)
    xk = x.index_select(1, kept).reshape(m, -1).double()
    ridge = 1e-6 * (xk * xk).sum() / xk.shape[1]
    gram = xk.T @ xk + ridge * torch.eye(xk.shape[1], dtype=xk.dtype)
    sol = torch.linalg.solve(gram, xk.T @ full)  # (k*kk, n)
    shape = module.weight.shape
    new_w = sol.T.reshape(shape[0], len(kept), *shape[2:]).float()
    return kept, new_w


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
