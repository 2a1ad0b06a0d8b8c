"""Structured pruning in three steps: a criterion scores channels, an allocator turns scores into kept
counts, surgery builds the narrower spec and copies the inherited weights.

Example:
    >>> from models import create_model
    >>> from guided.pruning import prune
    >>> pruned = prune(create_model("resnet56", seed=0), "l1-norm", preset="resnet56-a").model
    >>> pruned.spec.stages[0][:3]
    (14, 14, 14)
"""

from guided.pruning.methods import PRUNERS, Method, PruneResult, prune, ratio_for_budget, register_pruner
from guided.pruning.surgery import cut, pruned_spec

__all__ = ["PRUNERS", "Method", "PruneResult", "prune", "ratio_for_budget", "register_pruner", "cut", "pruned_spec"]
